"""Training CLI for SRCNN at x2, x3 (the default) or x4: train, resume, inspect and evaluate.

    python main.py train --lr=0.001 --batch-size=128 --num-epoch=20 --save-freq=2 [--scale 3]
    python main.py train --out-dir runs/x3 --resume-from-last ...     # resubmittable: continues where it stopped
    python main.py resume runs/NAME/checkpoint.last --num-epoch=40
    python main.py inspect checkpoint.pth
    python main.py evaluate checkpoint.pth --data data/Set5 [--self-ensemble]

This file parses the command line and dispatches; training itself is ``training.py``, scoring
``evaluation.py``.
"""
import argparse
import math
import os
import sys
import time

from datasets import SCALE, SCALES, TestDataset, resolve_data
from evaluation import check_plot_path, evaluate_checkpoint, plot_history
from inference import PRECISIONS, checkpoint_scale, load_model
from info import Info
from training import newest_checkpoint, run_training, training_args
from utils import (HelpFormatter, UserError, choose_device, load_checkpoint, non_negative_float, non_negative_int,
                   positive_float, positive_int)

START_FLAGS = ("init", "init_from", "seed", "train_data", "test_data")  # how a run starts: not for resume


# --------------------------------------------------------------------------- command line

class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_training_flags(p, defaults):
    """The flags of ``train``; for ``resume`` (defaults=False) only flags given override the saved ones."""
    def add(*names, default=None, **kw):
        if kw.get("action") == "store_true":
            kw["action"] = argparse.BooleanOptionalAction
        if not defaults and kw.get("help") and "resume:" not in kw["help"]:
            kw["help"] += " (default: the checkpoint's value)"
        p.add_argument(*names, default=default if defaults else argparse.SUPPRESS, **kw)

    def add_start(*names, **kw):
        """A flag that sets how a run starts: train offers it; resume refuses it in one line (see cmd_resume)."""
        if defaults:
            add(*names, **kw)
        else:
            p.add_argument(*names, default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                           **{k: v for k, v in kw.items() if k in ("type", "choices", "metavar")})

    add("--cuda", action="store_true", default=False, help="train on the GPU (cuda:LOCAL_RANK under torchrun)")
    add("--lr", type=positive_float, default=1e-4, help="learning rate (the assignment's default)")
    add("--batch-size", type=positive_int, default=128, help="patches per step, over all processes")
    add("--num-epoch", type=positive_int, default=100, help="train until this many epochs are complete")
    add("--save-freq", "--savefreq", dest="save_freq", type=positive_int, default=10,
        help="write checkpoint.{epoch} every this many epochs")
    if defaults:  # the model's scale is fixed for the run: resume takes it from the checkpoint
        p.add_argument("--scale", type=int, choices=SCALES, default=SCALE, help="upscaling factor")
    add_start("--train-data", help="training set: an .h5 file from datasets.py or an image folder (default: "
              "data/T91_x{scale}_train.h5, built from data/T91 on first use)")
    add_start("--test-data", help="test set: an .h5 file or an image folder (default: data/Set5_x{scale}_test.h5, "
              "built from data/Set5 on first use)")
    add("--out-dir", default=None, help="folder for checkpoints, config.json and TensorBoard logs "
        "(train: runs/<date-time>; resume: the checkpoint's folder)")
    add_start("--seed", type=int, default=0, help="seeds the initial weights and the data order")
    add("--optimizer", choices=["adam", "sgd"], default="adam", help="sgd uses momentum 0.9")
    add("--schedule", choices=["constant", "cosine"], default="constant",
        help="learning-rate schedule over the whole run (cosine decays to 0 at --num-epoch)")
    add("--warmup-epochs", type=non_negative_float, default=0.0, help="linear learning-rate warm-up")
    add("--last-layer-lr", type=positive_float, default=1.0,
        help="learning-rate multiplier of the reconstruction layer (Dong et al. 2016 use 0.1)")
    add("--weight-decay", type=non_negative_float, default=0.0, help="L2 penalty")
    add_start("--init", choices=["default", "identity"], default="default",
        help="initial weights: PyTorch's default, or 'identity': the network starts as an exact copy "
             "of its bicubic input and learns the correction")
    add_start("--init-from", metavar="CHECKPOINT",
        help="start from the weights of this checkpoint (e.g. the x3 model for an x2 or x4 one, as FSRCNN "
             "does); overrides --init")
    add("--loss", choices=["rgb", "ycbcr"], default="rgb",
        help="mean squared error over R, G and B, or over BT.601 Y plus --chroma-weight times Cb and Cr "
             "(the test score is on Y)")
    add("--chroma-weight", type=non_negative_float, default=1.0, help="weight of Cb and Cr in --loss ycbcr")
    add("--loss-border", type=non_negative_int, default=0,
        help="leave this many pixels at each patch edge out of the loss. 6, the receptive radius, trains only "
             "on outputs whose whole 13x13 input window lies inside the patch (Dong et al. 2016 trained on these "
             "alone), so nothing is learnt from the convolutions' zero padding, which inference never shows the "
             "network: it mirrors the image edge instead")
    add("--flat-weight", type=non_negative_float, default=0.0,
        help="weight of a second loss term: the squared error of the network's output on flat patches of "
             "a grid of colours over the whole RGB cube (each should come back as itself); T91 has few "
             "saturated colours, and without this term the models turned flat cyan into (23,244,255)")
    add("--augment", action="store_true", default=False,
        help="random flips and 90-degree rotations of each batch (the 8 symmetries of a square)")
    add("--amp", action="store_true", default=False, help="bfloat16 autocast (CPU and CUDA)")
    add("--name", help="Info record: name saved into every checkpoint (default: srcnn-x{scale})")
    add("--student-id", default=Info.student_id, help="Info record: student id")
    add("--email", default=Info.email, help="Info record: e-mail")


