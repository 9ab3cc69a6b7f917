"""The inference engine: from an 8-bit image to the network's 8-bit output, for every caller
(``super_resolve.py``, ``main.py evaluate`` and training's per-epoch test score).

It owns the bicubic pre-upscale, the handling of the image edge, tiling, self-ensemble, precision
and device transfer:

- Edge: the image is reflect-padded by the network's receptive radius (6 pixels for the 9-1-5) before
  the network, and the margin is cropped after. Every output pixel then sees image content (real or
  mirrored), never the zeros of the convolutions' own padding, which training never rewarded; with
  zero padding the shipped x3 model drew a dark/bright 3-pixel frame (whole-image Set5 Y-PSNR 28.27 dB
  against 32.63 dB with reflection; replicate padding measured 32.61).
- Tiles: the padded image is cut into blocks that overlap by the receptive radius, so each block's
  centre is exact and the tiled result equals one whole-image pass; memory stays bounded by the tile.
- Self-ensemble (Lim et al., "EDSR", 2017): the 8 flips and rotations of each block are run through
  the network, undone and averaged before quantising; 8 times the work.
- Precision and device: the network runs where its weights are, in their dtype (fp32, bf16 or fp16,
  see :func:`prepare`), channels-last; only 8-bit images cross between host and device.
"""
import functools
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

import checkpoints
from datasets import bicubic_resize
from model import SRCNN
from utils import UserError, cpu_has_bf16

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TILE = 256  # output pixels per tile side: ~19 MB of activations per tile at fp32 (64 channels x 268^2 x 4 B)
GPU_TILE = 1024  # on a GPU, small tiles leave it waiting on Python (see :func:`default_tile`)
GPU_BATCH = 8  # video frames through a GPU at once (on the CPU one at a time: a batch is no faster there)


def default_tile(device):
    """The tile side for ``device``: 256 output pixels on the CPU, where tiles that stay in the caches run
    1.3 to 1.7x the whole-image pass; 1024 on a GPU, where each tile costs a dozen kernel launches:
    256-pixel tiles ran a 4K frame in 64 ms against 14.5 at 1024 and 13.3 whole (bf16, one NVIDIA H200),
    and 1024 keeps memory bounded (2.5 GiB for 8 4K frames in bf16, 13.5 whole)."""
    return GPU_TILE if device.type == "cuda" else TILE


def bicubic_upscale(rgb, scale):
    """(H, W, C) or (H, W) uint8 -> (H * scale, W * scale[, C]) uint8 with Pillow's bicubic, as the training data.

    16-bit images (uint16) keep their 16 bits: Pillow's bicubic runs on each channel in 32-bit float
    (the same filter), rounded back to uint16."""
    h, w = rgb.shape[:2]
    if rgb.dtype == np.uint8:
        return np.asarray(bicubic_resize(Image.fromarray(rgb), (w * scale, h * scale)))
    if rgb.dtype != np.uint16:
        raise TypeError(f"bicubic_upscale takes uint8 or uint16 images, not {rgb.dtype}")
    planes = rgb[..., None] if rgb.ndim == 2 else rgb
    channels = [np.asarray(bicubic_resize(Image.fromarray(planes[..., c].astype(np.float32)), (w * scale, h * scale)))
                for c in range(planes.shape[2])]
    out = np.clip(np.rint(np.stack(channels, -1)), 0, 65535).astype(np.uint16)
    return out[..., 0] if rgb.ndim == 2 else out


def _pillow_bicubic_taps(in_size, out_size):
    """Source indices and weights, each (out_size, taps), of Pillow's bicubic resampling along one axis.

    As Pillow computes them (libImaging/Resample.c): the cubic of Keys with a = -0.5, support 2 input
    pixels (scaled up when downscaling), the window clipped to the image and its weights renormalised."""
    def cubic(x):
        x = abs(x)
        if x < 1:
            return (1.5 * x - 2.5) * x * x + 1
        return (((x - 5) * x + 8) * x - 4) * -0.5 if x < 2 else 0.0
    step = in_size / out_size
    stretch = max(step, 1.0)
    support = 2.0 * stretch
    taps = int(np.ceil(support)) * 2 + 1
    index, weight = np.zeros((out_size, taps), np.int64), np.zeros((out_size, taps))
    for j in range(out_size):
        center = (j + 0.5) * step
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        w = np.array([cubic((i - center + 0.5) / stretch) for i in range(lo, hi)])
        index[j, :hi - lo] = np.arange(lo, hi)
        index[j, hi - lo:] = hi - 1  # padding taps of weight 0
        weight[j, :hi - lo] = w / w.sum() if w.sum() else w
    return index, weight


