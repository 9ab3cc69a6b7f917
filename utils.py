"""Pure helpers shared by the CLIs: metrics, colour conversion, checkpoint I/O, seeding, devices,
number arguments.

Image conventions: 8-bit images are numpy ``uint8`` arrays of shape (H, W, 3) in RGB order;
float images are in [0, 255] unless a docstring says otherwise.
"""
import argparse
import ctypes
import math
import os
import random
import sys
import tempfile
import zipfile

import numpy as np
import torch
import torch.nn.functional as F

CHECKPOINT_VERSION = 1
MODEL_NAME = "SRCNN"


class UserError(Exception):
    """A problem with what the user asked for or gave us; the CLIs print it as one line and exit 2."""


# Command-line number types: argparse turns their ArgumentTypeError into a one-line usage error.
def _number(kind, minimum, inclusive):
    """An argparse type: a ``kind`` number that is finite and above (or, ``inclusive``, at least) ``minimum``."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}")
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"{text} must be {'>=' if inclusive else '>'} {minimum}")
        return value
    return parse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default in ``--help``, except the defaults that say nothing (None, False)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:  # 0 is shown
            return action.help
        return super()._get_help_string(action)


positive_int, positive_float = _number(int, 0, False), _number(float, 0.0, False)
non_negative_float, non_negative_int = _number(float, 0.0, True), _number(int, 0, True)


# --------------------------------------------------------------------------- colour

# ITU-R BT.601 for 8-bit studio range: Y in [16, 235], Cb and Cr in [16, 240]; the same matrix as
# MATLAB's rgb2ycbcr, which the SR literature (Dong et al. 2016 included) uses for its Y-PSNR.
RGB_TO_YCBCR = np.array([[65.481, 128.553, 24.966],
                         [-37.797, -74.203, 112.0],
                         [112.0, -93.786, -18.214]]) / 255.0
_YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])


def rgb_to_ycbcr(rgb):
    """(..., 3) RGB in [0, 255] -> (..., 3) float64 YCbCr (BT.601, Y in [16, 235])."""
    return np.asarray(rgb, dtype=np.float64) @ RGB_TO_YCBCR.T + _YCBCR_OFFSET


def ycbcr_to_rgb(ycbcr):
    """Inverse of :func:`rgb_to_ycbcr`: (..., 3) YCbCr -> (..., 3) float64 RGB in [0, 255]."""
    return (np.asarray(ycbcr, dtype=np.float64) - _YCBCR_OFFSET) @ np.linalg.inv(RGB_TO_YCBCR).T


def rgb_to_y(rgb):
    """(..., 3) RGB in [0, 255] -> (...) float64 luma Y in [16, 235]."""
    return np.asarray(rgb, dtype=np.float64) @ RGB_TO_YCBCR[0] + _YCBCR_OFFSET[0]


# --------------------------------------------------------------------------- metrics

def shave(img, border):
    """Drop ``border`` pixels from each side of the first two axes (H, W)."""
    return img[border:img.shape[0] - border, border:img.shape[1] - border] if border else img


def psnr(a, b, border=0, data_range=255.0):
    """PSNR in dB between two images of equal shape (H, W[, C]), computed in float64.

    Returns ``inf`` for identical images."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    mse = np.mean((shave(a, border) - shave(b, border)) ** 2)
    return math.inf if mse == 0 else 10.0 * math.log10(data_range ** 2 / mse)


def _gaussian_window(size=11, sigma=1.5):
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return torch.outer(g, g)[None, None]


def ssim(a, b, border=0, data_range=255.0):
    """Structural similarity (Wang et al. 2004) of two single-channel (H, W) images.

    Gaussian window 11x11 with sigma 1.5, K1 = 0.01, K2 = 0.03, statistics over the 'valid' region
    (windows fully inside the image), averaged; the same definition as the reference MATLAB code.
    Images smaller than the window have no such region: their SSIM is NaN.
    """
    a = torch.as_tensor(np.asarray(shave(a, border), np.float64))[None, None]
    b = torch.as_tensor(np.asarray(shave(b, border), np.float64))[None, None]
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"ssim needs two (H, W) images of equal shape, got {a.shape} and {b.shape}")
    w = _gaussian_window()
    if min(a.shape[-2:]) < w.shape[-1]:
        return math.nan
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = F.conv2d(a, w), F.conv2d(b, w)
    var_a = F.conv2d(a * a, w) - mu_a ** 2
    var_b = F.conv2d(b * b, w) - mu_b ** 2
    cov = F.conv2d(a * b, w) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def image_metrics(output, target, border=3):
    """Scores of one 8-bit RGB output against its 8-bit RGB ground truth, as the SR literature
    reports them: PSNR and SSIM on the BT.601 Y channel and PSNR on RGB, ``border`` pixels shaved
    (the literature shaves the scale), and the Y-PSNR of the whole image, edges included.

    Returns ``{"y_psnr": dB, "y_ssim": float, "rgb_psnr": dB, "y_psnr_whole": dB}``. Average these
    over images, not batches.
    """
    if output.dtype != np.uint8 or target.dtype != np.uint8:
        raise TypeError("image_metrics scores 8-bit images; quantise the network output first")
    y_out, y_tgt = rgb_to_y(output), rgb_to_y(target)
    return {"y_psnr": psnr(y_out, y_tgt, border),
            "y_ssim": ssim(y_out, y_tgt, border),
            "rgb_psnr": psnr(output, target, border),
            "y_psnr_whole": psnr(y_out, y_tgt)}


