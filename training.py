"""The training engine: one run of SRCNN training, from its first batch or from a checkpoint, on one
process or many (torchrun), saving checkpoints as it goes. ``main.py`` parses the command line into a
:class:`Recipe` and calls :func:`run_training`; everything else about a run lives here.

A run's state travels as one :class:`Run`. Under torchrun, ``--batch-size`` is the global batch, split
evenly across the processes. Ctrl-C, SIGTERM and SIGUSR1 (what schedulers send before they stop a job) all
reach one handler, :class:`StopFlag`: the run finishes its batch, every process stops at that same batch,
and one ``checkpoint.interrupted`` is written, from which the run continues bitwise as if never stopped.
What a checkpoint holds and its file names are ``checkpoints.py``'s.
"""
import json
import math
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields, replace

import torch
from tqdm import tqdm

import checkpoints
from datasets import SCALE, TestDataset, TrainDataset, resolve_data
from distributed import Group
from evaluation import FLAT_COLOURS, evaluate_model
from inference import symmetry
from info import Info
from metrics import RGB_TO_YCBCR, mean_metrics
from model import SRCNN
from utils import UserError, choose_device, cpu_has_bf16, set_seed

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)


@dataclass(frozen=True)
class Recipe:
    """Everything a run was asked for: one field per flag of ``main.py train``, with the assignment's defaults
    (100 epochs, Adam, learning rate 1e-4, batch 128). Saved as a dict into every checkpoint (``args``) and as
    the run's ``config.json``, with the values the run used (its data files, folder and name)."""
    scale: int = SCALE
    lr: float = 1e-4
    batch_size: int = 128
    num_epoch: int = 100
    save_freq: int = 10
    train_data: str = None  # None: data/T91_x{scale}_train.h5, built from data/T91
    test_data: str = None  # None: data/Set5_x{scale}_test.h5, built from data/Set5
    out_dir: str = None
    seed: int = 0
    optimizer: str = "adam"
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    last_layer_lr: float = 1.0
    weight_decay: float = 0.0
    init: str = "default"
    init_from: str = None
    filters: tuple = (64, 32)  # n1, n2 of the SRCNN
    kernels: tuple = (9, 1, 5)  # f1, f2, f3
    loss: str = "rgb"
    chroma_weight: float = 1.0
    loss_border: int = 0
    flat_weight: float = 0.0
    augment: bool = False
    amp: bool = False
    cuda: bool = False
    name: str = None  # the Info record's; None: srcnn-x{scale}
    student_id: str = ""
    email: str = ""

    @classmethod
    def from_dict(cls, values):
        """The recipe of ``values`` (a checkpoint's ``args``, say); keys it does not know are left out, and
        those it lacks (flags newer than the checkpoint) take their defaults."""
        known = {f.name for f in fields(cls)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        return cls(**values)

    @property
    def model_kwargs(self):
        (n1, n2), (f1, f2, f3) = self.filters, self.kernels
        return dict(n1=n1, n2=n2, f1=f1, f2=f2, f3=f3)


class Diverged(Exception):
    """The loss became NaN or infinite."""


class Interrupted(Exception):
    """A stop signal asked the run to stop; raised at a batch boundary with (batches done, their loss sum)."""


# --------------------------------------------------------------------------- the pieces of a step

def make_optimizer(model, name="adam", lr=1e-4, weight_decay=0.0, last_layer_lr=1.0):
    """Adam, or SGD with momentum 0.9 (``name``), with the reconstruction layer in a group of its own whose
    learning rate is ``last_layer_lr`` times the others' (Dong et al. 2016 use 0.1). Each group's multiplier
    is its ``lr_scale``; :func:`train_epoch` sets each group's rate from it."""
    *features, last = model.convs
    groups = [{"params": [p for conv in features for p in conv.parameters()], "lr_scale": 1.0, "lr": lr},
              {"params": list(last.parameters()), "lr_scale": last_layer_lr, "lr": lr * last_layer_lr}]
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay, foreach=True)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay, foreach=True)
    raise ValueError(f"unknown optimizer {name!r}")