PRECISION_BITS = 22  # Pillow's fixed-point weights for 8-bit images: 32 - 8 - 2 bits


@functools.lru_cache(maxsize=32)
def _fixed_taps(in_size, out_size, device):
    """:func:`_pillow_bicubic_taps` on ``device``, the weights in Pillow's fixed point; kept for the next frame
    of the same size (computing them takes 30 ms for 720p -> 4K, more than the GPU's whole upscale)."""
    index, weight = _pillow_bicubic_taps(in_size, out_size)
    fixed = np.where(weight < 0, np.ceil(weight * 2 ** PRECISION_BITS - 0.5),  # C's (int)(w +- 0.5)
                     np.floor(weight * 2 ** PRECISION_BITS + 0.5)).astype(np.int32)
    return torch.from_numpy(index).to(device), torch.from_numpy(fixed).to(device)


def _resample_axis(x, size, axis):
    """Resample a uint8 tensor along ``axis`` to ``size`` exactly as Pillow's 8-bit pass does: weights in
    fixed point, sums in 32-bit integers as Pillow's (they cannot overflow: the weights' magnitudes sum to
    under 2^23 and the values to 255), rounded half up, clipped to 0..255; a uint8 result.

    The sum is taken one tap at a time, so memory holds two 32-bit copies of the result, not one 64-bit copy
    per tap: 720p -> 4K takes 0.3 GB a frame instead of 2.2 GB (peak memory on the CPU), about 17 GB for
    a batch of 8 frames on a GPU before."""
    index, fixed = _fixed_taps(x.shape[axis], size, x.device)
    shape = [1] * x.dim()
    shape[axis] = size
    out = torch.full((), 1 << (PRECISION_BITS - 1), dtype=torch.int32, device=x.device)
    for k in range(index.shape[1]):
        out = out + x.index_select(axis, index[:, k]).int() * fixed[:, k].reshape(shape)
    return (out >> PRECISION_BITS).clamp_(0, 255).to(torch.uint8)


@functools.lru_cache(maxsize=32)
def _float_taps(in_size, out_size, device):
    """:func:`_pillow_bicubic_taps` on ``device``, the weights in float32 (Pillow's 16-bit path sums in double)."""
    index, weight = _pillow_bicubic_taps(in_size, out_size)
    return torch.from_numpy(index).to(device), torch.from_numpy(weight.astype(np.float32)).to(device)


def _resample_axis_float(x, size, axis):
    """Resample a float tensor along ``axis`` to ``size`` as Pillow's 32-bit float pass does (no rounding)."""
    index, weight = _float_taps(x.shape[axis], size, x.device)
    shape = [1] * x.dim()
    shape[axis] = size
    out = x.index_select(axis, index[:, 0]) * weight[:, 0].reshape(shape)
    for k in range(1, index.shape[1]):
        out += x.index_select(axis, index[:, k]) * weight[:, k].reshape(shape)
    return out


def bicubic_upscale_torch(image, scale):
    """(..., H, W, C) uint8 tensor on any device -> (..., H * scale, W * scale, C) uint8 tensor on it: Pillow's
    bicubic computed with torch in Pillow's own integer arithmetic (horizontal pass, 8-bit result, vertical
    pass), so a GPU pipeline needs no CPU pass and gives Pillow's pixels exactly; a batch of frames at once.
    An int32 tensor holding 16-bit samples goes as :func:`bicubic_upscale` takes a 16-bit image: Pillow's float
    passes (in float32 here, not double: a sample can differ by 1 of 65535), rounded to an int32 result."""
    h, w = image.shape[-3:-1]
    if image.dtype == torch.uint8:
        x = _resample_axis(image, w * scale, image.dim() - 2)
        return _resample_axis(x, h * scale, image.dim() - 3)
    x = _resample_axis_float(image.float(), w * scale, image.dim() - 2)
    return _resample_axis_float(x, h * scale, image.dim() - 3).round_().clamp_(0, 65535).int()


