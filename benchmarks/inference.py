"""Inference on large images: peak memory of the whole super_resolve.py process, and output
megapixels per second of the tiled pass against one plain whole-image forward pass.

    python benchmarks/inference.py [--checkpoint checkpoint.pth] [--size 1400] [--compare-size 600] [--cuda]

The input is a synthetic RGB image of --size x --size pixels (output x3 in each direction). Peak
memory is the maximum resident set size of a separate `super_resolve.py` process, read with
getrusage. Speed compares the network passes alone (bicubic and file I/O excluded) on a
--compare-size input, small enough for the whole-image pass to fit in memory; with --cuda both
run on the GPU (and the memory run's super_resolve.py too).
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
from super_resolve import apply_network, load_model  # noqa: E402


def synthetic(size, seed=0):
    """A smooth image with some texture, so the run is not on constant data."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    rng = np.random.default_rng(seed)
    img = np.stack([np.sin(20 * xx), np.cos(13 * yy), np.sin(9 * (xx + yy))], -1) * 90 + 128
    return (img + rng.normal(0, 10, img.shape)).clip(0, 255).astype(np.uint8)


def peak_memory(checkpoint, size, cuda):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "big.png")
        Image.fromarray(synthetic(size)).save(src)
        start = time.perf_counter()
        r = subprocess.run([sys.executable, os.path.join(ROOT, "super_resolve.py"), "--checkpoint", checkpoint, src,
                            *(["--cuda"] if cuda else [])],
                           capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if r.returncode:
            sys.exit(r.stderr)
        out = Image.open(os.path.join(tmp, "big_srcnn_x3.png")).size
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2 ** 20  # KiB -> GiB
    return rss, seconds, out


def throughput(model, image, tile, device, repeat=2):
    apply_network(model, image[:64, :64], device, tile)  # warm-up (CUDA context, kernels)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        apply_network(model, image, device, tile)
        best = min(best, time.perf_counter() - start)
    return image.shape[0] * image.shape[1] / 1e6 / best


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=os.path.join(ROOT, "checkpoint.pth"))
    p.add_argument("--size", type=int, default=1400, help="input side for the memory run")
    p.add_argument("--compare-size", type=int, default=600, help="input side for the speed comparison")
    p.add_argument("--cuda", action="store_true", help="run the network on the GPU")
    args = p.parse_args()
    if args.cuda and not torch.cuda.is_available():
        sys.exit("error: --cuda was given but no CUDA device is available")
    device = torch.device("cuda" if args.cuda else "cpu")
    rss, seconds, out = peak_memory(args.checkpoint, args.size, args.cuda)
    print(f"super_resolve.py {args.size}x{args.size} -> {out[0]}x{out[1]}: peak RSS {rss:.2f} GiB, "
          f"{seconds:.1f} s wall")
    model, _ = load_model(args.checkpoint, device)
    up = synthetic(args.compare_size * 3)
    whole = throughput(model, up, None, device)
    tiled = throughput(model, up, 256, device)
    where = torch.cuda.get_device_name() if args.cuda else f"CPU, torch {torch.get_num_threads()} threads"
    print(f"network on a {up.shape[1]}x{up.shape[0]} output: whole image {whole:.2f} MP/s, "
          f"256-pixel tiles {tiled:.2f} MP/s ({tiled / whole:.2f}x), {where}")


if __name__ == "__main__":
    main()