def identity_init(model):
    """Make the untrained network return its input, so training starts at the bicubic result.

    Channels 0-2 of the first two layers pass the input's channels straight through (exactly, since
    the input is non-negative and the ReLUs keep it), the last layer reads them back, and the last
    layer's other weights start at zero, so the rest of the network begins as a no-op and grows into
    the correction: the zero-initialised residual branch of residual networks, inside the plain 9-1-5.
    """
    c = model.num_channels
    with torch.no_grad():
        for conv in model.convs:  # the last layer has c output channels: all of it is set here
            conv.weight[:c].zero_()
            conv.bias[:c].zero_()
            k = conv.kernel_size[0] // 2
            for i in range(c):
                conv.weight[i, i, k, k] = 1.0


def lr_factor(step, total_steps, warmup_steps, schedule):
    """Multiplier of the base learning rate at optimizer step ``step`` (0-based): a linear warm-up over
    ``warmup_steps`` to 1, then 1 ("constant") or half a cosine from 1 to 0 at ``total_steps`` ("cosine")."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return 1.0


def epoch_plan(n, epoch, seed, batch_size):
    """The data order of one epoch of ``n`` patches: a permutation, one symmetry per batch, the batch count.

    Both derive from (seed, epoch) alone, so a resumed run, at any batch, sees exactly what an
    uninterrupted run would. The last partial batch is dropped so every process gets equal batches."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    n_batches = n // batch_size
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


def patch_loss(out, target, loss="rgb", chroma_weight=1.0, border=0):
    """The training loss of a batch of (B, 3, H, W) outputs against their targets: the mean squared error
    over R, G and B (``loss="rgb"``), or over BT.601 Y plus ``chroma_weight`` times Cb and Cr ("ycbcr"),
    leaving ``border`` pixels at each patch edge out; in units of the [0, 1] RGB scale either way."""
    if border:
        out, target = out[..., border:-border, border:-border], target[..., border:-border, border:-border]
    diff = out - target
    if loss == "rgb":
        return diff.square().mean()
    to_ycbcr = torch.as_tensor(RGB_TO_YCBCR, dtype=diff.dtype, device=diff.device)
    weights = torch.tensor([1.0, chroma_weight, chroma_weight], dtype=diff.dtype, device=diff.device)
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
    last = model.convs[-1]
    h = rgb
    for conv in model.convs:
        h = torch.nn.functional.linear(h, conv.weight.sum((2, 3)), conv.bias)
        h = h if conv is last else torch.relu(h)
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


def agree(loss, stop_requested, group):
    """(mean loss over the processes, whether any process was asked to stop) after a step.

    One small all-reduce under torchrun, so every rank sees the same loss (and so stops on the same
    non-finite value) and every rank stops at the same batch; a plain read in a single process."""
    if group.world == 1:
        return loss.item(), stop_requested
    both = torch.stack([loss.float(), torch.tensor(float(stop_requested), device=loss.device)])
    loss_sum, stops = group.all_reduce(both).tolist()
    return loss_sum / group.world, stops > 0


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


# --------------------------------------------------------------------------- a run

@dataclass
class Run:
    """One training run as it goes: its ``recipe``, its process ``group`` and ``device``, its network
    (``model``, and ``net``: the same wrapped for torchrun), optimizer, data, Info record, its ``progress``
    (epoch, batch, loss_sum, psnr, best_psnr, history: what a checkpoint records of it), the stop flag and
    (on the first process only) the TensorBoard writer."""
    recipe: Recipe
    group: Group
    device: torch.device
    model: SRCNN
    net: torch.nn.Module
    optimizer: torch.optim.Optimizer
    train_set: TrainDataset
    test_set: TestDataset
    info: Info = None
    progress: dict = None
    stop: StopFlag = None
    writer: object = None

    def save(self, name):
        """Write the run's state as ``name`` in its folder (first process only); returns the path."""
        path = os.path.join(self.recipe.out_dir, name)
        checkpoints.save(checkpoints.state(self.model, self.optimizer, asdict(self.recipe), self.info,
                                           self.progress, self.group.world), path)
        return path


