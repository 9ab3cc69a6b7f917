"""The training engine: one run of SRCNN training, from its first batch or from a checkpoint, on one
process or many (torchrun), saving checkpoints as it goes. ``main.py`` parses the command line and calls
:func:`run_training`; everything else about a run lives here.

A run's state travels as one :class:`Run`. A checkpoint's ``epoch`` is the number of epochs completed;
``batch`` (non-zero only in a checkpoint written when the run was stopped) is the number of batches already
done of the epoch after it. Under torchrun, ``--batch-size`` is the global batch, split evenly across the
processes. Ctrl-C, SIGTERM and SIGUSR1 (what schedulers send before they stop a job) all reach one
handler, :class:`StopFlag`: the run finishes its batch, every process stops at that same batch, and one
``checkpoint.interrupted`` is written, from which the run continues bitwise as if never stopped.
"""
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

from datasets import TestDataset, TrainDataset, resolve_data
from evaluation import FLAT_COLOURS, evaluate_model
from inference import load_model, symmetry
from info import Info
from model import SRCNN
from utils import (CHECKPOINT_VERSION, MODEL_NAME, RGB_TO_YCBCR, UserError, choose_device, cpu_has_bf16,
                   keep_freed_memory, load_checkpoint, mean_metrics, save_checkpoint, set_seed, whole_lines)

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
CHECKPOINTS = ("checkpoint.last", "checkpoint.interrupted")  # where a run's newest state can be


class Diverged(Exception):
    """The loss became NaN or infinite."""


class Interrupted(Exception):
    """A stop signal asked the run to stop; raised at a batch boundary."""


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


FLAT_LEVELS = 18  # 0, 15, 30 ... 255 per channel: 5,832 colours over the whole RGB cube


def flat_colours(levels=FLAT_LEVELS):
    """The colours of the flat-colour loss, (N, 3) float32 in [0, 1]: a regular grid over the RGB cube,
    then the colours graphics use most, the cube's 8 corners (black, white, the primaries and
    secondaries) and 16 greys, as in ``evaluation.FLAT_COLOURS``."""
    v = torch.linspace(0, 1, levels)
    return torch.cat([torch.cartesian_prod(v, v, v), torch.tensor(FLAT_COLOURS, dtype=torch.float32) / 255])


def flat_response(model, rgb):
    """The network's output on flat images of the (N, 3) colours ``rgb``: (N, 3).

    On a flat input every convolution sees the same value under its whole window (inference mirrors
    the edge, so this holds up to the image edge), so each layer acts as its kernel summed over space:
    exact, and about 10^5 times cheaper than running flat patches through the network."""
    h = rgb
    for conv in (model.patch_extraction, model.nonlinear_mapping, model.reconstruction):
        h = torch.nn.functional.linear(h, conv.weight.sum((2, 3)), conv.bias)
        h = h if conv is model.reconstruction else torch.relu(h)
    return h


def flat_loss(model, colours):
    """How far flat images of ``colours`` (:func:`flat_colours`) come back from themselves, as the user
    sees them: a channel at 0 may come out below 0 and one at 1 above 1, since outputs are clipped to
    [0, 1]; every other difference counts. The mean squared error over the grid plus that over the named
    colours, so that black and white weigh as much as the whole grid does. In [0, 1] RGB units."""
    err = flat_response(model, colours) - colours
    err = torch.where(colours <= 0, err.clamp(min=0), torch.where(colours >= 1, err.clamp(max=0), err)).square()
    named = len(FLAT_COLOURS)
    return err[:-named].mean() + err[-named:].mean()