def mean_metrics(rows):
    """Average a list of metric dicts key by key (one entry per image)."""
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


# --------------------------------------------------------------------------- reproducibility, devices

def set_seed(seed):
    """Seed every RNG the project touches (Python, NumPy, PyTorch on all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def choose_device(cuda, local_rank=0):
    """The device to run on: ``cuda:local_rank`` when ``cuda`` is asked for, else the CPU.

    Raises UserError when CUDA is asked for but not available, rather than silently using the CPU, and
    when torchrun starts more processes on a machine than it has GPUs (one GPU per process)."""
    if not cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("--cuda was given but no CUDA device is available; drop --cuda to run on the CPU")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise UserError(f"--cuda gives each process on a machine a GPU of its own; this machine has {count}, so its "
                        f"process {local_rank} has none: start at most --nproc_per_node={count} here")
    return torch.device("cuda", local_rank)


def whole_lines():
    """Have stdout and stderr write each line in one piece. torchrun starts its processes unbuffered
    (``python -u``), where print writes the text and the newline apart, and another process's line can land
    between them in the pipe or terminal they share (seen: two "wrote" lines run together on one line)."""
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True, write_through=False)


def cpu_has_bf16(cpuinfo="/proc/cpuinfo"):
    """Whether this CPU has bfloat16 arithmetic instructions (x86 AVX512-BF16 or AMX-BF16, Arm BF16), by
    the kernel's CPU flags; None where they cannot be read. Without them, bfloat16 convolutions are
    emulated and run slower than float32."""
    try:
        with open(cpuinfo) as f:
            flags = {word for line in f if line.startswith(("flags", "Features")) for word in line.split()}
    except OSError:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


def keep_freed_memory():
    """Have glibc keep freed memory for reuse instead of handing it back to the kernel.

    A training step at batch 128 allocates and frees about 140 MB of activations. glibc serves
    blocks that large with fresh mmap() calls, which the kernel zero-fills page by page: about
    35,000 page faults per step, measured with getrusage. With mmap off and no heap trimming the
    same memory is reused and the faults disappear. Returns False where there is no glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2 ** 30))


# --------------------------------------------------------------------------- checkpoints

def atomic_write(path, write):
    """Create ``path`` all at once: ``write(tmp)`` fills a temporary file in the same folder, which is
    flushed to disk and only then renamed over ``path``. A crash at any moment leaves either the old
    file or the new one, never half of one; on failure the temporary file is removed.
    The file gets the usual permissions (0666 less the umask), not mkstemp's private 0600."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    # ".NAME-XXXX.tmp": hidden, and never without a stem before its last dot (torch.save needs one)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + "-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(state, path):
    """Write ``state`` (a dict of tensors and plain Python data) to ``path`` atomically."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _unloadable(path, error):
    """Why torch.load could not read ``path``, in words: by the file's first bytes (torch writes a zip
    archive, or before torch 1.6 a pickle), then by what torch said."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "the file is empty"
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        return "not a PyTorch file (a checkpoint is what main.py train writes)"
    if "Unsupported global" in str(error):
        return "it holds objects other than tensors and plain data (refused for safety, never run)"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if not any(name.endswith("/data.pkl") for name in z.namelist()):
                return "a zip archive, not a PyTorch file (a checkpoint is what main.py train writes)"
    return "a damaged or truncated PyTorch file"


def load_checkpoint(path):
    """Load and check a checkpoint written by :func:`save_checkpoint`; safe on untrusted files.

    Uses ``torch.load(weights_only=True)``: a file that would run code when unpickled is refused,
    never executed. Raises UserError with a one-line reason for anything that is not a checkpoint
    of this project's format.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UserError(f"checkpoint {path} is a folder; give the checkpoint file in it")
    if not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad bytes; all mean "not a checkpoint"
        raise UserError(f"cannot load checkpoint {path}: {_unloadable(path, e)}") from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise UserError(f"{path} is not an SRCNN checkpoint of this project (no format_version)")
    if ckpt["format_version"] != CHECKPOINT_VERSION:
        raise UserError(f"{path} has checkpoint format version {ckpt['format_version']}, "
                        f"expected {CHECKPOINT_VERSION}")
    if ckpt.get("model_name") != MODEL_NAME:
        raise UserError(f"{path} holds a {ckpt.get('model_name')!r} model, expected {MODEL_NAME!r}")
    missing = {"model_kwargs", "state_dict", "epoch", "args", "info"} - set(ckpt)
    if missing:
        raise UserError(f"{path} is missing checkpoint entries: {', '.join(sorted(missing))}")
    return ckpt
