"""Training CLI for SRCNN at x2, x3 (the default) or x4: train, resume, inspect and evaluate.

    python main.py train --lr=0.001 --batch-size=128 --num-epoch=20 --save-freq=2 [--scale 3]
    python main.py resume runs/NAME/checkpoint.last --num-epoch=40
    python main.py inspect checkpoint.pth
    python main.py evaluate checkpoint.pth --data data/Set5 [--self-ensemble]

A checkpoint's ``epoch`` is the number of epochs completed; ``batch`` (non-zero only in a checkpoint
written on Ctrl-C) is the number of batches already done of the epoch after it. Under torchrun,
``--batch-size`` is the global batch, split evenly across the processes.
"""
import argparse
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from tqdm import tqdm

from datasets import SCALE, SCALES, TestDataset, TrainDataset, default_data, write_test_h5, write_train_h5
from info import Info
from model import SRCNN
from evaluation import evaluate_checkpoint, evaluate_model, plot_history
from inference import PRECISIONS, checkpoint_scale, load_model, symmetry
from utils import (CHECKPOINT_VERSION, MODEL_NAME, HelpFormatter, UserError, choose_device, cpu_has_bf16, keep_freed_memory,
                   load_checkpoint, mean_metrics, non_negative_float, non_negative_int, positive_float, positive_int,
                   RGB_TO_YCBCR, save_checkpoint, set_seed)

EXIT_INTERRUPTED = 130  # the shell's convention for "stopped by SIGINT"


class Diverged(Exception):
    """The loss became NaN or infinite."""


class Interrupted(Exception):
    """Ctrl-C asked the run to stop; raised at a batch boundary."""


# --------------------------------------------------------------------------- command line

class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, no usage dump
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_training_flags(p, defaults):
    """The flags of ``train``; for ``resume`` (defaults=False) only flags given override the saved ones."""
    def add(*names, default=None, **kw):
        if kw.get("action") == "store_true":
            kw["action"] = argparse.BooleanOptionalAction
        p.add_argument(*names, default=default if defaults else argparse.SUPPRESS, **kw)

    add("--cuda", action="store_true", default=False, help="train on the GPU (cuda:LOCAL_RANK under torchrun)")
    add("--lr", type=positive_float, default=1e-4, help="learning rate (the assignment's default)")
    add("--batch-size", type=positive_int, default=128, help="patches per step, over all processes")
    add("--num-epoch", type=positive_int, default=100, help="train until this many epochs are complete")
    add("--save-freq", "--savefreq", dest="save_freq", type=positive_int, default=10,
        help="write checkpoint.{epoch} every this many epochs")
    if defaults:  # the model's scale is fixed for the run: resume takes it from the checkpoint
        p.add_argument("--scale", type=int, choices=SCALES, default=SCALE, help="upscaling factor")
    add("--train-data", help="training set: an .h5 file from datasets.py or an image folder (default: "
        "data/T91_x{scale}_train.h5, built from data/T91 on first use)")
    add("--test-data", help="test set: an .h5 file or an image folder (default: data/Set5_x{scale}_test.h5, "
        "built from data/Set5 on first use)")
    add("--out-dir", default=None, help="folder for checkpoints, config.json and TensorBoard logs "
        "(train: runs/<date-time>; resume: the checkpoint's folder)")
    add("--seed", type=int, default=0, help="seeds the initial weights and the data order")
    add("--optimizer", choices=["adam", "sgd"], default="adam", help="sgd uses momentum 0.9")
    add("--schedule", choices=["constant", "cosine"], default="constant",
        help="learning-rate schedule over the whole run (cosine decays to 0 at --num-epoch)")
    add("--warmup-epochs", type=non_negative_float, default=0.0, help="linear learning-rate warm-up")
    add("--last-layer-lr", type=positive_float, default=1.0,
        help="learning-rate multiplier of the reconstruction layer (Dong et al. 2016 use 0.1)")
    add("--weight-decay", type=non_negative_float, default=0.0, help="L2 penalty")
    add("--init", choices=["default", "identity"], default="default",
        help="initial weights: PyTorch's default, or 'identity': the network starts as an exact copy "
             "of its bicubic input and learns the correction")
    add("--init-from", metavar="CHECKPOINT",
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
    add("--augment", action="store_true", default=False,
        help="random flips and 90-degree rotations of each batch (the 8 symmetries of a square)")
    add("--amp", action="store_true", default=False, help="bfloat16 autocast (CPU and CUDA)")
    add("--name", default=Info.name, help="Info record: name saved into every checkpoint")
    add("--student-id", default=Info.student_id, help="Info record: student id")
    add("--email", default=Info.email, help="Info record: e-mail")


def build_parser():
    p = Parser(description="Train and inspect SRCNN super-resolution models (x2, x3, x4).",
               formatter_class=HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,resume,inspect,evaluate}")  # all Parser
    kw = dict(formatter_class=HelpFormatter)
    t = sub.add_parser("train", help="train a new model", **kw)
    add_training_flags(t, defaults=True)
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


# --------------------------------------------------------------------------- data

def resolve_data(path, kind, scale):
    """The data path to read: ``path``, or when None the default file of ``kind`` ("train" or "test")
    at ``scale``, built from its image folder on first use."""
    if path is not None:
        return path
    file, folder = default_data(kind, scale)
    if not os.path.exists(file):
        if not os.path.isdir(folder):
            raise UserError(f"no data: {file} does not exist and there is no {folder} to build it from; "
                            f"the repository ships {folder}: restore it with `git checkout -- {folder}`, "
                            f"or pass a folder or .h5 file")
        print(f"building {file} from {folder} ...", flush=True)
        (write_train_h5 if kind == "train" else write_test_h5)(folder, file, scale)
    return file


# --------------------------------------------------------------------------- training

def make_optimizer(model, args):
    """Adam or SGD with the reconstruction layer in its own group (for --last-layer-lr)."""
    last = list(model.reconstruction.parameters())
    rest = [p for p in model.parameters() if all(p is not q for q in last)]
    groups = [{"params": rest, "lr_scale": 1.0}, {"params": last, "lr_scale": args.last_layer_lr}]
    if args.optimizer == "adam":
        return torch.optim.Adam(groups, lr=args.lr, weight_decay=args.weight_decay, foreach=True)
    return torch.optim.SGD(groups, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay, foreach=True)


def identity_init(model):
    """Make the untrained network return its input, so training starts at the bicubic result.

    Channels 0-2 of the first two layers pass the input's channels straight through (exactly, since
    the input is non-negative and the ReLUs keep it), the last layer reads them back, and the last
    layer's other weights start at zero, so the rest of the network begins as a no-op and grows into
    the correction: the zero-initialised residual branch of residual networks, inside the plain 9-1-5.
    """
    c = model.init_kwargs["num_channels"]
    with torch.no_grad():
        for conv in (model.patch_extraction, model.nonlinear_mapping, model.reconstruction):
            conv.weight[:c].zero_()
            conv.bias[:c].zero_()
            k = conv.kernel_size[0] // 2
            for i in range(c):
                conv.weight[i, i, k, k] = 1.0
        model.reconstruction.weight[:, c:].zero_()


def lr_factor(step, total_steps, warmup_steps, schedule):
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based)."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return 1.0