def train_epoch(run, epoch):
    """Train one epoch of ``run`` from its ``progress["batch"]``; returns the mean loss over its batches."""
    recipe, group, progress = run.recipe, run.group, run.progress
    perm, ops, n_batches = epoch_plan(len(run.train_set), epoch, recipe.seed, recipe.batch_size)
    per_rank = recipe.batch_size // group.world
    total, warmup = recipe.num_epoch * n_batches, round(recipe.warmup_epochs * n_batches)
    colours = flat_colours().to(run.device) if recipe.flat_weight else None
    loss_sum = progress["loss_sum"]
    run.net.train()
    bar = tqdm(range(progress["batch"], n_batches), initial=progress["batch"], total=n_batches, leave=False,
               desc=f"epoch {epoch}", disable=None if group.main else True, dynamic_ncols=True)
    for b in bar:
        factor = lr_factor((epoch - 1) * n_batches + b, total, warmup, recipe.schedule)
        for g in run.optimizer.param_groups:
            g["lr"] = recipe.lr * g["lr_scale"] * factor
        start = b * recipe.batch_size + group.rank * per_rank
        idx = perm[start:start + per_rank]
        lr, hr = run.train_set.lr[idx], run.train_set.hr[idx]
        if recipe.augment:
            lr, hr = augment(lr, ops[b]), augment(hr, ops[b])
        lr, hr = to_input(lr, run.device), to_input(hr, run.device)
        with torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=recipe.amp):
            out = run.net(lr)
        loss = patch_loss(out.float(), hr, recipe.loss, recipe.chroma_weight, recipe.loss_border)  # float32 under amp
        if recipe.flat_weight:
            loss = loss + recipe.flat_weight * flat_loss(run.model, colours)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        value, stopping = agree(loss.detach(), run.stop.requested, group)
        if not math.isfinite(value):
            raise Diverged(f"the loss became {value} at epoch {epoch}, batch {b + 1}")
        loss_sum += value
        if stopping:
            raise Interrupted(b + 1, loss_sum)
        if b % 10 == 0:
            bar.set_postfix(loss=f"{value:.5f}")
    return loss_sum / n_batches


def initial_model(recipe, ckpt):
    """The network a run starts from: ``ckpt``'s where it continues one, else the recipe's sizes initialised
    as --init or --init-from say."""
    if ckpt is not None:
        model = SRCNN(**ckpt["model_kwargs"])
        model.load_state_dict(ckpt["state_dict"])
        return model
    model = SRCNN(**recipe.model_kwargs)
    if recipe.init_from:
        start = checkpoints.load_model(recipe.init_from)[0]
        if start.init_kwargs != model.init_kwargs:
            raise UserError(f"--init-from {recipe.init_from} holds another network ({start.init_kwargs}) than this "
                            f"run's ({model.init_kwargs})")
        model.load_state_dict(start.state_dict())
    elif recipe.init == "identity":
        identity_init(model)
    return model


def load_data(recipe):
    """(training set, test set, the recipe with the data paths it used) of ``recipe``, checked against it."""
    recipe = replace(recipe, train_data=resolve_data(recipe.train_data, "train", recipe.scale),
                     test_data=resolve_data(recipe.test_data, "test", recipe.scale))
    train_set, test_set = TrainDataset(recipe.train_data, recipe.scale), TestDataset(recipe.test_data, recipe.scale)
    if len(train_set) < recipe.batch_size:
        raise UserError(f"the training set has {len(train_set)} patches, fewer than one batch of {recipe.batch_size}")
    if 2 * recipe.loss_border >= min(train_set.hr.shape[1:3]):
        raise UserError(f"--loss-border {recipe.loss_border} leaves nothing of the "
                        f"{train_set.hr.shape[1]}x{train_set.hr.shape[2]} patches")
    return train_set, test_set, recipe


def start_run(recipe, ckpt, group, device):
    """The :class:`Run` of ``recipe`` on ``device``: data loaded and checked, the network built and its
    optimizer, continued from ``ckpt``'s state where given (None: a new run)."""
    train_set, test_set, recipe = load_data(recipe)
    model = initial_model(recipe, ckpt).to(device, memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe.optimizer, recipe.lr, recipe.weight_decay, recipe.last_layer_lr)
    progress = {"epoch": 0, "batch": 0, "loss_sum": 0.0, "psnr": None, "best_psnr": -math.inf, "history": []}
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        for g in optimizer.param_groups:  # a changed --last-layer-lr is a flag override, like --lr
            g["lr_scale"] = 1.0 if g is optimizer.param_groups[0] else recipe.last_layer_lr
        progress = {k: ckpt[k] for k in progress}
        torch.set_rng_state(ckpt["rng"]["torch"])
    if recipe.num_epoch <= progress["epoch"]:
        raise UserError(f"the checkpoint has already completed {progress['epoch']} epochs; "
                        f"pass --num-epoch greater than that to train on")
    net = torch.nn.parallel.DistributedDataParallel(model) if group.world > 1 else model
    info = Info(recipe.name or f"srcnn-x{recipe.scale}", recipe.student_id, recipe.email)
    return Run(recipe, group, device, model, net, optimizer, train_set, test_set, info, progress)


