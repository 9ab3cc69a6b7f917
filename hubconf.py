"""torch.hub entry points: the shipped SRCNN networks (x2, x3, x4) and the project's whole upscaler.

    import torch
    net = torch.hub.load("path/to/clone", "srcnn", scale=3, source="local")      # the network alone, eval mode
    upscale = torch.hub.load("path/to/clone", "upscaler", scale=3, source="local")
    sr = upscale(pil_image)                      # or an (H, W, 3) uint8 array: the same kind back, 3 times larger

From GitHub, give "OWNER/REPO" and leave out ``source="local"``. docs/python.md has the details.

Module names. This repository's modules have plain top-level names (``model``, ``utils``, ``images`` ...), which
a caller's own modules may share. torch.hub puts this folder first on ``sys.path`` only while it loads, and
modules imported then stay in ``sys.modules`` under those names: a caller that had imported its own ``model``
would break our import ("cannot import name 'SRCNN' from 'model'"), and one that imports its own ``utils``
afterwards would silently get ours. So :func:`_project` sets the caller's entries aside, imports ours with this
folder first, keeps references to them, and puts the caller's entries back (and removes ours): our modules keep
working through the references they hold to each other. Everything is imported while the entry point runs,
never lazily afterwards, when this folder is no longer on the path.
"""
import contextlib as _contextlib
import os as _os
import sys as _sys

# The packages our modules import as they load (tests/test_hub.py reads them from the code), by import name, as
# torch.hub checks each with importlib.util.find_spec: PIL, not pillow; png is pypng's and exiv2 python-exiv2's,
# both imported by images.py. tifffile and av are imported only when a TIFF or a video is read or written,
# which the entry points never do.
dependencies = ["torch", "numpy", "PIL", "h5py", "tqdm", "png", "exiv2"]

_HERE = _os.path.dirname(_os.path.abspath(__file__))
_CHECKPOINTS = {2: "checkpoints/srcnn_x2.pth", 3: "checkpoint.pth", 4: "checkpoints/srcnn_x4.pth"}
_OURS = tuple(sorted(n[:-3] for n in _os.listdir(_HERE) if n.endswith(".py") and n != "hubconf.py"))
_USED = ("checkpoints", "images", "inference", "super_resolve", "utils")  # what the entry points call


@_contextlib.contextmanager
def _own_modules():
    """While inside: this folder first on sys.path and none of the caller's modules under our modules' names."""
    saved = {name: _sys.modules.pop(name) for name in _OURS if name in _sys.modules}
    _sys.path.insert(0, _HERE)
    try:
        yield
    finally:
        _sys.path.remove(_HERE)
        for name in _OURS:
            _sys.modules.pop(name, None)
        _sys.modules.update(saved)


def _project():
    """This repository's modules that the entry points use, imported as :func:`_own_modules` says."""
    import importlib
    with _own_modules():
        return {name: importlib.import_module(name) for name in _USED}


def _checkpoint(scale):
    if scale not in _CHECKPOINTS:
        raise ValueError(f"scale must be 2, 3 or 4, not {scale!r}")
    return _os.path.join(_HERE, _CHECKPOINTS[scale])


def srcnn(scale=3):
    """The shipped SRCNN 9-1-5 (20,099 parameters) for x2, x3 or x4 super-resolution, on the CPU, in float32
    and eval mode, with its trained weights (checkpoint.pth for x3, checkpoints/srcnn_x2.pth and srcnn_x4.pth).

    Input: (N, 3, H, W) float, the low-resolution image already upscaled by ``scale`` with Pillow's bicubic,
    values in [0, 1]. Output: (N, 3, H, W), not clamped. The network alone pads with zeros at the image edge,
    which darkens or brightens the outermost pixels: the project mirrors the edge by ``net.receptive_radius``
    pixels first and crops after (the ``upscaler`` entry point does all of it)."""
    p = _project()
    model, _ = p["checkpoints"].load_model(_checkpoint(scale))
    return model.eval()


def upscaler(scale=3, device="cpu", precision="fp32", tile=None, self_ensemble=False):
    """A function that upscales an image by ``scale`` (2, 3 or 4) exactly as super_resolve.py does (bicubic, the
    network with the mirrored edge, in tiles; transparency upscaled bicubically; 16 bits kept), pixel for pixel
    what super_resolve.py writes to PNG.

    It takes a Pillow image (RGB, RGBA, L, LA, P, 1, CMYK, I;16; one frame, taken as its pixels are: EXIF rotation
    is the caller's) and returns one of the same mode (CMYK and P come back RGB or RGBA, 1 as L); or a uint8 or
    uint16 array of shape (H, W), (H, W, 2), (H, W, 3) or (H, W, 4), and returns (H * scale, W * scale[, C]) of the
    same type. ``device``: "cpu" or "cuda"; ``precision``: "fp32" (exact), "bf16" or "fp16"; ``tile``: the tile side
    in output pixels (None: the device's default); ``self_ensemble``: average the 8 flips and rotations. Its
    attribute ``engine`` is the :class:`inference.Upscaler` it runs. Bad input raises ValueError."""
    p = _project()
    images, UserError = p["images"], p["utils"].UserError
    try:
        engine = p["inference"].Upscaler.from_checkpoint(_checkpoint(scale), device, precision, tile, self_ensemble)
    except UserError as e:
        raise ValueError(str(e)) from None
    from PIL import Image

    def upscale(image):
        try:
            if isinstance(image, Image.Image):
                return images.picture_to_pil(p["super_resolve"].super_resolve(engine, images.picture_from_pil(image)))
            picture = images.picture_from_array(image)
            out = images.picture_to_array(p["super_resolve"].super_resolve(engine, picture))
        except UserError as e:
            raise ValueError(str(e)) from None
        return out[..., 0] if getattr(image, "ndim", 3) == 2 else out
    upscale.engine = engine
    return upscale