def epoch_plan(n, epoch, args):
    """The data order of one epoch: a permutation of the patches and one symmetry per batch.

    Both derive from (seed, epoch) alone, so a resumed run, at any batch, sees exactly what an
    uninterrupted run would. The last partial batch is dropped so every process gets equal batches."""
    g = torch.Generator().manual_seed(args.seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    n_batches = n // args.batch_size
    ops = torch.randint(0, 8, (n_batches,), generator=g)
    return perm, ops, n_batches


def augment(x, op):
    """Apply symmetry ``op`` (0-7) of the square (:func:`inference.symmetry`) to a (B, H, W, C) batch."""
    return symmetry(x.movedim(-1, 1), int(op)).movedim(1, -1)


def to_input(batch, device):
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float in [0, 1], channels-last in memory (faster convs).

    On CUDA the 8-bit batch goes through pinned memory and is copied without blocking; it is
    converted to float on the GPU, so a quarter of the bytes cross the bus."""
    batch = batch.contiguous()
    if device.type == "cuda":
        batch = batch.pin_memory()
    batch = batch.to(device, non_blocking=True)
    return batch.permute(0, 3, 1, 2).float().div_(255)


def patch_loss(out, target, args):
    """The training loss of a batch of (B, 3, H, W) outputs against their targets, as --loss and
    --loss-border ask; in units of the [0, 1] RGB scale either way."""
    b = args.loss_border
    if b:
        out, target = out[..., b:-b, b:-b], target[..., b:-b, b:-b]
    diff = out - target
    if args.loss == "rgb":
        return diff.square().mean()
    to_ycbcr = torch.as_tensor(RGB_TO_YCBCR, dtype=diff.dtype, device=diff.device)
    weights = torch.tensor([1.0, args.chroma_weight, args.chroma_weight], dtype=diff.dtype, device=diff.device)
    return torch.einsum("ck,bkhw->bchw", to_ycbcr * weights[:, None].sqrt(), diff).square().sum(1).mean()


def train_epoch(model, optimizer, data, args, epoch, start_batch, loss_sum, ctx, stop):
    """Train one epoch from batch ``start_batch``; returns the mean loss over its batches.

    ``ctx`` is this :class:`Process`; ``stop.requested`` says Ctrl-C was pressed."""
    perm, ops, n_batches = epoch_plan(len(data), epoch, args)
    per_rank = args.batch_size // ctx.world
    total = args.num_epoch * n_batches
    warmup = round(args.warmup_epochs * n_batches)
    model.train()
    bar = tqdm(range(start_batch, n_batches), initial=start_batch, total=n_batches, leave=False,
               desc=f"epoch {epoch}", disable=None if ctx.rank == 0 else True, dynamic_ncols=True)
    for b in bar:
        factor = lr_factor((epoch - 1) * n_batches + b, total, warmup, args.schedule)
        for group in optimizer.param_groups:
            group["lr"] = args.lr * group["lr_scale"] * factor
        start = b * args.batch_size + ctx.rank * per_rank
        idx = perm[start:start + per_rank]
        lr, hr = data.lr[idx], data.hr[idx]
        if args.augment:
            lr, hr = augment(lr, ops[b]), augment(hr, ops[b])
        lr, hr = to_input(lr, ctx.device), to_input(hr, ctx.device)
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=args.amp):
            out = model(lr)
        loss = patch_loss(out.float(), hr, args)  # in float32 even under --amp (einsum would autocast)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        value, stopping = agree(loss.detach(), stop.requested, ctx)
        if not math.isfinite(value):
            raise Diverged(f"the loss became {value} at epoch {epoch}, batch {b + 1}")
        loss_sum += value
        if stopping:
            raise Interrupted(b + 1, loss_sum)
        if b % 10 == 0:
            bar.set_postfix(loss=f"{value:.5f}")
    return loss_sum / n_batches


def training_args(args):
    """The training arguments of a parsed command line as a plain dict (no subcommand bookkeeping)."""
    return {k: v for k, v in vars(args).items() if k not in ("func", "command", "checkpoint")}


def checkpoint_state(model, optimizer, args, info, progress, world):
    """Everything a checkpoint holds: plain data and tensors only (loads with weights_only=True)."""
    return {
        "format_version": CHECKPOINT_VERSION,
        "model_name": MODEL_NAME,
        "model_kwargs": dict(model.init_kwargs),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "args": training_args(args),
        "info": info.to_dict(),
        "world_size": world,
        "rng": {"torch": torch.get_rng_state()},
        **progress,
    }


def agree(loss, stop_requested, ctx):
    """(mean loss over the processes, whether any process was asked to stop) after a step.

    One small all-reduce under torchrun, so every rank sees the same loss (and so stops on the same
    non-finite value) and every rank stops at the same batch; a plain read in a single process."""
    if ctx.world == 1:
        return loss.item(), stop_requested
    both = torch.stack([loss.float(), torch.tensor(float(stop_requested), device=loss.device)])
    dist.all_reduce(both)
    loss_sum, stops = both.tolist()
    return loss_sum / ctx.world, stops > 0


class StopFlag:
    """Turns the first Ctrl-C into a request to stop at the next batch boundary, so the saved state
    is consistent; a second Ctrl-C interrupts at once."""

    def __init__(self):
        self.requested = False
        self.previous = signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, self.previous)

    def restore(self):
        signal.signal(signal.SIGINT, self.previous)


def check_ranks_agree(model, ctx):
    """Under torchrun, fail loudly unless every process ends with bitwise identical weights."""
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(ctx.world)]
    dist.all_gather(gathered, flat)
    if not all(torch.equal(flat, g) for g in gathered):
        raise RuntimeError("the processes ended with different weights")
    return True


@dataclass(frozen=True)
class Process:
    """Where this training process stands: its rank among ``world`` processes and its device."""
    rank: int
    world: int
    device: torch.device


def distributed_context(args):
    """This :class:`Process`; joins the torchrun process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = choose_device(args.cuda, local_rank)
    if world > 1:
        if args.batch_size % world:
            raise UserError(f"--batch-size {args.batch_size} is not divisible by the {world} processes")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Process(rank, world, device)


def run_training(args, ckpt=None):
    """Train (or continue) a run; writes checkpoints into ``args.out_dir``. Returns the last progress dict."""
    ctx = distributed_context(args)
    rank, world, device = ctx.rank, ctx.world, ctx.device
    main_proc = rank == 0
    try:
        set_seed(args.seed)
        keep_freed_memory()
        if args.amp and device.type == "cpu" and cpu_has_bf16() is False and rank == 0:
            print("warning: this CPU has no bfloat16 instructions, so --amp will train slower than without it",
                  file=sys.stderr, flush=True)
        train_set = TrainDataset(resolve_data(args.train_data, "train", args.scale), args.scale)
        test_set = TestDataset(resolve_data(args.test_data, "test", args.scale), args.scale)
        if len(train_set) < args.batch_size:
            raise UserError(f"the training set has {len(train_set)} patches, fewer than one batch of {args.batch_size}")
        if 2 * args.loss_border >= min(train_set.hr.shape[1:3]):
            raise UserError(f"--loss-border {args.loss_border} leaves nothing of the "
                            f"{train_set.hr.shape[1]}x{train_set.hr.shape[2]} patches")
        model = SRCNN()
        if args.init_from and ckpt is None:
            start = load_model(args.init_from, torch.device("cpu"))[0]
            if start.init_kwargs != model.init_kwargs:
                raise UserError(f"--init-from {args.init_from} holds a different network: {start.init_kwargs}")
            model.load_state_dict(start.state_dict())
        elif args.init == "identity":
            identity_init(model)
        model = model.to(device, memory_format=torch.channels_last)
        optimizer = make_optimizer(model, args)
        progress = {"epoch": 0, "batch": 0, "loss_sum": 0.0, "psnr": None, "best_psnr": -math.inf, "history": []}
        if ckpt is not None:
            model.load_state_dict(ckpt["state_dict"])
            optimizer.load_state_dict(ckpt["optimizer"])
            for group in optimizer.param_groups:  # a changed --last-layer-lr is a flag override, like --lr
                group["lr_scale"] = 1.0 if group is optimizer.param_groups[0] else args.last_layer_lr
            progress = {k: ckpt[k] for k in progress}
            torch.set_rng_state(ckpt["rng"]["torch"])
        info = Info(args.name, args.student_id, args.email)
        if args.num_epoch <= progress["epoch"]:
            raise UserError(f"the checkpoint has already completed {progress['epoch']} epochs; "
                            f"pass --num-epoch greater than that to train on")
        net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
        if main_proc:
            os.makedirs(args.out_dir, exist_ok=True)
            with open(os.path.join(args.out_dir, "config.json"), "w") as f:
                json.dump(training_args(args), f, indent=2)
            writer = tensorboard_writer(args.out_dir)
            if ckpt is not None:
                done = f"{progress['epoch']} epochs" + (f" and {progress['batch']} batches" if progress["batch"] else "")
                print(f"resuming after {done}", flush=True)
            print(f"training {sum(p.numel() for p in model.parameters())} parameters on {len(train_set)} patches, "
                  f"{world} process(es) on {device}; writing to {args.out_dir}", flush=True)
        stop = StopFlag()
        try:
            progress = train_loop(net, model, optimizer, train_set, test_set, args, info, progress, ctx, stop,
                                  writer if main_proc else None)
            if world > 1 and check_ranks_agree(model, ctx) and main_proc:
                print(f"weights identical on all {world} processes", flush=True)
            return progress
        finally:
            stop.restore()
            if main_proc:
                writer.close()
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def train_loop(net, model, optimizer, train_set, test_set, args, info, progress, ctx, stop, writer):
    main_proc = writer is not None
    save = lambda name: save_checkpoint(checkpoint_state(model, optimizer, args, info, progress, ctx.world),
                                        os.path.join(args.out_dir, name))
    for epoch in range(progress["epoch"] + 1, args.num_epoch + 1):
        started = time.time()
        try:
            loss = train_epoch(net, optimizer, train_set, args, epoch, progress["batch"], progress["loss_sum"],
                               ctx, stop)
        except Interrupted as e:
            progress.update(batch=e.args[0], loss_sum=e.args[1], psnr=None)
            if main_proc:
                save("checkpoint.interrupted")
                path = os.path.join(args.out_dir, "checkpoint.interrupted")
                print(f"\ninterrupted in epoch {epoch} after {e.args[0]} batches; saved {path}\n"
                      f"continue with: python main.py resume {path}", file=sys.stderr, flush=True)
            sys.exit(EXIT_INTERRUPTED)
        except Diverged as e:
            kept = os.path.join(args.out_dir, "checkpoint.last")
            raise UserError(f"{e}; stopped without saving. The last good checkpoint is {kept}"
                            f"{'' if os.path.exists(kept) else ' (none yet)'}; try a lower --lr") from None
        progress.update(epoch=epoch, batch=0, loss_sum=0.0)
        if main_proc:
            rows, outputs = evaluate_model(model, test_set)
            m = mean_metrics(rows)
            seconds = time.time() - started
            progress["psnr"] = m["y_psnr"]
            progress["history"] = progress["history"] + [{"epoch": epoch, "loss": loss, "seconds": seconds, **m}]
            best = m["y_psnr"] > progress["best_psnr"]
            progress["best_psnr"] = max(m["y_psnr"], progress["best_psnr"])
            print(f"epoch {epoch:4d}/{args.num_epoch}  loss {loss:.6f}  test PSNR-Y {m['y_psnr']:.3f} dB "
                  f"(whole image {m['y_psnr_whole']:.3f})  SSIM-Y {m['y_ssim']:.4f}  {seconds:.1f}s"
                  f"{'  (best)' if best else ''}", flush=True)
            log_epoch(writer, test_set, outputs, epoch, loss, m,
                      images=epoch % args.save_freq == 0 or epoch == args.num_epoch)
            save("checkpoint.last")
            if best:
                save("checkpoint.best")
            if epoch % args.save_freq == 0:
                save(f"checkpoint.{epoch}")
    return progress


def tensorboard_writer(out_dir):
    from torch.utils.tensorboard import SummaryWriter  # slow import, rank 0 only
    return SummaryWriter(out_dir)


def log_epoch(writer, test_set, outputs, epoch, loss, metrics, images):
    writer.add_scalar("train/loss", loss, epoch)
    for k, v in metrics.items():
        writer.add_scalar(f"test/{k}", v, epoch)
    if images:  # LR | SR | HR of the centre 96x96 of the first three test images
        for (name, lr, hr), sr in list(zip(test_set, outputs))[:3]:
            cy, cx = lr.shape[0] // 2, lr.shape[1] // 2
            crops = [torch.from_numpy(a[cy - 48:cy + 48, cx - 48:cx + 48]).permute(2, 0, 1) for a in (lr, sr, hr)]
            writer.add_image(f"lr_sr_hr/{name}", torch.cat(crops, dim=2), epoch)
    writer.flush()


# --------------------------------------------------------------------------- subcommands

def cmd_train(args):
    args.out_dir = args.out_dir or os.path.join("runs", time.strftime("%Y%m%d-%H%M%S"))
    run_training(args)


def cmd_resume(args):
    ckpt = load_checkpoint(args.checkpoint)
    if "optimizer" not in ckpt or "history" not in ckpt:
        raise UserError(f"{args.checkpoint} holds weights only (no training state) and cannot be resumed")
    given = training_args(args)
    saved = training_args(build_parser().parse_args(["train"]))  # flags newer than the checkpoint
    saved.update(ckpt["args"])
    saved.update(ckpt["info"])
    saved["out_dir"] = os.path.dirname(os.path.abspath(args.checkpoint))
    saved.update({k: v for k, v in given.items() if v is not None})
    for k, v in saved.items():
        setattr(args, k, v)
    run_training(args, ckpt)


def cmd_inspect(args):
    ckpt = load_checkpoint(args.checkpoint)
    print(f"checkpoint: {args.checkpoint} (format version {ckpt['format_version']})")
    print(f"model:      {ckpt['model_name']} {ckpt['model_kwargs']}, "
          f"{sum(v.numel() for v in ckpt['state_dict'].values())} parameters")
    print(f"epoch:      {ckpt['epoch']}" + (f" (+{ckpt['batch']} batches of the next)" if ckpt.get("batch") else ""))
    scale = checkpoint_scale(ckpt)
    print(f"scale:      x{scale}")
    psnr, last = ckpt.get("psnr"), (ckpt.get("history") or [{}])[-1]
    whole = last.get("y_psnr_whole") if psnr is not None else None
    print(f"test PSNR:  {'n/a (saved mid-epoch)' if psnr is None else f'{psnr:.3f} dB'} (Y channel, border {scale})"
          f"; best {ckpt.get('best_psnr', float('nan')):.3f} dB")
    print(f"whole:      {'n/a (not recorded)' if whole is None else f'{whole:.3f} dB'} "
          f"(Y channel, whole image, edges included)")
    print("arguments:")
    for k, v in sorted(ckpt["args"].items()):
        print(f"  {k:18s} {v}")
    print("info:")
    for k, v in Info.from_dict(ckpt["info"]).to_dict().items():
        print(f"  {k:18s} {v}")
    if args.plot:
        plot_history(ckpt["history"], args.plot, scale, ckpt["args"].get("test_data"))
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
