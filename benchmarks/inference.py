"""Inference speed for video-sized frames, per device and precision, beside the device's arithmetic limit;
and the peak memory of a whole super_resolve.py process on a large image.

    python benchmarks/inference.py [--cuda] [--precision fp32 bf16 fp16] [--size 3840x2160] [--memory-size 1400]

For each precision, one frame of --size output pixels (4K by default; the input is that size divided by the
scale, 1280x720 at x3) runs end to end through `inference.upscale`: 8-bit LR in, bicubic, the network,
8-bit SR out, on the CPU or (--cuda) all on the GPU, whole and in 256-pixel tiles. It prints output
megapixels per second and frames per second (best of --repeat runs after a warm-up), the largest 8-bit
difference from the fp32 output of the same frame (the Set5 cost: `main.py evaluate --precision`), and the
arithmetic limit: the rate of a large matrix product in that precision, measured here on the same device,
divided by the network's 40,000 floating-point operations (19,999 multiply-adds) per output pixel.
"""
import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from inference import PRECISIONS, checkpoint_scale, load_model, upscale  # noqa: E402


def synthetic(h, w, seed=0):
    """A smooth (H, W, 3) uint8 image with some noise, so the run is not on constant data."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    img = np.stack([np.sin(20 * xx), np.cos(13 * yy), np.sin(9 * (xx + yy))], -1) * 90 + 128
    return (img + rng.normal(0, 10, img.shape)).clip(0, 255).astype(np.uint8)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def best_time(fn, device, repeat):
    fn()  # warm-up: CUDA context, cuDNN's choice of kernels, oneDNN's primitives
    sync(device)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def matmul_rate(device, dtype, repeat):
    """Floating-point operations per second of a large square matrix product in ``dtype`` on ``device``."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    return 2 * n ** 3 / best_time(lambda: a @ b, device, repeat)


def network_flops_per_pixel(model):
    return 2 * sum(c.weight.numel() for c in (model.patch_extraction, model.nonlinear_mapping, model.reconstruction))


def peak_memory(checkpoint, size, cuda):
    """Peak resident memory (GiB) and wall time of a super_resolve.py process on a --size square image."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "big.png")
        Image.fromarray(synthetic(size, size)).save(src)
        start = time.perf_counter()
        r = subprocess.run([sys.executable, os.path.join(ROOT, "super_resolve.py"), "--checkpoint", checkpoint, src,
                            *(["--cuda"] if cuda else [])], capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if r.returncode:
            sys.exit(r.stderr)
        out = Image.open(r.stdout.split()[-1]).size
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20, seconds, out


def device_name(device):
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        model = "CPU"
    return f"{model}, {torch.get_num_threads()} threads"


def size_arg(text):
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=os.path.join(ROOT, "checkpoint.pth"))
    p.add_argument("--cuda", action="store_true", help="run on the GPU")
    p.add_argument("--precision", nargs="+", choices=list(PRECISIONS), default=["fp32", "bf16"])
    p.add_argument("--size", type=size_arg, default=(3840, 2160), help="output frame WxH")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per figure (the best is kept)")
    p.add_argument("--memory-size", type=int, default=0, help="also measure a super_resolve.py process on an "
                   "image of this side (0: skip)")
    args = p.parse_args()
    if args.cuda and not torch.cuda.is_available():
        sys.exit("error: --cuda was given but no CUDA device is available")
    device = torch.device("cuda" if args.cuda else "cpu")
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    if args.memory_size:
        rss, seconds, out = peak_memory(args.checkpoint, args.memory_size, args.cuda)
        print(f"super_resolve.py {args.memory_size}x{args.memory_size} -> {out[0]}x{out[1]}: peak RSS {rss:.2f} GiB, "
              f"{seconds:.1f} s wall")
    reference = None
    for precision in args.precision:
        model, ckpt = load_model(args.checkpoint, device, precision)
        scale = checkpoint_scale(ckpt)
        w, h = args.size[0] // scale, args.size[1] // scale
        lr = synthetic(h, w)
        mp = w * h * scale * scale / 1e6
        out = upscale(model, lr, scale)
        if reference is None:
            reference = out
        diff = int(np.abs(out.astype(int) - reference.astype(int)).max())
        limit = matmul_rate(device, PRECISIONS[precision], args.repeat) / network_flops_per_pixel(model) / 1e6
        for tile in (None, 256):
            seconds = best_time(lambda: upscale(model, lr, scale, tile=tile), device, args.repeat)
            print(f"{precision:4s} {'whole' if tile is None else f'tile {tile}':8s} {w}x{h} -> {w * scale}x{h * scale}: "
                  f"{mp / seconds:8.2f} MP/s, {1 / seconds:7.2f} frames/s (8-bit in and out, bicubic included); "
                  f"arithmetic limit {limit:9.1f} MP/s; max 8-bit difference from fp32: {diff}", flush=True)


if __name__ == "__main__":
    main()
