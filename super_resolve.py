"""Inference CLI: upscale one image x3 with a trained SRCNN checkpoint.

    python super_resolve.py --checkpoint checkpoint.pth photo.png [--output out.png] [--cuda]

The image is upscaled x3 with bicubic interpolation and then sharpened by the network, in tiles
whose halo covers the network's receptive field, so any size runs in bounded memory and gives the
same result as one whole-image pass. Writes ``<stem>_srcnn_x3.png`` beside the input by default.
"""
import argparse
import os
import sys
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps

from datasets import SCALE, bicubic_resize
from model import SRCNN
from utils import UserError, atomic_write, choose_device, load_checkpoint, to_tensor, to_uint8

# Each output pixel depends on a 13x13 input window (9 + 1 + 5 - 2), 6 pixels either side; a halo
# of 8 covers it with room to spare, so tiles are exact, not blended approximations.
HALO = 8
TILE = 256  # output pixels per tile side: ~17 MB of activations per tile at fp32 (64 channels x 264^2 x 4 B)


def load_model(path, device):
    """The SRCNN of a checkpoint, in eval mode on ``device``; returns (model, checkpoint)."""
    ckpt = load_checkpoint(path)
    model = SRCNN(**ckpt["model_kwargs"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit the SRCNN it describes ({str(e).splitlines()[0]})") from None
    return model.to(device).eval(), ckpt


def apply_network(model, image, device, tile=TILE):
    """Run ``model`` over an (H, W, 3) uint8 image (already bicubic-upscaled); returns (H, W, 3) uint8.

    The image is cut into ``tile`` x ``tile`` blocks, each run with a ``HALO``-pixel margin of real
    neighbours (zero padding only at the image's own border, as in a whole-image pass), and only the
    block's centre is kept, quantised straight into the 8-bit result: memory stays bounded by the
    tile, whatever the image size. ``tile=None`` runs the whole image at once."""
    out = np.empty_like(image)
    for (y, x), sr in _tiles(model, image, device, tile):
        out[y:y + sr.shape[-2], x:x + sr.shape[-1]] = to_uint8(sr)
    return out


def apply_network_float(model, image, device, tile=TILE):
    """As :func:`apply_network`, but returns the unquantised (1, 3, H, W) float output on the CPU."""
    out = torch.empty(1, 3, *image.shape[:2])
    for (y, x), sr in _tiles(model, image, device, tile):
        out[..., y:y + sr.shape[-2], x:x + sr.shape[-1]] = sr
    return out


@torch.no_grad()
def _tiles(model, image, device, tile):
    """Yield ((y, x), output block) over the image, each block exact (see :func:`apply_network`)."""
    h, w = image.shape[:2]
    tile = tile or max(h, w)
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            y0, x0 = max(y - HALO, 0), max(x - HALO, 0)
            y1, x1 = min(y + tile + HALO, h), min(x + tile + HALO, w)
            sr = model(to_tensor(image[y0:y1, x0:x1]).to(device)).float().cpu()
            th, tw = min(tile, h - y), min(tile, w - x)
            yield (y, x), sr[..., y - y0:y - y0 + th, x - x0:x - x0 + tw]


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


def super_resolve(model, rgb, alpha, gray, device, tile=TILE):
    """Upscale decoded arrays x3: bicubic, then the network; alpha is upscaled bicubically.
    Returns a PIL image in mode L, LA, RGB or RGBA, like the input."""
    h, w = rgb.shape[:2]
    size = (w * SCALE, h * SCALE)
    up = np.asarray(bicubic_resize(Image.fromarray(rgb), size))
    out = Image.fromarray(apply_network(model, up, device, tile))
    if gray:
        out = out.convert("L")
    if alpha is not None:
        out.putalpha(bicubic_resize(Image.fromarray(alpha), size))
    return out


def default_output(path):
    stem = os.path.splitext(os.path.basename(path))[0]
    return os.path.join(os.path.dirname(path), f"{stem}_srcnn_x3.png")


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
    """Write a PIL image atomically (see :func:`utils.atomic_write`)."""
    fmt = Image.registered_extensions()[os.path.splitext(path)[1].lower()]
    if img.mode in ("LA", "RGBA") and fmt == "JPEG":
        img = img.convert(img.mode[:-1])  # JPEG has no alpha channel
    try:
        atomic_write(path, lambda tmp: img.save(tmp, format=fmt))
    except OSError as e:
        raise UserError(f"cannot write {path}: {e}") from None


def main(argv=None):
    p = argparse.ArgumentParser(description="Upscale an image x3 with a trained SRCNN.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("image", help="the low-resolution input image")
    p.add_argument("--checkpoint", required=True, help="checkpoint file (e.g. checkpoint.pth)")
    p.add_argument("--output", help="where to write (default: <stem>_srcnn_x3.png beside the input)")
    p.add_argument("--cuda", action="store_true", help="run the network on the GPU")
    p.add_argument("--tile", type=int, default=TILE, help="tile side in output pixels (memory bound)")
    args = p.parse_args(argv)
    try:
        if args.tile < 1:
            raise UserError("--tile must be a positive integer")
        output = args.output or default_output(args.image)
        check_output_path(output)
        device = choose_device(args.cuda)
        model, _ = load_model(args.checkpoint, device)
        rgb, alpha, gray = read_image(args.image)
        save_image(super_resolve(model, rgb, alpha, gray, device, args.tile), output)
    except UserError as e:
        sys.exit(f"error: {e}")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