def _mirror_index(n, radius):
    """The indices :func:`pad_edges` takes along an axis of ``n`` pixels."""
    i = np.arange(-radius, n + radius)
    if n > radius:
        i = np.abs(i)
        return np.where(i >= n, 2 * (n - 1) - i, i)
    return np.clip(i, 0, n - 1)


@functools.lru_cache(maxsize=64)
def _mirror_tensor(n, radius, device):
    """:func:`_mirror_index` on ``device``, kept: copying it from the host each time made the host wait there for
    the device to finish the work queued before it (a copy that is not asynchronous waits for the stream)."""
    return torch.from_numpy(_mirror_index(n, radius)).to(device)


def pad_edges(image, radius):
    """Mirror ``radius`` pixels out from each side of an (H, W, C) array or (..., H, W, C) tensor (reflection
    without repeating the edge pixel); images too small to mirror repeat their edge pixels instead."""
    h, w = image.shape[-3:-1]
    if isinstance(image, np.ndarray):
        return image[_mirror_index(h, radius)][:, _mirror_index(w, radius)]
    rows, cols = (_mirror_tensor(n, radius, image.device) for n in (h, w))
    return image.index_select(-3, rows).index_select(-2, cols)


def symmetry(x, op, inverse=False):
    """Symmetry ``op`` (0-7) of the square applied to the last two axes of ``x``; 0 is the identity.
    ``inverse`` applies its inverse. Ops 4-7 flip the width axis before rotating."""
    k = op % 4
    if not inverse:
        x = x.flip(-1) if op >= 4 else x
        return torch.rot90(x, k, dims=(-2, -1)) if k else x
    x = torch.rot90(x, -k, dims=(-2, -1)) if k else x
    return x.flip(-1) if op >= 4 else x


def round_preserving_sums(w, dtype=torch.bfloat16):
    """The float32 weights ``w`` (O, I, kh, kw) as values ``dtype`` holds exactly, each (o, i) kernel's sum (its
    response to a flat input, so a flat colour's output) as near its exact sum as one-step nudges allow: round to
    nearest, then move weights by one step of ``dtype`` (each at most once, the one with the largest rounding
    residual in the direction needed first) while that brings the kernel's sum nearer. Plain rounding moved a
    flat grey by a level in bfloat16; this keeps every flat colour (Set5 x3 cost 0.0003 dB, see prepare)."""
    exact = w.detach().double().flatten(2)
    target = exact.sum(-1)
    r = w.detach().to(dtype).flatten(2).clone()
    used = torch.zeros(r.shape, dtype=torch.bool)
    inf = torch.tensor(float("inf"), dtype=dtype)
    for _ in range(exact.shape[-1]):
        short = target - r.double().sum(-1)
        up = (short > 0).unsqueeze(-1)
        moved = torch.nextafter(r, torch.where(up, inf, -inf).expand_as(r))
        step = (moved.double() - r.double()).abs()
        residual = (exact - r.double()) * torch.where(up, 1.0, -1.0)
        helps = ~used & (step < 2 * short.abs().unsqueeze(-1))  # moving by less than twice the gap narrows it
        best = torch.where(helps, residual, torch.full_like(residual, -float("inf"))).argmax(-1, keepdim=True)
        go = helps.gather(-1, best)
        if not go.any():
            break
        r.scatter_(-1, best, torch.where(go, moved.gather(-1, best), r.gather(-1, best)))
        used.scatter_(-1, best, used.gather(-1, best) | go)
    return r.float().reshape(w.shape)