def train_epoch(run, epoch):
    """Train one epoch of ``run`` from its ``progress["batch"]``; returns the mean loss over its batches."""
    args, ctx, progress = run.args, run.ctx, run.progress
    perm, ops, n_batches = epoch_plan(len(run.train_set), epoch, args)
    per_rank = args.batch_size // ctx.world
    total = args.num_epoch * n_batches
    warmup = round(args.warmup_epochs * n_batches)
    colours = flat_colours().to(ctx.device) if args.flat_weight else None
    loss_sum = progress["loss_sum"]
    run.net.train()
    bar = tqdm(range(progress["batch"], n_batches), initial=progress["batch"], total=n_batches, leave=False,
               desc=f"epoch {epoch}", disable=None if ctx.rank == 0 else True, dynamic_ncols=True)
    for b in bar:
        factor = lr_factor((epoch - 1) * n_batches + b, total, warmup, args.schedule)
        for group in run.optimizer.param_groups:
            group["lr"] = args.lr * group["lr_scale"] * factor
        start = b * args.batch_size + ctx.rank * per_rank
        idx = perm[start:start + per_rank]
        lr, hr = run.train_set.lr[idx], run.train_set.hr[idx]
        if args.augment:
            lr, hr = augment(lr, ops[b]), augment(hr, ops[b])
        lr, hr = to_input(lr, ctx.device), to_input(hr, ctx.device)
        with torch.autocast(ctx.device.type, dtype=torch.bfloat16, enabled=args.amp):
            out = run.net(lr)
        loss = patch_loss(out.float(), hr, args)  # in float32 even under --amp (einsum would autocast)
        if args.flat_weight:
            loss = loss + args.flat_weight * flat_loss(run.model, colours)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        value, stopping = agree(loss.detach(), run.stop.requested, ctx)
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
        "threads": torch.get_num_threads(),
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
    """The one handler of Ctrl-C (SIGINT), SIGTERM and SIGUSR1: the first such signal asks the run to stop
    at the next batch boundary, so the saved state is consistent; a second one stops at once."""

    def __init__(self):
        self.signal = None
        self.previous = {s: signal.signal(s, self._handle) for s in STOP_SIGNALS}

    @property
    def requested(self):
        return self.signal is not None

    def _handle(self, signum, frame):
        self.signal = signum
        self.restore()

    def restore(self):
        for s, handler in self.previous.items():
            signal.signal(s, handler)

    def exit_code(self):
        """128 + the signal's number, the shell's convention (130 for Ctrl-C); 130 where another process
        of the run was the one signalled."""
        return 128 + (self.signal or signal.SIGINT)


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
        whole_lines()
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Process(rank, world, device)


@dataclass
class Run:
    """One training run as it goes: what it was asked (``args``), where it runs (``ctx``), its network
    (``model``, and ``net``: the same wrapped for torchrun), optimizer, data, Info record, its
    ``progress`` (epoch, batch, loss_sum, psnr, best_psnr, history: what a checkpoint records of it),
    the stop flag and (on the first process only) the TensorBoard writer."""
    args: object
    ctx: Process
    model: SRCNN
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_set: TrainDataset
    test_set: TestDataset
    info: Info
    progress: dict
    stop: StopFlag = None
    writer: object = None

    @property
    def main_process(self):
        return self.ctx.rank == 0

    def save(self, name):
        """Write the run's state as ``name`` in its folder (first process only); returns the path."""
        path = os.path.join(self.args.out_dir, name)
        save_checkpoint(checkpoint_state(self.model, self.optimizer, self.args, self.info, self.progress,
                                         self.ctx.world), path)
        return path


def newest_checkpoint(out_dir):
    """The checkpoint in ``out_dir`` that is furthest into the run (by epoch, then batch), or None."""
    found = []
    for name in CHECKPOINTS:
        path = os.path.join(out_dir, name)
        if os.path.isfile(path):
            ckpt = load_checkpoint(path)
            found.append(((ckpt["epoch"], ckpt.get("batch", 0)), path, ckpt))
    return max(found, key=lambda f: f[0])[1:] if found else None


def start_run(args, ckpt, ctx):
    """The :class:`Run` of ``args``: data loaded and checked, the network built (from ``ckpt``'s state when
    continuing, else initialised as --init/--init-from ask) and its optimizer."""
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
    model = model.to(ctx.device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, args)
    progress = {"epoch": 0, "batch": 0, "loss_sum": 0.0, "psnr": None, "best_psnr": -math.inf, "history": []}
    if ckpt is not None:
        model.load_state_dict(ckpt["state_dict"])
        optimizer.load_state_dict(ckpt["optimizer"])
        for group in optimizer.param_groups:  # a changed --last-layer-lr is a flag override, like --lr
            group["lr_scale"] = 1.0 if group is optimizer.param_groups[0] else args.last_layer_lr
        progress = {k: ckpt[k] for k in progress}
        torch.set_rng_state(ckpt["rng"]["torch"])
    if args.num_epoch <= progress["epoch"]:
        raise UserError(f"the checkpoint has already completed {progress['epoch']} epochs; "
                        f"pass --num-epoch greater than that to train on")
    net = torch.nn.parallel.DistributedDataParallel(model) if ctx.world > 1 else model
    info = Info(args.name or f"srcnn-x{args.scale}", args.student_id, args.email)
    return Run(args, ctx, model, net, optimizer, train_set, test_set, info, progress)


