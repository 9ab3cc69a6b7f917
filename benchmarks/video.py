"""Video speed: a 1280x720 clip upscaled to 3840x2160 (x3), the stages apart and the whole job, 8-bit and 10-bit.

    python benchmarks/video.py [--cuda] [--precision fp32 bf16] [--frames 72] [--size 1280x720]

Makes an H.264 clip of --frames frames (a moving synthetic picture, libx264 at crf 16) and times, each on
its own: decoding it to RGB frames; the network (the image engine, `inference.upscale_frames` as
super_resolve.py calls it: one frame at a time on the CPU, inference.GPU_BATCH frames at a time on
the GPU; the mean over --network-frames frames after a warm-up, as the job's rate is a mean); and
encoding 4K frames (each input frame bicubic-upscaled, so the encoder sees moving pictures: RGB to 4:2:0,
libx264 at the default crf and each of --presets, written to a file). Then the whole job as
super_resolve.py runs it (`video.upscale_video`: the three stages overlapped in threads), with the first
of --presets. Last, with the first precision, the whole job on a 10-bit (H.264 High 10) clip of the same
picture: decoded at 16 bits, upscaled at 16 bits, encoded by libx265 in Main 10 (docs/video.md); and the job's
pipeline alone (decoding, RGB, encoding, the network replaced by a nearest-neighbour upscale) on the 8-bit clip,
and on the 10-bit one with libx265 Main 10 and with libx264 High 10: what the bit depth and the encoder cost.

The whole job's rate is its frame count over its wall time, start (the file opened) to end (the output
closed), with the fill and the drain of the pipeline in it: a little below what a long video gets.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from benchmarks.inference import device_name, size_arg, sync, synthetic  # noqa: E402
import checkpoints  # noqa: E402
from inference import PRECISIONS, Upscaler, bicubic_upscale, prepare  # noqa: E402
from video import CRF, PRESET, PRESETS, Encoding, encode_video, read_video_frames, upscale_video  # noqa: E402


def make_clip(path, w, h, frames, deep=False):
    """An H.264 clip of ``frames`` frames: a synthetic picture moving 3 pixels a frame, 25 frames/s; ``deep``:
    a 10-bit one (High 10) of the same picture, its low bits filled with a fine ramp (libx264: the bundled
    libx265 aborts the process at some small sizes, 48x32 among them; docs/video.md)."""
    picture = synthetic(h, w + 3 * frames)
    if deep:
        fine = (np.arange(picture.shape[1]) * 37 % 256).astype(np.uint16)[:, None]
        picture = picture.astype(np.uint16) * 256 + fine  # 0..65535: the 8-bit picture and a finer ramp below it
    encode_video((np.ascontiguousarray(picture[:, 3 * i:3 * i + w]) for i in range(frames)), path,
                 Encoding("libx264", preset="medium"))


def decode(path):
    """The clip's frames as RGB arrays, read as super_resolve.py reads them, and the frames/s of it."""
    start = time.perf_counter()
    frames = [rgb for _, rgb in read_video_frames(path)]
    return frames, len(frames) / (time.perf_counter() - start)


