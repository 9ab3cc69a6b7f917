"""Training CLI for SRCNN at x2, x3 (the default) or x4: train, resume, inspect, evaluate and export (ONNX).

    python main.py train --lr=0.001 --batch-size=128 --num-epoch=20 --save-freq=2 [--scale 3]
    python main.py train --out-dir runs/x3 --resume-from-last ...     # resubmittable: continues where it stopped
    python main.py resume runs/NAME/checkpoint.last --num-epoch=40
    python main.py inspect checkpoint.pth
    python main.py evaluate checkpoint.pth --data data/Set5 [--self-ensemble]
    python main.py export checkpoint.pth srcnn_x3.onnx [--fp16] [--opset 20]

This file parses the command line and dispatches; training itself is ``training.py``, checkpoints
``checkpoints.py``, scoring ``evaluation.py``, the ONNX export ``export.py``.
"""
import sys

try:  # Ctrl-C while torch loads (a second or more) ends as at any other moment: one line, status 130
    import argparse
    import ctypes
    import math
    import os
    import time
    from dataclasses import asdict, fields, replace

    import checkpoints
    import export
    from datasets import SCALES, TestDataset, default_data, resolve_data
    from evaluation import check_plot_path, evaluate_checkpoint, ground_truth_warning, plot_history
    from inference import PRECISIONS, precision_warning, prepare
    from info import Info
    from training import Recipe, run_training
    from utils import (HelpFormatter, Parser, UserError, choose_device, non_negative_float, non_negative_int,
                       positive_float, positive_int)
except KeyboardInterrupt:
    print("interrupted", file=sys.stderr)
    sys.exit(130)

DEFAULTS = Recipe()
START_FLAGS = ("init", "init_from", "seed", "train_data", "test_data", "filters", "kernels")  # not for resume


# --------------------------------------------------------------------------- command line