def run_training(args, ckpt=None):
    """Train (or continue, from ``ckpt``) a run; writes checkpoints into ``args.out_dir``. Returns the last
    progress dict; exits with 128 + the signal's number after a stop signal."""
    ctx = distributed_context(args)
    try:
        set_seed(args.seed)
        keep_freed_memory()
        if args.amp and ctx.device.type == "cpu" and cpu_has_bf16() is False and ctx.rank == 0:
            print("warning: this CPU has no bfloat16 instructions, so --amp will train slower than without it",
                  file=sys.stderr, flush=True)
        run = start_run(args, ckpt, ctx)
        if run.main_process:
            os.makedirs(args.out_dir, exist_ok=True)
            with open(os.path.join(args.out_dir, "config.json"), "w") as f:
                json.dump(training_args(args), f, indent=2)
            run.writer = tensorboard_writer(args.out_dir)
            if ckpt is not None:
                p = run.progress
                print(f"resuming after {p['epoch']} epochs" + (f" and {p['batch']} batches" if p["batch"] else ""),
                      flush=True)
                warn_if_not_bitwise(ckpt, ctx)
            print(f"training {sum(p.numel() for p in run.model.parameters())} parameters on {len(run.train_set)} "
                  f"patches, {ctx.world} process(es) on {ctx.device}; writing to {args.out_dir}", flush=True)
        run.stop = StopFlag()
        try:
            train_loop(run)
            if ctx.world > 1 and check_ranks_agree(run.model, ctx) and run.main_process:
                print(f"weights identical on all {ctx.world} processes", flush=True)
            all_done(ctx)
            return run.progress
        finally:
            run.stop.restore()
            if run.writer is not None:
                run.writer.close()
    finally:
        if ctx.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def warn_if_not_bitwise(ckpt, ctx):
    """Say so when a continued run cannot be bitwise the uninterrupted one: a run's bits depend on its number
    of processes (how each batch is split) and, on the CPU, of threads (1 and 2 threads end in other weights)."""
    threads = torch.get_num_threads()
    saved = ckpt.get("world_size", ctx.world), ckpt.get("threads", threads)
    if ctx.device.type != "cpu":
        saved = saved[0], threads  # the GPU's sums do not depend on the CPU's threads
    if saved != (ctx.world, threads):
        print(f"note: the run was saved from {saved[0]} process(es) of {saved[1]} thread(s) and goes on with "
              f"{ctx.world} of {threads}: it continues, but not bitwise as it would have with the same counts",
              file=sys.stderr, flush=True)


def all_done(ctx):
    """Under torchrun, wait until every process is here. Called before the processes leave the process
    group, so that none closes its connections while another still reads from them (gloo aborts the
    process that finds a connection closed under it), and after the first process has saved."""
    if ctx.world > 1:
        dist.barrier()


def train_loop(run):
    """Train ``run`` to its --num-epoch, testing, logging and saving after every epoch (first process)."""
    args, progress = run.args, run.progress
    for epoch in range(progress["epoch"] + 1, args.num_epoch + 1):
        started = time.time()
        try:
            loss = train_epoch(run, epoch)
        except Interrupted as e:
            progress.update(batch=e.args[0], loss_sum=e.args[1], psnr=None)
            if run.main_process:
                path = run.save("checkpoint.interrupted")
                print(f"\ninterrupted in epoch {epoch} after {e.args[0]} batches; saved {path}\n"
                      f"continue with: python main.py resume {path}", file=sys.stderr, flush=True)
            all_done(run.ctx)
            sys.exit(run.stop.exit_code())
        except Diverged as e:
            kept = os.path.join(args.out_dir, "checkpoint.last")
            raise UserError(f"{e}; stopped without saving. The last good checkpoint is {kept}"
                            f"{'' if os.path.exists(kept) else ' (none yet)'}; try a lower --lr") from None
        progress.update(epoch=epoch, batch=0, loss_sum=0.0)
        if run.main_process:
            end_of_epoch(run, epoch, loss, time.time() - started)


def end_of_epoch(run, epoch, loss, seconds):
    """Test, report, log and save after ``epoch`` (first process only)."""
    args, progress = run.args, run.progress
    rows, outputs = evaluate_model(run.model, run.test_set)
    m = mean_metrics(rows)
    progress["psnr"] = m["y_psnr"]
    progress["history"] = progress["history"] + [{"epoch": epoch, "loss": loss, "seconds": seconds, **m}]
    best = m["y_psnr"] > progress["best_psnr"]
    progress["best_psnr"] = max(m["y_psnr"], progress["best_psnr"])
    print(f"epoch {epoch:4d}/{args.num_epoch}  loss {loss:.6f}  test PSNR-Y {m['y_psnr']:.3f} dB "
          f"(whole image {m['y_psnr_whole']:.3f})  SSIM-Y {m['y_ssim']:.4f}  {seconds:.1f}s"
          f"{'  (best)' if best else ''}", flush=True)
    log_epoch(run.writer, run.test_set, outputs, epoch, loss, m,
              images=epoch % args.save_freq == 0 or epoch == args.num_epoch)
    run.save("checkpoint.last")
    if best:
        run.save("checkpoint.best")
    if epoch % args.save_freq == 0:
        run.save(f"checkpoint.{epoch}")


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