def encode(frames, path, encoding):
    """Frames/s of encoding ``frames`` as super_resolve.py does, start to end, and CPU-seconds per frame."""
    start, cpu = time.perf_counter(), time.process_time()
    n = encode_video(frames, path, encoding)
    return n / (time.perf_counter() - start), (time.process_time() - cpu) / n


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=os.path.join(ROOT, "checkpoint.pth"))
    p.add_argument("--cuda", action="store_true", help="run the network on the GPU")
    p.add_argument("--precision", nargs="+", choices=list(PRECISIONS), default=["fp32", "bf16"])
    p.add_argument("--frames", type=int, default=72, help="frames in the clip")
    p.add_argument("--size", type=size_arg, default=(1280, 720), help="input frame WxH")
    p.add_argument("--network-frames", type=int,
                   help="frames the network alone is timed on (default: 6 on the CPU, 4 batches on the GPU)")
    p.add_argument("--presets", nargs="+", choices=PRESETS, default=[PRESET],
                   help="libx264 presets to time the encoder with; the whole job uses the first")
    args = p.parse_args()
    if args.cuda and not torch.cuda.is_available():
        sys.exit("error: --cuda was given but no CUDA device is available")
    if args.frames < 2:
        sys.exit("error: --frames must be at least 2")
    device = torch.device("cuda" if args.cuda else "cpu")
    w, h = args.size
    print(f"device: {device_name(device)}; torch {torch.__version__}; {args.frames} frames of {w}x{h}")
    with tempfile.TemporaryDirectory() as tmp:
        clip = os.path.join(tmp, "clip.mp4")
        make_clip(clip, w, h, args.frames)
        frames, decode_fps = decode(clip)
        print(f"decode: {decode_fps:.2f} frames/s ({w}x{h} H.264 to RGB)", flush=True)
        for precision in args.precision:
            network, ckpt = checkpoints.load_model(args.checkpoint)
            upscaler = Upscaler(prepare(network, device, precision), checkpoints.scale_of(ckpt))  # as super_resolve.py
            scale, batch = upscaler.scale, upscaler.batch
            upscaler.frames(frames[:batch])  # warm-up: oneDNN's primitives, cuDNN's kernels
            timed = frames[1:1 + (args.network_frames or (4 * batch if args.cuda else 6))]
            sync(device)
            start = time.perf_counter()
            for i in range(0, len(timed), batch):
                upscaler.frames(timed[i:i + batch])
            sync(device)
            network_fps = len(timed) / (time.perf_counter() - start)
            print(f"{precision} network: {network_fps:.2f} frames/s ({w}x{h} -> {w * scale}x{h * scale}, bicubic "
                  f"included, {batch} frame{'s' if batch > 1 else ''} at a time)", flush=True)
            if precision == args.precision[0]:
                big = [bicubic_upscale(f, scale) for f in frames]
                for preset in args.presets:
                    fps, cpu = encode(big, os.path.join(tmp, "enc.mp4"), Encoding("libx264", preset=preset))
                    encode_fps = fps if preset == args.presets[0] else encode_fps
                    print(f"encode: {fps:.2f} frames/s, {cpu:.3f} CPU-s a frame ({w * scale}x{h * scale} RGB to 4:2:0 "
                          f"libx264 --preset {preset}, crf {CRF})", flush=True)
                fps, cpu = encode(big, os.path.join(tmp, "enc.mp4"),
                                  Encoding("libx264", preset=args.presets[0], threads="frame"))
                print(f"encode: {fps:.2f} frames/s, {cpu:.3f} CPU-s a frame (the same, --preset {args.presets[0]}, "
                      f"frame threads)", flush=True)
                del big
            start = time.perf_counter()
            n, _ = upscale_video(clip, os.path.join(tmp, f"out-{precision}.mp4"), upscaler,
                                 Encoding(preset=args.presets[0]))
            wall = time.perf_counter() - start
            print(f"{precision} whole job (--preset {args.presets[0]}): {n / wall:.2f} frames/s, "
                  f"{100 * n / wall / network_fps:.0f}% of the network's rate ({n} frames in {wall:.1f} s)", flush=True)
            if args.cuda:  # the same job with the colours converted on the GPU (video.upscale_video's device)
                start = time.perf_counter()
                n, _ = upscale_video(clip, os.path.join(tmp, f"dev-{precision}.mp4"), upscaler,
                                     Encoding(preset=args.presets[0]), device=device)
                print(f"{precision} whole job, colours on the device: {n / (time.perf_counter() - start):.2f} "
                      f"frames/s", flush=True)
            stages = {"decode": decode_fps, "network": network_fps, "encode": encode_fps}
            slowest = min(stages, key=stages.get)
            print(f"{precision} slowest stage: {slowest} ({stages[slowest]:.2f} frames/s); the whole job ran at "
                  f"{100 * n / wall / stages[slowest]:.0f}% of its rate", flush=True)
            if precision == args.precision[0]:
                ten_bit(tmp, clip, args, upscaler)


class Nearest:
    """An upscaler (what video.upscale_video takes) that repeats pixels: the job without the network."""

    def __init__(self, scale):
        self.scale, self.batch = scale, 1

    def frames(self, frames):
        return [np.repeat(np.repeat(f, self.scale, 0), self.scale, 1) for f in frames]


def ten_bit(tmp, clip, args, upscaler):
    """The whole job on a 10-bit clip of ``clip``'s picture (H.264 High 10 in, libx265 Main 10 out), then the
    pipeline alone (:class:`Nearest`) on ``clip`` and on the 10-bit clip with each 10-bit encoder."""
    deep = os.path.join(tmp, "clip10.mkv")
    make_clip(deep, *args.size, args.frames, deep=True)
    start = time.perf_counter()
    n, _ = upscale_video(deep, os.path.join(tmp, "out10.mkv"), upscaler, Encoding(preset=args.presets[0]))
    wall = time.perf_counter() - start
    print(f"10-bit whole job (High 10 in, Main 10 out, libx265 --preset {args.presets[0]}): {n / wall:.2f} frames/s "
          f"({n} frames in {wall:.1f} s)", flush=True)
    for path, codec, what in ((clip, "libx264", "8-bit"), (deep, "libx265", "10-bit, Main 10"),
                              (deep, "libx264", "10-bit, High 10")):
        start, cpu = time.perf_counter(), time.process_time()
        n, _ = upscale_video(path, os.path.join(tmp, "nearest.mkv"), Nearest(upscaler.scale),
                             Encoding(codec, preset=args.presets[0]))
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(f"pipeline alone ({what}, {codec}): {n / wall:.2f} frames/s, {1000 * cpu / n:.0f} CPU-ms a frame "
              f"(decode, RGB, nearest x{upscaler.scale}, encode)", flush=True)


if __name__ == "__main__":
    main()