def sizes(count):
    """An argparse type: ``count`` comma-separated positive whole numbers, e.g. "64,32"."""
    def parse(text):
        try:
            values = tuple(int(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) != count or min(values) < 1:
            raise argparse.ArgumentTypeError(f"expected {count} comma-separated positive whole numbers, got {text!r}")
        return values
    return parse


def add_training_flags(p, defaults):
    """The flags of ``train``; for ``resume`` (defaults=False) only flags given override the saved ones."""
    def add(*names, **kw):
        default = getattr(DEFAULTS, kw.pop("dest", None) or names[0][2:].replace("-", "_"), None)
        if kw.get("action") == "store_true":
            kw["action"] = argparse.BooleanOptionalAction
        if not defaults and kw.get("help"):
            kw["help"] += " (default: the checkpoint's value)"
        p.add_argument(*names, default=default if defaults else argparse.SUPPRESS, **kw)

    def add_start(*names, **kw):
        """A flag that sets how a run starts: train offers it; resume refuses it in one line (see cmd_resume)."""
        if defaults:
            add(*names, **kw)
        else:
            p.add_argument(*names, default=argparse.SUPPRESS, help=argparse.SUPPRESS,
                           **{k: v for k, v in kw.items() if k in ("type", "choices", "metavar")})

    add("--cuda", action="store_true", help="train on the GPU (cuda:LOCAL_RANK under torchrun)")
    add("--lr", type=positive_float, help="learning rate (the assignment's default)")
    add("--batch-size", type=positive_int, help="patches per step, over all processes")
    add("--num-epoch", type=positive_int, help="train until this many epochs are complete")
    p.add_argument("--save-freq", "--savefreq", dest="save_freq", type=positive_int,
                   default=DEFAULTS.save_freq if defaults else argparse.SUPPRESS,
                   help="write checkpoint.{epoch} every this many epochs" + ("" if defaults else
                                                                            " (default: the checkpoint's value)"))
    if defaults:  # the model's scale is fixed for the run: resume takes it from the checkpoint
        p.add_argument("--scale", type=int, choices=SCALES, default=DEFAULTS.scale, help="upscaling factor")
    add_start("--train-data", help="training set: an .h5 file from datasets.py or an image folder (default: "
              "data/T91_x{scale}_train.h5, built from data/T91 on first use)")
    add_start("--test-data", help="test set: an .h5 file or an image folder (default: data/Set5_x{scale}_test.h5, "
              "built from data/Set5 on first use)")
    add("--out-dir", help="folder for checkpoints, config.json and TensorBoard logs "
        + ("(default: runs/<date-time>)" if defaults else "(default: the checkpoint's folder)"))
    add_start("--seed", type=int, help="seeds the initial weights and the data order")
    add("--optimizer", choices=["adam", "sgd"], help="sgd uses momentum 0.9")
    add("--schedule", choices=["constant", "cosine"],
        help="learning-rate schedule over the whole run (cosine decays to 0 at --num-epoch)")
    add("--warmup-epochs", type=non_negative_float, help="linear learning-rate warm-up")
    add("--last-layer-lr", type=positive_float,
        help="learning-rate multiplier of the reconstruction layer (Dong et al. 2016 use 0.1)")
    add("--weight-decay", type=non_negative_float, help="L2 penalty")
    add_start("--init", choices=["default", "identity"],
              help="initial weights: PyTorch's default, or 'identity': the network starts as an exact copy "
                   "of its bicubic input and learns the correction")
    add_start("--init-from", metavar="CHECKPOINT",
              help="start from the weights of this checkpoint (e.g. the x3 model for an x2 or x4 one, as FSRCNN "
                   "does); overrides --init")
    add_start("--filters", type=sizes(2), metavar="N1,N2", help="filters of the first two layers (the paper's 64,32)")
    add_start("--kernels", type=sizes(3), metavar="F1,F2,F3",
              help="odd kernel sides of the three layers (9,1,5; the paper's larger network is 9,5,5)")
    add("--loss", choices=["rgb", "ycbcr"],
        help="mean squared error over R, G and B, or over BT.601 Y plus --chroma-weight times Cb and Cr "
             "(the test score is on Y)")
    add("--chroma-weight", type=non_negative_float, help="weight of Cb and Cr in --loss ycbcr")
    add("--loss-border", type=non_negative_int,
        help="leave this many pixels at each patch edge out of the loss. 6, the receptive radius, trains only "
             "on outputs whose whole 13x13 input window lies inside the patch (Dong et al. 2016 trained on these "
             "alone), so nothing is learnt from the convolutions' zero padding, which inference never shows the "
             "network: it mirrors the image edge instead")
    add("--flat-weight", type=non_negative_float,
        help="weight of a second loss term: the squared error of the network's output on flat patches of "
             "a grid of colours over the whole RGB cube (each should come back as itself); T91 has few "
             "saturated colours, and without this term the models turned flat cyan into (23,244,255)")
    add("--augment", action="store_true",
        help="random flips and 90-degree rotations of each batch (the 8 symmetries of a square)")
    add("--amp", action="store_true", help="bfloat16 autocast (CPU and CUDA)")
    add("--name", help="Info record: name saved into every checkpoint (default: srcnn-x{scale})")
    add("--student-id", help="Info record: student id")
    add("--email", help="Info record: e-mail")


def build_parser():
    p = Parser(description="Train and inspect SRCNN super-resolution models (x2, x3, x4).",
               formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True,  # all Parser
                           metavar="{train,resume,inspect,evaluate,export}")
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
    i.add_argument("--plot", metavar="PNG", help="also draw the test PSNR of every epoch into this PNG (or .pdf, "
                   ".svg) file")
    i.add_argument("--overwrite", action="store_true", help="replace the --plot file if it exists")
    i.set_defaults(func=cmd_inspect)
    e = sub.add_parser("evaluate", help="score a checkpoint and bicubic, per image", **kw)
    e.add_argument("checkpoint")
    e.add_argument("--data", help="test set: an .h5 file or an image folder (default: data/Set5_x{scale}_test.h5 "
                   "at the checkpoint's scale, built from data/Set5 on first use)")
    e.add_argument("--self-ensemble", action="store_true",
                   help="also score the average over the 8 flips and rotations of each input")
    e.add_argument("--save-images", metavar="DIR", help="write a comparison picture per image here")
    e.add_argument("--overwrite", action="store_true", help="replace comparison pictures that exist")
    e.add_argument("--cuda", action="store_true", help="run the network on the GPU")
    e.add_argument("--precision", choices=list(PRECISIONS), default="fp32", help="arithmetic of the network")
    e.set_defaults(func=cmd_evaluate)
    x = sub.add_parser("export", help="write the network as an ONNX file, checked with onnxruntime against PyTorch",
                       **kw)
    x.add_argument("checkpoint", help="a checkpoint (checkpoint.pth is the x3 model; checkpoints/ the others)")
    x.add_argument("out", metavar="OUT.onnx", help="the file to write (kept only if it agrees with PyTorch)")
    x.add_argument("--fp16", action="store_true", help="float16 weights and arithmetic (float32 input and output)")
    x.add_argument("--opset", type=int, help="ONNX operator set, 15 up to the newest the installed onnx knows "
                   "(default: the exporter's; the file is refused if it holds another)")
    x.add_argument("--overwrite", action="store_true", help="replace OUT.onnx if it exists")
    x.set_defaults(func=cmd_export)
    return p


def given_flags(args):
    """The training flags of a parsed command line, as Recipe fields (for resume: only those given)."""
    names = {f.name for f in fields(Recipe)}
    return {k: v for k, v in vars(args).items() if k in names}


# --------------------------------------------------------------------------- subcommands

def cmd_train(args):
    if args.resume_from_last and not args.out_dir:
        raise UserError("--resume-from-last needs --out-dir: the folder where the run's checkpoints are")
    given = given_flags(args)
    recipe = Recipe.from_dict({**given, "out_dir": args.out_dir or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S")),
                               "name": args.name or f"srcnn-x{args.scale}"})
    found = checkpoints.newest(recipe.out_dir) if args.resume_from_last else None
    if found is None:
        refuse_earlier_run(recipe.out_dir)
        return run_training(recipe)
    path, ckpt = found
    saved = Recipe.from_dict(ckpt["args"])
    for k in START_FLAGS + ("scale",):
        mine, theirs = (getattr(r, k) for r in (data_paths(recipe), data_paths(saved)))
        if mine != theirs:
            raise UserError(f"{path} was started with --{k.replace('_', '-')} {theirs}, this command says "
                            f"{mine}; use another --out-dir for a new run")
    print(f"continuing the run in {recipe.out_dir} from {path}", flush=True)
    return run_training(recipe, ckpt)


def data_paths(recipe):
    """``recipe`` with its default data files named (None stands for them)."""
    return replace(recipe, **{f"{kind}_data": getattr(recipe, f"{kind}_data") or default_data(kind, recipe.scale)[0]
                              for kind in ("train", "test")})


def refuse_earlier_run(out_dir):
    """A new run does not write over another's checkpoints and logs: UserError if ``out_dir`` holds a run."""
    earlier = checkpoints.run_files(out_dir)
    if earlier:
        names = ", ".join(earlier[:3]) + (", ..." if len(earlier) > 3 else "")
        raise UserError(f"{out_dir} already holds a run ({names}): "
                        f"continue it with --resume-from-last or `main.py resume`, or give another --out-dir")


def cmd_resume(args):
    ckpt = checkpoints.load(args.checkpoint)
    if "optimizer" not in ckpt or "history" not in ckpt:
        raise UserError(f"{args.checkpoint} holds weights only (no training state) and cannot be resumed")
    given = given_flags(args)
    saved = {**ckpt["args"], **ckpt["info"]}
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
    here = os.path.dirname(os.path.abspath(args.checkpoint))
    out_dir = given.get("out_dir") or here
    if os.path.abspath(out_dir) != here:
        refuse_earlier_run(out_dir)
    refuse_going_back(args.checkpoint, ckpt, out_dir)
    run_training(Recipe.from_dict(checkpoints.merged_args(asdict(DEFAULTS), saved, {**given, "out_dir": out_dir})),
                 ckpt)


def refuse_going_back(path, ckpt, out_dir):
    """Continuing from ``ckpt`` in ``out_dir`` does not write over checkpoints that are further into its run:
    UserError naming them, the newest to continue from, and --out-dir for a new branch of the run."""
    later = checkpoints.further_than(out_dir, ckpt)
    if later:
        newest = checkpoints.newest(out_dir)
        raise UserError(f"{out_dir} holds checkpoints further into the run than {path} ({', '.join(sorted(later))}), "
                        f"which continuing from it would write over; continue from the newest with `main.py resume "
                        f"{newest[0] if newest else os.path.join(out_dir, sorted(later)[0])}`, or into a new folder "
                        f"with --out-dir")


def cmd_inspect(args):
    if args.plot:
        check_plot_path(args.plot, args.overwrite)
    ckpt = checkpoints.load(args.checkpoint)
    print(f"checkpoint: {args.checkpoint} (format version {ckpt['format_version']})")
    print(f"model:      {ckpt['model_name']} {ckpt['model_kwargs']}, "
          f"{sum(v.numel() for v in ckpt['state_dict'].values())} parameters")
    print(f"epoch:      {ckpt['epoch']}" + (f" (+{ckpt['batch']} batches of the next: saved when the run was "
                                            f"stopped)" if ckpt.get("batch") else ""))
    scale = checkpoints.scale_of(ckpt)
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
    if whole is not None:
        print(f"whole:      {whole:.3f} dB (Y channel, whole image, edges included)")
    else:
        print(f"whole:      {'not recorded by this run' if history else 'none yet: stopped before its first epoch ended'}")
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
    model, ckpt = checkpoints.load_model(args.checkpoint)
    device = choose_device(args.cuda)
    warn(precision_warning(device, args.precision))
    model = prepare(model, device, args.precision)
    scale = checkpoints.scale_of(ckpt)
    test_set = TestDataset(resolve_data(args.data, "test", scale), scale)
    warn(ground_truth_warning(test_set, args.data))
    evaluate_checkpoint(model, test_set, args.self_ensemble, args.save_images, args.overwrite)


def cmd_export(args):
    done = export.export(args.checkpoint, args.out, args.fp16, args.opset, args.overwrite)
    check = done.check
    print(f"checked with onnxruntime against PyTorch on {check.images}: largest difference {check.largest} "
          f"level{'s' if check.largest != 1 else ''} (8-bit), {check.within:.4%} of pixels within 1 level, "
          f"{check.equal:.4%} equal")
    print(f"wrote {done.path} (x{done.scale}, {'fp16' if done.fp16 else 'fp32'}, opset {done.opset}, "
          f"{done.size:,} bytes): input \"input\" N x 3 x H x W float32 in [0, 1], the image bicubic-upscaled "
          f"x{done.scale}; output \"output\" the same shape, in [0, 1]")


def warn(message):
    if message:
        print(f"warning: {message}", file=sys.stderr, flush=True)


def keep_freed_memory():
    """Have glibc keep freed memory for reuse instead of handing it back to the kernel.

    A training step at batch 128 allocates and frees about 140 MB of activations. glibc serves
    blocks that large with fresh mmap() calls, which the kernel zero-fills page by page: about
    35,000 page faults per step, measured with getrusage. With mmap off and no heap trimming the
    same memory is reused and the faults disappear. Returns False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2 ** 30))


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("train", "resume"):
            keep_freed_memory()
        args.func(args)
    except UserError as e:
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:  # training catches its own Ctrl-C and saves; this is any other moment
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # as the Python docs advise
        sys.exit(1)


if __name__ == "__main__":
    main()
