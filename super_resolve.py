"""Inference CLI: upscale images with a trained SRCNN checkpoint, at the checkpoint's scale.

    python super_resolve.py image_examples/lr/butterfly.bmp            # writes butterfly_srcnn_x3.png beside it
    python super_resolve.py --checkpoint checkpoints/srcnn_x4.pth a.png photos/ --output-dir out/

Takes any number of image files and folders (their images, not sub-folders). The model is loaded
once; each image is upscaled by bicubic interpolation and sharpened by the network (see
``inference.py``) and written as ``<stem>_srcnn_x{scale}.png`` beside its input, in ``--output-dir``,
or at ``--output`` for a single input. An image that cannot be read or written is reported on one
line and skipped; the exit status is then 1.
"""
import argparse
import os
import sys
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps
from tqdm import tqdm

from datasets import IMAGE_EXTENSIONS, bicubic_resize
from inference import PRECISIONS, TILE, checkpoint_scale, load_model, upscale
from utils import HelpFormatter, UserError, atomic_write, choose_device, positive_int

DEFAULT_CHECKPOINT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoint.pth")


def read_image(path):
    """Decode an image file fully, EXIF rotation applied.

    Returns (rgb, alpha, gray): rgb is (H, W, 3) uint8, alpha is (H, W) uint8 or None, gray says the
    image had no colour. 16-bit and float images are reduced to 8 bits; palettes are expanded."""
    if not os.path.exists(path):
        raise UserError(f"input image not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"input is a folder, not an image: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. Pillow's palette-transparency note
            with Image.open(path) as im:
                im.load()  # decode now, so a truncated file fails here rather than later
                im = ImageOps.exif_transpose(im)
                return _to_arrays(im)
    except UserError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise UserError(f"cannot read image {path}: {e}") from None


def _to_arrays(im):
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):  # high bit depth grey: scale to 8 bits
        a = np.asarray(im, dtype=np.float64)
        a = a / 257.0 if im.mode.startswith("I;16") or a.max() > 255 else a
        im = Image.fromarray(np.clip(np.round(a), 0, 255).astype(np.uint8), "L")
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("1", "L"):
        im = im.convert("L")
    gray = im.mode in ("L", "LA")
    alpha = np.asarray(im.getchannel("A")) if im.mode in ("LA", "RGBA", "PA") else None
    return np.asarray(im.convert("RGB")), alpha, gray


def super_resolve(model, rgb, alpha, gray, scale, tile=TILE, self_ensemble=False):
    """Upscale decoded arrays by ``scale`` (see :func:`inference.upscale`); alpha is upscaled bicubically.
    Returns a PIL image in mode L, LA, RGB or RGBA, like the input."""
    out = Image.fromarray(upscale(model, rgb, scale, tile, self_ensemble))
    if gray:
        out = out.convert("L")
    if alpha is not None:
        out.putalpha(bicubic_resize(Image.fromarray(alpha), out.size))
    return out


def is_output_name(path):
    """Whether ``path`` looks like a file this tool wrote (``*_srcnn_x2`` .. ``_x4``), so that
    upscaling a folder twice does not upscale its own results."""
    return any(os.path.splitext(os.path.basename(path))[0].endswith(f"_srcnn_x{s}") for s in range(2, 5))


def expand_inputs(paths):
    """The image files named by ``paths``: files as given, folders as their images in name order.
    A path that does not exist is kept, to be reported when it is read."""
    files = []
    for path in paths:
        if os.path.isdir(path):
            found = sorted(os.path.join(path, f) for f in os.listdir(path)
                           if f.lower().endswith(IMAGE_EXTENSIONS) and not is_output_name(f))
            if not found:
                raise UserError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
            files += found
        else:
            files.append(path)
    return files


def default_output(path, scale, output_dir=None):
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(output_dir or os.path.dirname(path), f"{stem}_srcnn_x{scale}.png")


def check_output_path(path):
    """Fail before any work when ``path`` cannot be written as an image."""
    folder = os.path.dirname(os.path.abspath(path))
    ext = os.path.splitext(path)[1].lower()
    if ext not in Image.registered_extensions():
        raise UserError(f"cannot tell the image format of output {path}; use a name ending in .png")
    if not os.path.isdir(folder):
        raise UserError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise UserError(f"output folder is not writable: {folder}")


