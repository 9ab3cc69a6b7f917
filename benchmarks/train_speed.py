"""Training throughput: the project's loop against the plain loop of the assignment's pseudocode.

    python benchmarks/train_speed.py [--train-data data/T91] [--batches 200] [--rounds 3] [--amp] [--cuda]

Both run the same model, loss, optimizer and batch size (128) on the same patches. The plain loop
holds float32 NCHW tensors in memory behind a shuffled DataLoader, on glibc's default allocator
settings; the project loop is training.py's train_epoch with main.py's settings. Each loop runs in a
fresh process of its own, and the two alternate for --rounds rounds, so a drift in the machine's
speed hits both; each round prints patches per second and the ratio, and the last line the median
ratio. The first 5 batches of each are warm-up. With --cuda both loops train on the GPU: the plain
loop copies each float batch there as the pseudocode does, the project loop is main.py's --cuda path.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
import types

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datasets import TrainDataset  # noqa: E402
from distributed import Group  # noqa: E402
from main import keep_freed_memory  # noqa: E402
from model import SRCNN  # noqa: E402
from training import Recipe, Run, make_optimizer, train_epoch  # noqa: E402
from utils import choose_device  # noqa: E402

WARMUP = 5
NOT_STOPPING = types.SimpleNamespace(requested=False)


def plain_loop(data, batches, batch_size, device):
    """The assignment's loop: float tensors, shuffled DataLoader, NCHW, Adam."""
    lr = data.lr.permute(0, 3, 1, 2).float().div(255).contiguous()
    hr = data.hr.permute(0, 3, 1, 2).float().div(255).contiguous()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(lr, hr), batch_size=batch_size,
                                         shuffle=True, drop_last=True)
    model = SRCNN().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for i, (x, y) in enumerate(loader):
        if i == WARMUP:
            synchronize(device)
            start = time.perf_counter()
        if i == WARMUP + batches:
            break
        x, y = x.to(device), y.to(device)
        loss = F.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    synchronize(device)
    return batches * batch_size / (time.perf_counter() - start)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def project_loop(data, batches, batch_size, amp, device):
    """The project's train_epoch on a subset just big enough for the batches asked for."""
    n = (batches + WARMUP) * batch_size
    sub = type("Subset", (), {"lr": data.lr[:n], "hr": data.hr[:n], "__len__": lambda self: n})()
    recipe = Recipe(batch_size=batch_size, num_epoch=1, lr=1e-4, augment=True, amp=amp)
    model = SRCNN().to(device, memory_format=torch.channels_last)
    opt = make_optimizer(model, recipe.optimizer, recipe.lr)
    warm = type("Subset", (), {"lr": data.lr[:WARMUP * batch_size], "hr": data.hr[:WARMUP * batch_size],
                               "__len__": lambda self: WARMUP * batch_size})()
    progress = {"batch": 0, "loss_sum": 0.0}
    train_epoch(Run(recipe, Group(), device, model, model, opt, warm, None, None, progress, NOT_STOPPING), 1)
    synchronize(device)
    start = time.perf_counter()
    progress = {"batch": WARMUP, "loss_sum": 0.0}
    train_epoch(Run(recipe, Group(), device, model, model, opt, sub, None, None, progress, NOT_STOPPING), 1)
    synchronize(device)  # train_epoch reads each loss, so this only closes the books
    return batches * batch_size / (time.perf_counter() - start)


def time_one(loop, args):
    """Patches per second of one loop, in this process."""
    data = TrainDataset(args.train_data)
    need = (args.batches + WARMUP) * args.batch_size
    if len(data) < need:  # more batches than one pass holds: cycle through the patches again
        idx = torch.arange(need) % len(data)
        data.lr, data.hr = data.lr[idx], data.hr[idx]
    device = choose_device(args.cuda)
    if loop == "plain":
        return plain_loop(data, args.batches, args.batch_size, device)
    keep_freed_memory()  # as main.py train does
    return project_loop(data, args.batches, args.batch_size, loop == "amp", device)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-data", default="data/T91", help="an .h5 file or an image folder")
    p.add_argument("--batches", type=int, default=200, help="timed batches per loop (170 are one T91 epoch)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds of plain and project processes")
    p.add_argument("--amp", action="store_true", help="also time the project loop with bfloat16 autocast")
    p.add_argument("--cuda", action="store_true", help="train both loops on the GPU")
    p.add_argument("--loop", choices=["plain", "project", "amp"], help=argparse.SUPPRESS)  # one timing, internal
    args = p.parse_args()
    if args.cuda and not torch.cuda.is_available():
        sys.exit("error: --cuda was given but no CUDA device is available")
    if args.loop:
        print(time_one(args.loop, args))
        return
    where = torch.cuda.get_device_name() if args.cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"torch {torch.__version__}, {where}, batch {args.batch_size}, "
          f"{args.batches} timed batches, {args.rounds} rounds")
    loops = ["plain", "project"] + (["amp"] if args.amp else [])
    ratios = {loop: [] for loop in loops[1:]}
    for r in range(1, args.rounds + 1):
        speed = {}
        for loop in loops:
            cmd = [sys.executable, os.path.abspath(__file__), "--loop", loop, "--train-data", args.train_data,
                   "--batches", str(args.batches), "--batch-size", str(args.batch_size),
                   *(["--cuda"] if args.cuda else [])]
            speed[loop] = float(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()[-1])
        line = f"round {r}: plain {speed['plain']:7.1f} patches/s"
        for loop in loops[1:]:
            ratios[loop].append(speed[loop] / speed["plain"])
            line += f"   {loop} {speed[loop]:7.1f} ({ratios[loop][-1]:.2f}x)"
        print(line, flush=True)
    print("median ratio to plain: " + "   ".join(f"{k} {statistics.median(v):.2f}x" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
