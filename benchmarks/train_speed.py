"""Training throughput: the project's loop against the plain loop of the assignment's pseudocode.

    python benchmarks/train_speed.py --train-data ../shared/data/T91 [--batches 60] [--amp]

Both run the same model, loss, optimizer and batch size (128) on the same patches, one after the
other in one process; the plain loop holds float32 NCHW tensors in memory behind a shuffled
DataLoader and runs first, on glibc's default allocator settings, before the project's are applied.
Prints patches per second for each and their ratio. The first 5 batches of each are warm-up.
"""
import argparse
import os
import sys
import time
import types

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from datasets import TrainDataset  # noqa: E402
from main import make_optimizer, train_epoch  # noqa: E402
from model import SRCNN  # noqa: E402
from utils import keep_freed_memory  # noqa: E402

WARMUP = 5
NOT_STOPPING = types.SimpleNamespace(requested=False)


def plain_loop(data, batches, batch_size):
    """The assignment's loop: float tensors, shuffled DataLoader, NCHW, Adam."""
    lr = data.lr.permute(0, 3, 1, 2).float().div(255).contiguous()
    hr = data.hr.permute(0, 3, 1, 2).float().div(255).contiguous()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(lr, hr), batch_size=batch_size,
                                         shuffle=True, drop_last=True)
    model = SRCNN()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for i, (x, y) in enumerate(loader):
        if i == WARMUP:
            start = time.perf_counter()
        if i == WARMUP + batches:
            break
        loss = F.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return batches * batch_size / (time.perf_counter() - start)


def project_loop(data, batches, batch_size, amp):
    """The project's train_epoch on a subset just big enough for the batches asked for."""
    n = (batches + WARMUP) * batch_size
    sub = type("Subset", (), {"lr": data.lr[:n], "hr": data.hr[:n], "__len__": lambda self: n})()
    args = argparse.Namespace(seed=0, batch_size=batch_size, num_epoch=1, warmup_epochs=0, schedule="constant",
                              lr=1e-4, last_layer_lr=1.0, optimizer="adam", weight_decay=0.0, augment=True, amp=amp)
    model = SRCNN().to(memory_format=torch.channels_last)
    opt = make_optimizer(model, args)
    ctx = {"rank": 0, "world": 1, "device": torch.device("cpu")}
    warm = type("Subset", (), {"lr": data.lr[:WARMUP * batch_size], "hr": data.hr[:WARMUP * batch_size],
                               "__len__": lambda self: WARMUP * batch_size})()
    train_epoch(model, opt, warm, args, 1, 0, 0.0, ctx, NOT_STOPPING)
    start = time.perf_counter()
    train_epoch(model, opt, sub, args, 1, WARMUP, 0.0, ctx, NOT_STOPPING)
    return batches * batch_size / (time.perf_counter() - start)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-data", default="data/T91_x3_train.h5", help="an .h5 file or an image folder")
    p.add_argument("--batches", type=int, default=60, help="timed batches per loop")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--amp", action="store_true", help="also time the project loop with bfloat16 autocast")
    args = p.parse_args()
    data = TrainDataset(args.train_data)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.batches} timed batches")
    plain = plain_loop(data, args.batches, args.batch_size)
    print(f"plain loop    {plain:8.1f} patches/s")
    keep_freed_memory()  # as main.py train does; after the plain loop, which runs on glibc's defaults
    ours = project_loop(data, args.batches, args.batch_size, amp=False)
    print(f"project loop  {ours:8.1f} patches/s   {ours / plain:.2f}x plain")
    if args.amp:
        bf16 = project_loop(data, args.batches, args.batch_size, amp=True)
        print(f"project --amp {bf16:8.1f} patches/s   {bf16 / plain:.2f}x plain")


if __name__ == "__main__":
    main()
