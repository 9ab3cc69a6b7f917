"""Inference speed for video-sized frames, per device and precision, beside the device's arithmetic rate;
and the time and peak memory of whole super_resolve.py processes.

    python benchmarks/inference.py [--cuda] [--precision fp32 bf16 fp16] [--size 3840x2160] [--process 1280x720]

For each precision, one frame of --size output pixels (4K by default; the input is that size divided by the
scale, 1280x720 at x3) runs end to end through `inference.upscale`: 8-bit LR in, bicubic, the network,
8-bit SR out, on the CPU or (--cuda) all on the GPU, whole and in the device's default tiles (256 pixels on
the CPU, 1024 on a GPU). With --cuda, also 8 frames at a time already on the GPU and left there (bicubic
and the network on the device, as a video batch runs, without the copies to and from the host). It prints output
megapixels per second and frames per second (best of --repeat runs after a warm-up), the largest 8-bit
difference from the fp32 output of the same frame (the Set5 cost: `main.py evaluate --precision`), and the
device's arithmetic rate: a large matrix product in that precision, timed here on the same device, divided
by the network's 40,000 floating-point operations (19,999 multiply-adds) per output pixel. It is a yardstick
measured with torch's own kernels, not a hard ceiling: on the CPU the fp32 convolutions beat it slightly.
Beside it, the memory-bandwidth bound: the device's copy rate divided by the bytes of activations the network
reads and writes per output pixel unfused (:func:`network_bytes_per_pixel`), and each figure's fraction of it.
First, for comparison, the plain way: Pillow's bicubic and one float32 NCHW pass over the whole image.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import checkpoints  # noqa: E402
from inference import PRECISIONS, bicubic_upscale, default_tile, prepare, upscale, upscale_tensor  # noqa: E402


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
    return 2 * sum(c.weight.numel() for c in model.convs)


def copy_rate(device, repeat):
    """Bytes a second the device's memory moves: a 1 GiB tensor (256 MiB on the CPU) copied, read and written."""
    n = (2 ** 30 if device.type == "cuda" else 2 ** 28) // 4
    a = torch.empty(n, device=device)
    b = torch.empty_like(a)
    return 2 * a.numel() * a.element_size() / best_time(lambda: b.copy_(a), device, repeat)


def network_bytes_per_pixel(model):
    """Bytes of activations each layer reads and writes per output pixel, the ReLUs fused into the convolutions
    (what a network that keeps no activation in cache must move at least): the convolutions' input and output
    channels in the dtype the model's tensors hold (a bf16 model on the CPU keeps float32 tensors)."""
    size = model.convs[0].weight.element_size()
    return size * sum(c.in_channels + c.out_channels for c in model.convs)


def process_run(checkpoint, w, h, precision, cuda):
    """Wall time (s) and peak resident memory (GiB) of one whole super_resolve.py process (start, torch
    import, model loading, decoding, upscaling, encoding) on a W x H input; returns (seconds, GiB, output size)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.png")
        Image.fromarray(synthetic(h, w)).save(src)
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "super_resolve.py"), "--checkpoint", checkpoint,
                                 src, "--precision", precision, *(["--cuda"] if cuda else [])],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        out, err = proc.communicate()
        if status:
            sys.exit(err)
        size = Image.open(out.split()[-1]).size
    return seconds, usage.ru_maxrss / 2 ** 20, size


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
    p.add_argument("--no-plain", action="store_true",
                   help="leave out the plain pass (on a 2-core AMD EPYC without AVX-512 its NCHW convolution on a "
                        "4K frame ran out of 24 GiB of memory)")
    p.add_argument("--process", type=size_arg, nargs="*", default=[], metavar="WxH",
                   help="also time whole super_resolve.py processes on inputs of these sizes (e.g. 1280x720)")
    args = p.parse_args()
    if args.cuda and not torch.cuda.is_available():
        sys.exit("error: --cuda was given but no CUDA device is available")
    device = torch.device("cuda" if args.cuda else "cpu")
    print(f"device: {device_name(device)}; torch {torch.__version__}")
    for side in args.process:
        w, h = side
        for precision in args.precision:
            seconds, rss, out = process_run(args.checkpoint, w, h, precision, args.cuda)
            print(f"super_resolve.py {precision} {w}x{h} -> {out[0]}x{out[1]}: {seconds:.2f} s wall for the whole "
                  f"process, peak RSS {rss:.2f} GiB", flush=True)
    reference = None
    for precision in args.precision:
        network, ckpt = checkpoints.load_model(args.checkpoint)
        model, scale = prepare(network, device, precision), checkpoints.scale_of(ckpt)
        w, h = args.size[0] // scale, args.size[1] // scale
        lr = synthetic(h, w)
        mp = w * h * scale * scale / 1e6
        if reference is None and not args.no_plain:  # the assignment's plain way, for comparison: one NCHW float32 pass, zero-padded
            plain = prepare(network, device).to(memory_format=torch.contiguous_format)
            seconds = best_time(lambda: plain_pass(plain, lr, scale, device), device, args.repeat)
            print(f"plain fp32 NCHW whole image, {w}x{h} -> {w * scale}x{h * scale}: {mp / seconds:8.2f} MP/s, "
                  f"{1 / seconds:7.2f} frames/s", flush=True)
        out = upscale(model, lr, scale)
        reference = out if reference is None else reference
        diff = int(np.abs(out.astype(int) - reference.astype(int)).max())
        limit = matmul_rate(device, PRECISIONS[precision], args.repeat) / network_flops_per_pixel(model) / 1e6
        moved = network_bytes_per_pixel(model)
        bound = copy_rate(device, args.repeat) / moved / 1e6
        print(f"{precision:4s} memory-bandwidth bound: {bound:9.1f} MP/s ({bound / mp:7.1f} frames/s; {moved} bytes of "
              f"activations an output pixel, at the copy rate of the device's memory)", flush=True)
        for tile in (None, default_tile(device)):
            seconds = best_time(lambda: upscale(model, lr, scale, tile=tile), device, args.repeat)
            print(f"{precision:4s} {'whole' if tile is None else f'tile {tile}':9s} {w}x{h} -> {w * scale}x{h * scale}: "
                  f"{mp / seconds:8.2f} MP/s, {1 / seconds:7.2f} frames/s (8-bit in and out, bicubic included); "
                  f"matrix-product rate {limit:9.1f} MP/s; {100 * mp / seconds / bound:5.1f}% of the bandwidth bound; "
                  f"max 8-bit difference from fp32: {diff}", flush=True)
        if device.type == "cuda":
            frames = torch.from_numpy(np.stack([synthetic(h, w, seed) for seed in range(8)])).to(device)
            tile = default_tile(device)
            seconds = best_time(lambda: upscale_tensor(model, frames, scale, tile), device, args.repeat) / len(frames)
            print(f"{precision:4s} on device, 8 frames a batch, tile {tile}: {mp / seconds:8.2f} MP/s, "
                  f"{1 / seconds:7.2f} frames/s (bicubic and the network, frames already on the GPU); "
                  f"{100 * mp / seconds / bound:5.1f}% of the bandwidth bound", flush=True)


def plain_pass(model, lr, scale, device):
    """Pillow's bicubic, then the network as a plain float32 NCHW module on the whole image, 8 bits out."""
    up = torch.from_numpy(np.array(bicubic_upscale(lr, scale))).permute(2, 0, 1)[None].float().div(255).to(device)
    with torch.no_grad():
        return model(up).clamp(0, 1).mul(255).round().byte().cpu()


if __name__ == "__main__":
    main()