class Bf16FirstLayerSRCNN(SRCNN):
    """bfloat16 on the CPU at float32's quality. The tensors stay float32. The first layer, 78% of the
    multiply-adds, runs in oneDNN's bfloat16 math mode (bfloat16 products, float32 sums and output) on the image
    as integers 0..255 and on weights (the 1/255 folded in) already rounded to bfloat16 by
    :func:`round_preserving_sums`: every operand is exact in bfloat16, so the result is the same on every CPU,
    with bfloat16 instructions or without (where it runs oneDNN's float32 kernels, the bfloat16 mode being
    emulated there and slower). Layers 2 and 3 compute
    in float32. Rounding the activations between layers to bfloat16, as bfloat16 tensors do, cost 0.022 dB
    or more on Set5 x3 in every arrangement measured; this one costs 0.0003 dB.
    Input: (N, 3, H, W) with values 0..255. Output: float32 in [0, 1] like the SRCNN's."""
    INPUT_SPAN = 255.0  # the value of a white input pixel

    def __init__(self, model):
        super().__init__(**model.init_kwargs)
        self.load_state_dict(model.state_dict())
        first = self.convs[0]
        with torch.no_grad():
            first.weight.copy_(round_preserving_sums(first.weight / 255))
        # Without bfloat16 instructions oneDNN's bfloat16 mode emulates them, about 15% slower than its float32
        # kernels on a 2-core AMD EPYC (Zen 3), which give the same products here: every operand is a bfloat16.
        self.bf16_math = cpu_has_bf16() is not False

    def forward(self, x):
        if not self.bf16_math:
            return super().forward(x)
        first = self.convs[0]
        saved = torch.backends.mkldnn.conv.fp32_precision
        torch.backends.mkldnn.conv.fp32_precision = "bf16"  # process-wide: only the network's thread runs convs
        try:
            x = self.relu(first(x))
        finally:
            torch.backends.mkldnn.conv.fp32_precision = saved
        return self.reconstruction(self.relu(self.nonlinear_mapping(x)))


class ReducedPrecisionSRCNN(SRCNN):
    """An SRCNN that computes in bfloat16 or float16 tensors (on a GPU), arranged to lose as little as these
    formats allow. It takes the image as integers 0..255, which both hold exactly (the 1/255 moves into the
    first layer's weights); the first and last layers' weights are rounded with :func:`round_preserving_sums`
    so flat colours keep their response; the last layer computes the output minus 0.5, centred on zero, and
    the 0.5 and what rounding took from that bias are added back in float32. Set5, measured with the same
    tensors on a CPU: bfloat16 costs 0.023 dB of Y-PSNR at x3 (the earlier plain arrangement 0.059), 0.062 at x2,
    0.020 at x4, and moves a flat colour by up to 1 level; float16 costs at most 0.002 dB and no flat colour:
    on a GPU, float16 is the fast precision at float32's quality.
    Input: (N, 3, H, W) with values 0..255. Output: float32 in [0, 1] like the SRCNN's."""
    INPUT_SPAN = 255.0  # the value of a white input pixel

    def __init__(self, model, dtype):
        super().__init__(**model.init_kwargs)
        self.load_state_dict(model.state_dict())
        first, *_, last = self.convs
        with torch.no_grad():
            first.weight.copy_(round_preserving_sums(first.weight / 255, dtype))
            last.weight.copy_(round_preserving_sums(last.weight, dtype))
            centred = last.bias - 0.5
            last.bias.copy_(centred.to(dtype).float())
        self.register_buffer("offset", (0.5 + centred - last.bias).reshape(1, -1, 1, 1))  # stays float32
        for conv in self.convs:
            conv.to(dtype)

    def forward(self, x):
        return super().forward(x.to(self.dtype)).float() + self.offset


def precision_warning(device, precision):
    """What to tell a user about ``precision`` on ``device``, or None: on a CPU, fp16 runs PyTorch's slow
    convolutions (Set5 took 2.4 to 7 times fp32's time on 2-core AMD EPYC and Intel Xeon CPUs), and bf16 without
    bfloat16 instructions gains nothing (:class:`Bf16FirstLayerSRCNN` then runs float32 kernels)."""
    if device.type != "cpu":
        return None
    if precision == "fp16":
        return "--precision fp16 runs several times slower than fp32 on a CPU (it is meant for GPUs)"
    if precision == "bf16" and cpu_has_bf16() is False:
        return "this CPU has no bfloat16 instructions: --precision bf16 runs at fp32's speed here, no faster"
    return None


def prepare(model, device, precision="fp32"):
    """``model`` ready for inference on ``device`` in ``precision`` (for "fp32" the model itself, else a converted
    copy), in eval mode, channels-last in memory (the faster layout for its convolutions on CPU and GPU alike). "fp32": the exact result. "bf16": on
    the CPU a :class:`Bf16FirstLayerSRCNN` (fp32's quality), on a GPU a :class:`ReducedPrecisionSRCNN`; "fp16":
    a :class:`ReducedPrecisionSRCNN` (fp32's quality; meant for GPUs)."""
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    if precision == "bf16" and device.type == "cpu":
        model = Bf16FirstLayerSRCNN(model)
    elif precision != "fp32":
        model = ReducedPrecisionSRCNN(model, PRECISIONS[precision])
    return model.to(device, memory_format=torch.channels_last).eval()