def build_parser():
    p = Parser(description="Train and inspect SRCNN super-resolution models (x2, x3, x4).",
               formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,resume,inspect,evaluate}")  # all Parser
    kw = dict(formatter_class=HelpFormatter)
    t = sub.add_parser("train", help="train a new model", **kw)
    add_training_flags(t, defaults=True)
    t.add_argument("--resume-from-last", action="store_true",
                   help="if --out-dir holds a checkpoint of this run, continue from its newest one (checkpoint.last "
                        "or checkpoint.interrupted), else start: the same command can be resubmitted after a "
                        "stop, or restarted by torchrun --max-restarts")
    t.set_defaults(func=cmd_train)
    r = sub.add_parser("resume", help="continue a run from a checkpoint; flags given override the saved ones", **kw)
    r.add_argument("checkpoint")
    add_training_flags(r, defaults=False)
    r.set_defaults(func=cmd_resume)
    i = sub.add_parser("inspect", help="print what a checkpoint holds", **kw)
    i.add_argument("checkpoint")
    i.add_argument("--plot", metavar="PNG", help="also draw the test PSNR of every epoch into this PNG file")
    i.set_defaults(func=cmd_inspect)
    e = sub.add_parser("evaluate", help="score a checkpoint and bicubic, per image", **kw)
    e.add_argument("checkpoint")
    e.add_argument("--data", help="test set: an .h5 file or an image folder (default: data/Set5_x{scale}_test.h5 "
                   "at the checkpoint's scale, built from data/Set5 on first use)")
    e.add_argument("--self-ensemble", action="store_true",
                   help="also score the average over the 8 flips and rotations of each input")
    e.add_argument("--save-images", metavar="DIR", help="write a comparison picture per image here")
    e.add_argument("--cuda", action="store_true", help="run the network on the GPU")
    e.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="arithmetic of the network")
    e.set_defaults(func=cmd_evaluate)
    return p


# --------------------------------------------------------------------------- subcommands

def cmd_train(args):
    if args.resume_from_last and not args.out_dir:
        raise UserError("--resume-from-last needs --out-dir: the folder where the run's checkpoints are")
    args.out_dir = args.out_dir or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    found = newest_checkpoint(args.out_dir) if args.resume_from_last else None
    if found is None:
        refuse_earlier_run(args.out_dir)
        return run_training(args)
    path, ckpt = found
    saved = training_args(build_parser().parse_args(["train"]))  # flags newer than the checkpoint
    saved.update(ckpt["args"])
    for k in START_FLAGS + ("scale",):
        if saved.get(k) != getattr(args, k):
            raise UserError(f"{path} was started with --{k.replace('_', '-')} {saved.get(k)}, this command says "
                            f"{getattr(args, k)}; use another --out-dir for a new run")
    print(f"continuing the run in {args.out_dir} from {path}", flush=True)
    return run_training(args, ckpt)