def join_group(recipe):
    """(this process's :class:`Group`, joined under torchrun, and its device)."""
    group = Group.from_env()
    device = choose_device(recipe.cuda, group.local_rank)
    if group.world > 1:
        if recipe.batch_size % group.world:
            raise UserError(f"--batch-size {recipe.batch_size} is not divisible by the {group.world} processes")
        if device.type == "cuda":
            torch.cuda.set_device(device)
    return group.join("nccl" if device.type == "cuda" else "gloo"), device


def run_training(recipe, ckpt=None):
    """Train (or continue, from ``ckpt``) the run of ``recipe``; writes checkpoints into ``recipe.out_dir``.
    Returns the last progress dict; exits with 128 + the signal's number after a stop signal."""
    group, device = join_group(recipe)
    try:
        set_seed(recipe.seed)
        if recipe.amp and device.type == "cpu" and cpu_has_bf16() is False and group.main:
            print("warning: this CPU has no bfloat16 instructions, so --amp will train slower than without it",
                  file=sys.stderr, flush=True)
        run = start_run(recipe, ckpt, group, device)
        if group.main:
            begin(run, ckpt)
        run.stop = StopFlag()
        try:
            train_loop(run)
            if group.world > 1:
                if not group.same_everywhere(torch.cat([p.detach().reshape(-1) for p in run.model.parameters()])):
                    raise RuntimeError("the processes ended with different weights")
                if group.main:
                    print(f"weights identical on all {group.world} processes", flush=True)
            group.barrier()  # the first process has saved: now all may leave
            if group.main:
                finish(run)
            return run.progress
        finally:
            run.stop.restore()
            if run.writer is not None:
                run.writer.close()
    finally:
        group.leave(wait=False)


def begin(run, ckpt):
    """The first process's start of a run: its folder, config.json, TensorBoard writer and opening lines."""
    recipe, progress = run.recipe, run.progress
    os.makedirs(recipe.out_dir, exist_ok=True)
    with open(os.path.join(recipe.out_dir, "config.json"), "w") as f:
        json.dump(asdict(run.recipe), f, indent=2)
    run.writer = tensorboard_writer(recipe.out_dir)
    if ckpt is not None:
        epochs, batches = progress["epoch"], progress["batch"]
        print(f"resuming after {plural(epochs, 'epoch')}" + (f" and {plural(batches, 'batch')}" if batches else ""),
              flush=True)
        warn_if_not_bitwise(ckpt, run.group.world, run.device)
    print(f"training {sum(p.numel() for p in run.model.parameters())} parameters on {len(run.train_set)} "
          f"patches, {run.group.world} process(es) on {run.device}; writing to {recipe.out_dir}", flush=True)


def plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "es" if word.endswith("ch") else "s")


def finish(run):
    """The last lines of a run: its best epoch, that epoch's score, and the command that upscales with it."""
    history = run.progress["history"]
    if not history:
        return
    best = max(history, key=lambda h: h["y_psnr"])
    path = os.path.join(run.recipe.out_dir, checkpoints.BEST)
    if os.path.exists(path):
        print(f"best: epoch {best['epoch']}, test PSNR-Y {best['y_psnr']:.3f} dB, saved as {path}", flush=True)
    else:  # continued into a new folder after its best epoch: that one's checkpoint.best is in the old folder
        print(f"best: epoch {best['epoch']}, test PSNR-Y {best['y_psnr']:.3f} dB, in the folder the run was "
              f"continued from", flush=True)
        path = os.path.join(run.recipe.out_dir, checkpoints.LAST)
    print(f"upscale with it: python super_resolve.py --checkpoint {path} IMAGE", flush=True)