@torch.no_grad()
def _blocks(model, image, tile, self_ensemble, peak=255):
    """Yield ((y, x), float output block (N, 3, h, w) in [0, 1], on the model's device) covering the
    (N, H, W, 3) integer tensor ``image`` whose white is ``peak``; see :func:`apply_network`."""
    span = getattr(model, "INPUT_SPAN", 1.0)  # the SRCNN takes [0, 1]
    r = model.receptive_radius
    h, w = image.shape[1:3]
    padded = pad_edges(image.to(model.device), r)
    tile = tile or max(h, w)
    for y in range(0, h, tile):
        for x in range(0, w, tile):
            th, tw = min(tile, h - y), min(tile, w - x)
            block = padded[:, y:y + th + 2 * r, x:x + tw + 2 * r].permute(0, 3, 1, 2)
            block = block.float().mul_(span / peak).contiguous(memory_format=torch.channels_last)
            if self_ensemble:
                sr = sum(symmetry(model(symmetry(block, op)).float(), op, inverse=True) for op in range(8)) / 8
            else:
                sr = model(block).float()
            yield (y, x), sr[:, :, r:r + th, r:r + tw]


def _as_tensor(image):
    """An image array as a tensor (uint16 as int32, which every torch operation takes), a tensor as itself."""
    if not isinstance(image, np.ndarray):
        return image
    return torch.from_numpy(image.astype(np.int32) if image.dtype == np.uint16 else np.require(image, requirements="CW"))


def apply_network(model, image, tile=TILE, self_ensemble=False):
    """Run ``model`` over an (H, W, 3) uint8 or uint16 image (already bicubic-upscaled), array or tensor
    (uint8, or int32 holding 16 bits) on any device, or over an (N, H, W, 3) tensor of N frames (one batch
    through the network); returns the result of the same shape and type, a numpy array for an array, else a
    tensor on the model's device.

    The edge is mirrored (see the module's docstring), the image is run in ``tile`` x ``tile`` blocks
    (``None``: all at once), each block computed on the model's device in the model's precision and
    quantised there straight into the result: 8 bits, or 16 for a 16-bit image, whose extra bits the
    network, computing in floats, fills with real detail."""
    src = _as_tensor(image)
    batch = src if src.dim() == 4 else src[None]
    peak = 255 if src.dtype == torch.uint8 else 65535
    out = torch.empty(batch.shape, dtype=torch.uint8 if peak == 255 else torch.int32,
                      device=model.device)
    for (y, x), sr in _blocks(model, batch, tile, self_ensemble, peak):
        out[:, y:y + sr.shape[-2], x:x + sr.shape[-1]] = sr.clamp_(0, 1).mul_(peak).round_().permute(0, 2, 3, 1)
    out = out if src.dim() == 4 else out[0]
    if not isinstance(image, np.ndarray):
        return out
    return out.cpu().numpy().astype(image.dtype, copy=False)


def apply_network_float(model, image, tile=TILE, self_ensemble=False):
    """As :func:`apply_network`, but returns the unquantised (1, 3, H, W) float32 output on the CPU."""
    src = _as_tensor(image)
    out = torch.empty(1, 3, *src.shape[:2])
    for (y, x), sr in _blocks(model, src[None], tile, self_ensemble):
        out[:, :, y:y + sr.shape[-2], x:x + sr.shape[-1]] = sr.cpu()
    return out


def upscale(model, rgb, scale, tile=TILE, self_ensemble=False):
    """An LR image (H, W, 3) uint8 or uint16 array upscaled by ``scale``: bicubic, then the network;
    (sH, sW, 3) of the same type.

    On a GPU the whole 8-bit pipeline runs there: the 8-bit image goes over, is upscaled by
    :func:`bicubic_upscale_torch` and comes back as 8 bits. On the CPU, and for 16-bit images, Pillow does
    the bicubic."""
    device = model.device
    if device.type == "cpu" or rgb.dtype == np.uint16:
        return apply_network(model, bicubic_upscale(rgb, scale), tile, self_ensemble)
    return upscale_tensor(model, _as_tensor(rgb), scale, tile, self_ensemble).cpu().numpy()