def refuse_earlier_run(out_dir):
    """A new run does not write over another's checkpoints and logs: UserError if ``out_dir`` holds a run."""
    if not os.path.isdir(out_dir):
        return
    earlier = sorted(n for n in os.listdir(out_dir) if n.startswith("checkpoint.") or n == "config.json")
    if earlier:
        names = ", ".join(earlier[:3]) + (", ..." if len(earlier) > 3 else "")
        raise UserError(f"{out_dir} already holds a run ({names}): "
                        f"continue it with --resume-from-last or `main.py resume`, or give another --out-dir")


def cmd_resume(args):
    ckpt = load_checkpoint(args.checkpoint)
    if "optimizer" not in ckpt or "history" not in ckpt:
        raise UserError(f"{args.checkpoint} holds weights only (no training state) and cannot be resumed")
    given = training_args(args)
    saved = training_args(build_parser().parse_args(["train"]))  # flags newer than the checkpoint
    saved.update(ckpt["args"])
    saved.update(ckpt["info"])
    for k in START_FLAGS:
        flag = "--" + k.replace("_", "-")
        if k not in given or given[k] == saved.get(k):
            continue
        if k in ("train_data", "test_data") and saved.get(k) and not os.path.exists(saved[k]):
            continue  # the saved data file moved: say where it is now
        raise UserError(f"{flag} sets how a run starts; {args.checkpoint} continues its run"
                        + (f" (started with {flag} {saved.get(k)})" if saved.get(k) is not None else "")
                        + (", and its data file is where it was" if k in ("train_data", "test_data") else "")
                        + "; use `main.py train` for a new run")
    saved["out_dir"] = os.path.dirname(os.path.abspath(args.checkpoint))
    saved.update({k: v for k, v in given.items() if v is not None})
    for k, v in saved.items():
        setattr(args, k, v)
    run_training(args, ckpt)


def cmd_inspect(args):
    if args.plot:
        check_plot_path(args.plot)
    ckpt = load_checkpoint(args.checkpoint)
    print(f"checkpoint: {args.checkpoint} (format version {ckpt['format_version']})")
    print(f"model:      {ckpt['model_name']} {ckpt['model_kwargs']}, "
          f"{sum(v.numel() for v in ckpt['state_dict'].values())} parameters")
    print(f"epoch:      {ckpt['epoch']}" + (f" (+{ckpt['batch']} batches of the next: saved when the run was "
                                            f"stopped)" if ckpt.get("batch") else ""))
    scale = checkpoint_scale(ckpt)
    print(f"scale:      x{scale}")
    psnr, history = ckpt.get("psnr"), ckpt.get("history") or []
    best = ckpt.get("best_psnr", math.nan)
    if psnr is not None:
        tested = f"{psnr:.3f} dB (Y channel, border {scale}); best {best:.3f} dB"
    elif history:
        tested = (f"{history[-1]['y_psnr']:.3f} dB after epoch {history[-1]['epoch']} (Y channel, border {scale}); "
                  f"best {best:.3f} dB")
    else:
        tested = "none yet: stopped before its first epoch ended"
    print(f"test PSNR:  {tested}")
    whole = history[-1].get("y_psnr_whole") if history else None
    print(f"whole:      {'n/a (not recorded)' if whole is None else f'{whole:.3f} dB'} "
          f"(Y channel, whole image, edges included)")
    print("arguments:")
    for k, v in sorted(ckpt["args"].items()):
        print(f"  {k:18s} {v}")
    print("info:")
    for k, v in Info.from_dict(ckpt["info"]).to_dict().items():
        print(f"  {k:18s} {v}")
    if args.plot:
        plot_history(history, args.plot, scale, ckpt["args"].get("test_data"))
        print(f"wrote {args.plot}")


def cmd_evaluate(args):
    device = choose_device(args.cuda)
    model, ckpt = load_model(args.checkpoint, device, args.precision)
    scale = checkpoint_scale(ckpt)
    test_set = TestDataset(resolve_data(args.data, "test", scale), scale)
    evaluate_checkpoint(model, test_set, args.self_ensemble, args.save_images)


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except UserError as e:
        sys.exit(f"error: {e}")
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # as the Python docs advise
        sys.exit(1)


if __name__ == "__main__":
    main()