def save_image(img, path):
    """Write a PIL image atomically (see :func:`utils.atomic_write`); returns ``path``."""
    fmt = Image.registered_extensions()[os.path.splitext(path)[1].lower()]
    if img.mode in ("LA", "RGBA") and fmt == "JPEG":
        img = img.convert(img.mode[:-1])  # JPEG has no alpha channel
    # zlib level 1 for PNG (OpenCV's default too): on a 1536x1536 output 16% larger than Pillow's default
    # level 6 and 4.3x faster to write (0.15 against 0.66 s), which is a third of a 4K image's time on a CPU
    options = {"compress_level": 1} if fmt == "PNG" else {}
    try:
        atomic_write(path, lambda tmp: img.save(tmp, format=fmt, **options))
    except OSError as e:
        raise UserError(f"cannot write {path}: {e}") from None
    return path


def _read_checked(path, output):
    check_output_path(output)
    return read_image(path)


def upscale_all(inputs, output_of, upscale_one):
    """Upscale each input file into ``output_of(path)``; returns how many failed, each reported on a line.

    Reading and decoding the next image and encoding and writing the last one run in worker threads
    (Pillow releases the GIL while it decodes, encodes and compresses) while this one is upscaled."""
    failed = 0

    def report(future):
        nonlocal failed
        try:
            tqdm.write(f"wrote {future.result()}")
        except UserError as e:
            failed += 1
            tqdm.write(f"error: {e}", file=sys.stderr)

    bar = tqdm(inputs, desc="upscaling", unit="image", disable=None if len(inputs) > 1 else True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        read = lambda i: pool.submit(_read_checked, inputs[i], output_of(inputs[i]))
        reading, writing = read(0), None
        for i, path in enumerate(bar):
            current, reading = reading, read(i + 1) if i + 1 < len(inputs) else None
            try:
                image = upscale_one(*current.result())
            except UserError as e:
                failed += 1
                tqdm.write(f"error: {e}", file=sys.stderr)
                continue
            if writing is not None:
                report(writing)
            writing = pool.submit(save_image, image, output_of(path))
        if writing is not None:
            report(writing)
    return failed


def main(argv=None):
    p = argparse.ArgumentParser(description="Upscale images with a trained SRCNN, at its checkpoint's scale.",
                                formatter_class=HelpFormatter)
    p.add_argument("inputs", nargs="+", metavar="IN", help="low-resolution image files or folders of them")
    p.add_argument("--checkpoint", help="checkpoint file (default: the x3 model checkpoint.pth beside this "
                                        "script; checkpoints/srcnn_x2.pth and srcnn_x4.pth are the other scales)")
    p.add_argument("--output", help="where to write, for a single input (default: <stem>_srcnn_x{scale}.png "
                                    "beside the input)")
    p.add_argument("--output-dir", help="write every output into this folder (created if missing)")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the network over the 8 flips and rotations of the input (8x slower)")
    p.add_argument("--cuda", action="store_true", help="run on the GPU: bicubic and network, 8 bits in and out")
    p.add_argument("--precision", choices=list(PRECISIONS), default="fp32",
                   help="arithmetic of the network: fp32 is the exact result; bf16 is faster on GPUs and on CPUs "
                        "with bfloat16 instructions (README: speed and cost)")
    p.add_argument("--tile", type=positive_int, default=TILE, help="tile side in output pixels (bounds memory)")
    args = p.parse_args(argv)
    try:
        inputs = expand_inputs(args.inputs)
        if args.output and (len(inputs) > 1 or args.output_dir):
            raise UserError("--output names one file: give a single input image, or use --output-dir")
        if args.output_dir:
            try:
                os.makedirs(args.output_dir, exist_ok=True)
            except OSError as e:
                raise UserError(f"cannot create output folder {args.output_dir}: {e}") from None
        device = choose_device(args.cuda)
        model, ckpt = load_model(args.checkpoint or DEFAULT_CHECKPOINT, device, args.precision)
        scale = checkpoint_scale(ckpt)
    except UserError as e:
        sys.exit(f"error: {e}")
    failed = upscale_all(inputs, lambda path: args.output or default_output(path, scale, args.output_dir),
                         lambda rgb, alpha, gray: super_resolve(model, rgb, alpha, gray, scale, args.tile,
                                                                args.self_ensemble))
    if failed:  # each failure has had its line; a summary only where there were several images
        sys.exit(f"error: {failed} of {len(inputs)} images failed" if len(inputs) > 1 else 1)

if __name__ == "__main__":
    main()
