"""onnxruntime against the project's engine on the CPU: one frame, in seconds, output MP/s and peak memory.

    python benchmarks/onnx_speed.py [--onnx srcnn_x3.onnx] [--size 3840x2160] [--repeat 2] [--threads 1] [--tile 512]
                                    [--configs engine whole tiled] [--no-arena]

The frame: a synthetic low-resolution image of --size divided by the scale (1280x720 for 4K at x3), bicubic-
upscaled to --size (the network input, 3 x 2160 x 3840 for 4K). Three configurations, each in a process of its
own (so that each peak RSS is its own), each run --repeat times (the best is reported; the first run is one
of them):

- the engine: ``inference.apply_network`` in its CPU tiles of 256 output pixels (uint8 in, uint8 out);
- onnxruntime on the whole image (uint8 -> float32 in [0, 1], the session, rounding back to uint8);
- onnxruntime in --tile x --tile tiles, each with the receptive radius of its neighbours' pixels around it
  (:func:`onnx_tiled`), which gives the whole-image result and bounds memory.

Times are wall seconds and the process's CPU seconds (all its threads): on a shared, loaded machine the CPU
time of one thread is the steadier figure, so --threads defaults to 1 (torch and onnxruntime alike; onnxruntime's
spinning threads are off, which would count as CPU time). MP/s are output megapixels per second of each.
onnxruntime's CPU memory arena keeps what a run allocated for the next; --no-arena turns it off. Without --onnx,
the x3 checkpoint is exported first into a temporary folder. Each output is compared with the
engine's: the largest 8-bit difference and the share of values equal.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import checkpoints  # noqa: E402
from inference import TILE, apply_network, bicubic_upscale, prepare  # noqa: E402

CONFIGS = ("engine", "whole", "tiled")


def synthetic(h, w, seed=0):
    """A smooth (H, W, 3) uint8 image with some noise, so the run is not on constant data."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    img = np.stack([np.sin(20 * xx), np.cos(13 * yy), np.sin(9 * (xx + yy))], -1) * 90 + 128
    return (img + rng.normal(0, 10, img.shape)).clip(0, 255).astype(np.uint8)


def onnx_tiled(session, x, tile, radius):
    """The exported file run by ``session`` over the (1, 3, H, W) float32 ``x`` in ``tile`` x ``tile`` blocks of
    output, each given ``radius`` pixels of its neighbours' input around it; the graph mirrors each block's own
    edge, which reaches only those margins, so the result is the whole-image one."""
    h, w = x.shape[2:]
    out = np.empty_like(x)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            top, left = max(0, y0 - radius), max(0, x0 - radius)
            block = np.ascontiguousarray(x[:, :, top:y0 + tile + radius, left:x0 + tile + radius])
            sr = session.run(None, {"input": block})[0]
            out[:, :, y0:y0 + tile, x0:x0 + tile] = sr[:, :, y0 - top:y0 - top + tile, x0 - left:x0 - left + tile]
    return out


def runner(config, path, model, tile, threads, arena=True):
    """A function of the (H, W, 3) uint8 network input to the (H, W, 3) uint8 output, for ``config``."""
    if config == "engine":
        return lambda image: apply_network(model, image, TILE)
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_cpu_mem_arena = arena
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(image):
        x = np.ascontiguousarray(image.transpose(2, 0, 1)[None], np.float32) / np.float32(255)
        y = session.run(None, {"input": x})[0] if config == "whole" else onnx_tiled(session, x, tile,
                                                                                   model.receptive_radius)
        return np.rint(y[0].transpose(1, 2, 0) * 255).astype(np.uint8)
    return run


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def measure(config, args, out_file):
    """One configuration, in this process: {"wall", "cpu" (best of --repeat, seconds), "before" (RSS before the
    first run, MiB), "peak" (peak RSS, MiB)}; the output is saved to ``out_file``."""
    torch.set_num_threads(args.threads)
    model, ckpt = checkpoints.load_model(args.checkpoint)
    scale = checkpoints.scale_of(ckpt)
    model = prepare(model, torch.device("cpu"))
    w, h = args.size
    image = bicubic_upscale(synthetic(h // scale, w // scale), scale)
    run = runner(config, args.onnx, model, args.tile, args.threads, args.arena)
    before, walls, cpus = rss_mib(), [], []
    for _ in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = run(image)
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    np.save(out_file, out)
    return {"wall": min(walls), "cpu": min(cpus), "before": before,
            "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 10, "shape": list(image.shape)}


def cpu_name():
    with open("/proc/cpuinfo") as f:
        names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    return f"{names[0] if names else 'unknown'}, {os.cpu_count()} logical cores"


def size_arg(text):
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=os.path.join(ROOT, "checkpoint.pth"))
    p.add_argument("--onnx", help="the exported file of --checkpoint (default: export it now)")
    p.add_argument("--size", type=size_arg, default=(3840, 2160), help="output WxH")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tile", type=int, default=512, help="onnxruntime's tile side in output pixels")
    p.add_argument("--configs", nargs="+", choices=CONFIGS, default=list(CONFIGS),
                   help="engine: inference.apply_network; whole, tiled: onnxruntime")
    p.add_argument("--arena", action=argparse.BooleanOptionalAction, default=True,
                   help="onnxruntime's CPU memory arena")
    p.add_argument("--child", choices=CONFIGS, help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main():
    args = parse()
    if args.child:
        print(json.dumps(measure(args.child, args, args.out)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if not args.onnx:
            import export
            args.onnx = export.export(args.checkpoint, os.path.join(tmp, "model.onnx")).path
        print(f"CPU: {cpu_name()}; {args.threads} thread(s), one process per configuration; onnxruntime's "
              f"memory arena {'on' if args.arena else 'off'}")
        print(f"load average (1, 5, 15 min) before: {', '.join(f'{v:.2f}' for v in os.getloadavg())}", flush=True)
        labels = {"engine": f"engine, tiles {TILE}", "whole": "onnxruntime, whole image",
                  "tiled": f"onnxruntime, tiles {args.tile}"}
        outputs = {}
        configs = ["engine"] + [c for c in args.configs if c != "engine"]  # the engine's output is the reference
        for config in configs:
            outputs[config] = os.path.join(tmp, f"{config}.npy")
            child = [sys.executable, os.path.abspath(__file__), "--child", config, "--out", outputs[config],
                     "--checkpoint", args.checkpoint, "--onnx", args.onnx, "--size", "x".join(map(str, args.size)),
                     "--repeat", str(args.repeat), "--threads", str(args.threads), "--tile", str(args.tile),
                     "--arena" if args.arena else "--no-arena"]
            r = json.loads(subprocess.run(child, check=True, capture_output=True, text=True).stdout)
            mp = args.size[0] * args.size[1] / 1e6
            got, ref = (np.load(outputs[c]).astype(np.int16) for c in (config, "engine"))
            print(f"{labels[config]}: {r['wall']:.2f} s wall, {r['cpu']:.2f} s CPU (best of {args.repeat}): "
                  f"{mp / r['wall']:.2f} MP/s by wall, {mp / r['cpu']:.2f} by CPU time; peak RSS {r['peak']:.0f} MiB "
                  f"({r['before']:.0f} before the run); network input 3x{r['shape'][0]}x{r['shape'][1]}; "
                  f"difference from the engine: {np.abs(got - ref).max()} level(s), {(got == ref).mean():.4%} equal",
                  flush=True)
        print(f"load average (1, 5, 15 min) after: {', '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