def upscale_frames(model, frames, scale, tile=TILE, self_ensemble=False):
    """A list of LR frames of one size (video frames), each upscaled as :func:`upscale` does it, pixel for
    pixel. On a GPU the 8-bit frames go over together and run through bicubic and the network as one batch
    (fewer, larger kernels) and come back one by one; on the CPU, where a batch is no faster, one after the
    other."""
    device = model.device
    if device.type == "cpu" or len(frames) <= 1 or frames[0].dtype == np.uint16:
        return [upscale(model, f, scale, tile, self_ensemble) for f in frames]
    out = upscale_tensor(model, torch.from_numpy(np.stack(frames)), scale, tile, self_ensemble)
    return [frame.cpu().numpy() for frame in out]  # one copy a frame: 8 4K frames in one took 21 ms a frame (H200)


def upscale_tensor(model, lr, scale, tile=TILE, self_ensemble=False):
    """An (H, W, 3) uint8 tensor, or an (N, H, W, 3) one of N frames, upscaled on the model's device:
    :func:`bicubic_upscale_torch` and the network, all N frames together; the uint8 result stays there.
    An int32 tensor holding 16-bit samples gives an int32 one, as :func:`upscale` gives a uint16 image
    (Pillow's float bicubic, computed on the device)."""
    lr = lr.to(model.device)
    return apply_network(model, bicubic_upscale_torch(lr, scale), tile, self_ensemble)


@dataclass(frozen=True)
class Upscaler:
    """A model prepared for inference (:func:`prepare`) and how to run it: ``scale``, ``tile`` (None: the
    device's :func:`default_tile`) and ``self_ensemble``. Calling it upscales one image as :func:`upscale`;
    :meth:`frames` upscales video frames, :attr:`batch` at a time. Images are RGB arrays; a whole picture
    (alpha, grey, metadata) goes through ``super_resolve.super_resolve(upscaler, picture)``."""
    model: SRCNN
    scale: int
    tile: int = None
    self_ensemble: bool = False

    @classmethod
    def from_checkpoint(cls, path, device="cpu", precision="fp32", tile=None, self_ensemble=False):
        """The upscaler of the checkpoint ``path`` (its network and scale) on ``device`` ("cpu", "cuda", a
        torch.device) in ``precision`` ("fp32", "bf16" or "fp16", see :func:`prepare`); ``tile`` and
        ``self_ensemble`` as the class says. UserError for a file that is no checkpoint."""
        model, ckpt = checkpoints.load_model(path)
        return cls(prepare(model, torch.device(device), precision), checkpoints.scale_of(ckpt), tile, self_ensemble)

    @property
    def batch(self):
        """Frames worth giving :meth:`frames` at once: a batch on a GPU, one on the CPU."""
        return GPU_BATCH if self.model.device.type == "cuda" else 1

    def __call__(self, rgb):
        """An (H, W, 3) uint8 or uint16 RGB array upscaled: (H * scale, W * scale, 3) of the same type."""
        return upscale(self.model, rgb, self.scale, self.tile or default_tile(self.model.device), self.self_ensemble)

    @property
    def device(self):
        """Where the network runs (its weights' torch.device)."""
        return self.model.device

    def frames(self, frames):
        """A list of (H, W, 3) uint8 frames of one size, each upscaled as calling the upscaler does it, pixel for
        pixel: a list of (H * scale, W * scale, 3) uint8 frames."""
        return upscale_frames(self.model, frames, self.scale, self.tile or default_tile(self.model.device),
                              self.self_ensemble)

    def tensors(self, frames):
        """An (N, H, W, 3) tensor of N frames, uint8 or int32 holding 16 bits, on any device, upscaled on
        :attr:`device` as calling the upscaler upscales each frame (:func:`upscale_tensor`): (N, H * scale,
        W * scale, 3) of the same type, left there. The video path's call where colours are converted on the
        device (video.py)."""
        return upscale_tensor(self.model, frames, self.scale, self.tile or default_tile(self.model.device),
                              self.self_ensemble)