def warn_if_not_bitwise(ckpt, world, device):
    """Say so when a continued run cannot be bitwise the uninterrupted one: a run's bits depend on its number
    of processes (how each batch is split) and, on the CPU, of threads (1 and 2 threads end in other weights)."""
    threads = torch.get_num_threads()
    saved = ckpt.get("world_size", world), ckpt.get("threads", threads)
    if device.type != "cpu":
        saved = saved[0], threads  # the GPU's sums do not depend on the CPU's threads
    if saved != (world, threads):
        print(f"note: the run was saved from {saved[0]} process(es) of {saved[1]} thread(s) and goes on with "
              f"{world} of {threads}: it continues, but not bitwise as it would have with the same counts",
              file=sys.stderr, flush=True)


def train_loop(run):
    """Train ``run`` to its --num-epoch, testing, logging and saving after every epoch (first process)."""
    recipe, progress = run.recipe, run.progress
    for epoch in range(progress["epoch"] + 1, recipe.num_epoch + 1):
        started = time.time()
        try:
            loss = train_epoch(run, epoch)
        except Interrupted as e:
            progress.update(batch=e.args[0], loss_sum=e.args[1], psnr=None)
            if run.group.main:
                path = run.save(checkpoints.INTERRUPTED)
                print(f"\ninterrupted in epoch {epoch} after {plural(e.args[0], 'batch')}; saved {path}\n"
                      f"continue with: python main.py resume {path}", file=sys.stderr, flush=True)
            run.group.barrier()
            sys.exit(run.stop.exit_code())
        except Diverged as e:
            kept = os.path.join(recipe.out_dir, checkpoints.LAST)
            raise UserError(f"{e}; stopped without saving. The last good checkpoint is {kept}"
                            f"{'' if os.path.exists(kept) else ' (none yet)'}; try a lower --lr") from None
        progress.update(epoch=epoch, batch=0, loss_sum=0.0)
        if run.group.main:
            end_of_epoch(run, epoch, loss, time.time() - started)


def end_of_epoch(run, epoch, loss, seconds):
    """Test, report, log and save after ``epoch`` (first process only)."""
    recipe, progress = run.recipe, run.progress
    rows, outputs = evaluate_model(run.model, run.test_set)
    m = mean_metrics(rows)
    progress["psnr"] = m["y_psnr"]
    progress["history"] = progress["history"] + [{"epoch": epoch, "loss": loss, "seconds": seconds, **m}]
    best = m["y_psnr"] > progress["best_psnr"]
    progress["best_psnr"] = max(m["y_psnr"], progress["best_psnr"])
    print(f"epoch {epoch:4d}/{recipe.num_epoch}  loss {loss:.6f}  test PSNR-Y {m['y_psnr']:.3f} dB "
          f"(whole image {m['y_psnr_whole']:.3f})  SSIM-Y {m['y_ssim']:.4f}  {seconds:.1f}s"
          f"{'  (best)' if best else ''}", flush=True)
    pictures = epoch % recipe.save_freq == 0 or epoch == recipe.num_epoch
    log_epoch(run.writer, epoch, loss, m, [(name, lr, sr, hr) for (name, lr, hr), sr in zip(run.test_set, outputs)]
              if pictures else [])
    run.save(checkpoints.LAST)
    if best:
        run.save(checkpoints.BEST)
    if epoch % recipe.save_freq == 0:
        run.save(checkpoints.periodic_name(epoch))


def tensorboard_writer(out_dir):
    from torch.utils.tensorboard import SummaryWriter  # slow import, rank 0 only
    return SummaryWriter(out_dir)


def log_epoch(writer, epoch, loss, metrics, pictures):
    """The epoch's loss and test metrics into TensorBoard, and for the first three of ``pictures`` (name, LR,
    SR, HR) the centre 96x96 of each side by side."""
    writer.add_scalar("train/loss", loss, epoch)
    for k, v in metrics.items():
        writer.add_scalar(f"test/{k}", v, epoch)
    for name, *images in pictures[:3]:
        cy, cx = images[0].shape[0] // 2, images[0].shape[1] // 2
        crops = [torch.from_numpy(a[cy - 48:cy + 48, cx - 48:cx + 48]).permute(2, 0, 1) for a in images]
        writer.add_image(f"lr_sr_hr/{name}", torch.cat(crops, dim=2), epoch)
    writer.flush()
