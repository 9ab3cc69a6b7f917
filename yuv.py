"""A video's YUV planes on a torch device: moved there and back, and converted to RGB and back as swscale converts
them with video.SWS_FLAGS, so that where the network runs on a GPU only YUV crosses between host and device and
the encoding thread runs no swscale (video.py's device path, docs/video.md).

The arithmetic is swscale's (PyAV 18.1, FFmpeg 8.1.2), measured against it and tested in tests/test_yuv.py:

- Matrix: the luma weights Kr and Kb of the stream's matrix (:data:`LUMA`); floats, rounded half up to the level.
- Levels: n-bit YUV is 8-bit YUV times 2^(n-8) in limited range (16..235, chroma 128 +- 112); in full range
  swscale reads Y / 2^(n-8) on 0..255 and writes (2^n - 1) times Y' and (2^n - 1) (Cb' + 1/2), as
  :func:`_levels` says. 16-bit RGB (rgb48, what 10- and 12-bit video is upscaled in) is 8-bit RGB times 256:
  white is 65280, not 65535, both ways.
- Chroma in: upsampled with swscale's bicubic, Keys' cubic with a = -0.6, where the frame says its chroma sits
  (H.264 and HEVC: left, co-sited with the even columns, between the rows; :data:`SITINGS`); edges repeated.
- Chroma out: 4:2:0 from full-resolution chroma (swscale's full_chroma_inp) with the same cubic stretched to
  twice its width (8 taps), centred in each 2x2 block, which is what swscale does for a frame that states no
  siting (an RGB frame made from an array); edges repeated. A flat colour keeps its exact value through both.
"""
import functools
import math

import numpy as np
import torch

# AVColorSpace (video.MATRICES' keys) -> the luma weights (Kr, Kb) of its matrix (ITU-T H.273, Table 4)
LUMA = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114), 7: (0.212, 0.087),
        9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}  # 10: BT.2020 constant luminance, as swscale: non-constant
# AVChromaLocation -> where the first chroma sample sits, (x, y) in luma pixels from the first luma pixel, in a
# 2x2 block (H.273's chroma_sample_loc_type; FFmpeg's av_chroma_location_enum_to_pos)
SITINGS = {1: (0.0, 0.5), 2: (0.5, 0.5), 3: (0.0, 0.0), 4: (0.5, 0.0), 5: (0.0, 1.0), 6: (0.5, 1.0)}
LEFT, CENTER = 1, 2
CUBIC = -0.6  # swscale's SWS_BICUBIC: B = 0, C = 0.6 (libswscale/utils.c initFilter), Keys' a = -C
RGB16_WHITE = 255 * 256  # swscale's rgb48 white: 8-bit levels times 256


def _keys(x, a=CUBIC):
    """Keys' cubic convolution kernel at the distances ``x`` (numpy)."""
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x < 1, near, np.where(x < 2, far, 0.0))


@functools.lru_cache(maxsize=64)
def _taps(in_size, out_size, first, device):
    """Source indices and weights, each (out_size, taps), of swscale's bicubic resampling of ``in_size`` samples
    to ``out_size`` (libswscale/utils.c, initFilter): output sample j sits at input position
    c = (j + 0.5) * in_size / out_size - ``first`` (``first``: 0.5 for centred samples); its window of 5 taps
    (1 + 4 * ratio when shrinking, the cubic then stretched by the ratio) starts at c - 1.5 (or half the window
    less one) rounded toward zero, as C's integer division does, so near the top or left edge it loses its
    first tap; taps past an edge fall on the edge sample, and the weights are scaled to sum to 1. Kept for the
    next frame of the same size."""
    step = in_size / out_size
    stretch = max(step, 1.0)
    size = 5 if step <= 1 else 1 + -(-4 * in_size // out_size)
    size = max(min(size, in_size - 2), 1)
    centre = (np.arange(out_size) + 0.5) * step - first
    start = np.trunc(centre - (size - 2) / 2).astype(np.int64)
    index = start[:, None] + np.arange(size)
    weight = _keys((index - centre[:, None]) / stretch)
    weight /= weight.sum(1, keepdims=True)
    index = np.clip(index, 0, in_size - 1)
    return torch.from_numpy(index).to(device), torch.from_numpy(weight.astype(np.float32)).to(device)


def _resample(x, size, axis, first):
    """The float tensor ``x`` resampled along ``axis`` to ``size`` samples (:func:`_taps`). Each output is its
    first tap's sample plus the weighted differences of the others from it, so that where the samples are equal
    (a flat colour) it is that sample exactly, at every phase: a plain weighted sum in float32 moved some of a
    flat frame's pixels across a rounding step and not others."""
    index, weight = _taps(x.shape[axis], size, first, x.device)
    shape = [1] * x.dim()
    shape[axis] = size
    base = x.index_select(axis, index[:, 0])
    out = base.clone()
    for k in range(1, index.shape[1]):
        out += (x.index_select(axis, index[:, k]) - base) * weight[:, k].reshape(shape)
    return out


def _ceiling(bits):
    """The largest value swscale's horizontal pass keeps of ``bits``-bit samples: 15-bit intermediates for 8
    bits (2^15 - 1 in 1/128 levels), 19-bit ones for more (libswscale/hscale.c, hScale8To15 and hScale16To19)."""
    kept = 15 if bits == 8 else 19
    return (2 ** kept - 1) / 2 ** (kept - bits)


def _levels(bits, full):
    """(scale, offset) of Y and of the chroma in n-bit levels (``bits``) for ``full`` or limited range, each
    for reading (YUV -> RGB) and writing: level = offset + scale * value, Y' in 0..1 and Cb', Cr' in -0.5..0.5."""
    s = 2 ** (bits - 8)
    if not full:  # both ways: 8-bit levels times 2^(n-8)
        return {"read": ((219 * s, 16 * s), (224 * s, 128 * s)), "write": ((219 * s, 16 * s), (224 * s, 128 * s))}
    top = 2 ** bits - 1  # swscale's full range: read on 0..255 times 2^(n-8), written on 0..2^n - 1
    return {"read": ((255 * s, 0), (255 * s, 128 * s)), "write": ((top, 0), (top, top / 2))}


def full_chroma(chroma, size, sub, siting, bits=None):
    """The chroma planes ``chroma`` (float tensors (N, h, w)) upsampled to ``size`` (width, height) as swscale
    upsamples them: by 2^``sub`` (x, y; 0: not subsampled), sited at ``siting`` (AVChromaLocation, :data:`SITINGS`;
    an unknown one centred), the horizontal pass first and, for ``bits``-bit samples, clipped at what its
    intermediates hold (:func:`_ceiling`; None: not clipped)."""
    x0, y0 = SITINGS.get(siting, SITINGS[CENTER])
    for axis, length, log2, pos in ((-1, size[0], sub[0], x0), (-2, size[1], sub[1], y0)):
        if log2:  # chroma sample 0 at luma ``pos``: in chroma samples, (pos + 0.5) / 2^log2 from its edge
            chroma = [_resample(c, length, c.dim() + axis, (pos + 0.5) / 2 ** log2) for c in chroma]
            if axis == -1 and bits is not None:
                chroma = [c.clamp_(max=_ceiling(bits)) for c in chroma]
    return chroma


def rgb_from_yuv(planes, space, full, bits, sub=(1, 1), siting=LEFT):
    """RGB of YUV planes: ``planes`` (Y (N, H, W), Cb and Cr (N, H >> sub[1], W >> sub[0]), rounded up), integer
    tensors of ``bits`` (8, 10 or 12) on any device, of the matrix ``space`` (AVColorSpace, :data:`LUMA`) in
    ``full`` or limited range, chroma subsampled by 2^``sub`` (x, y) and sited at ``siting``
    (AVChromaLocation). Returns (N, H, W, 3) on the planes' device: uint8 for 8 bits, else int32 on swscale's
    16-bit scale (white 65280)."""
    y = planes[0].float()
    cb, cr = full_chroma([p.float() for p in planes[1:]], y.shape[:-3:-1], sub, siting, bits)
    (ys, yo), (cs, co) = _levels(bits, full)["read"]
    kr, kb = LUMA[space]
    luma, pb, pr = (y - yo) / ys, (cb - co) / cs, (cr - co) / cs
    r, b = luma + 2 * (1 - kr) * pr, luma + 2 * (1 - kb) * pb
    g = (luma - kr * r - kb * b) / (1 - kr - kb)
    white, top, dtype = (255, 255, torch.uint8) if bits == 8 else (RGB16_WHITE, 65535, torch.int32)
    return torch.stack([r, g, b], -1).mul_(white).add_(0.5).floor_().clamp_(0, top).to(dtype)


def yuv420_from_rgb(rgb, space, full, bits):
    """4:2:0 planes of RGB: ``rgb`` (N, H, W, 3) with even H and W, uint8 (8-bit RGB) or int32 (16-bit RGB on
    swscale's scale, :func:`rgb_from_yuv`), on any device, in ``bits`` (8 or 10) of the matrix ``space`` in
    ``full`` or limited range. Returns the planes packed as yuv420p holds them and PyAV's
    ``VideoFrame.from_ndarray`` takes them, (N, H * 3 / 2, W): the Y plane, then Cb and Cr, each (H / 2, W / 2)
    in rows of W; uint8 for 8 bits, else int16 (the same bits as uint16: 10-bit samples fit in 15)."""
    n, h, w, _ = rgb.shape
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 needs even sides, not {w}x{h}")
    r, g, b = rgb.float().div_(255 if rgb.dtype == torch.uint8 else RGB16_WHITE).unbind(-1)
    kr, kb = LUMA[space]
    luma = g + kr * (r - g) + kb * (b - g)  # Kr R + (1 - Kr - Kb) G + Kb B, exactly g where r = g = b
    pb, pr = (b - luma) / (2 * (1 - kb)), (r - luma) / (2 * (1 - kr))
    for axis, size in ((2, w // 2), (1, h // 2)):  # centred in each 2x2 block: 0.5 input samples from its edge
        pb, pr = (_resample(c, size, axis, 0.5) for c in (pb, pr))
    (ys, yo), (cs, co) = _levels(bits, full)["write"]
    planes = [luma * ys + yo, pb * cs + co, pr * cs + co]
    packed = torch.cat([p.add_(0.5).floor_().clamp_(0, 2 ** bits - 1).flatten(1) for p in planes], 1)
    return packed.to(torch.uint8 if bits == 8 else torch.int16).reshape(n, h * 3 // 2, w)


# --------------------------------------------------------------------------- between host and device

def to_device(arrays, device):
    """Host arrays of one shape and dtype (uint8, int16 or int32; a plane of each frame of a batch, say) as one
    (N, ...) tensor on ``device``. On a GPU they are gathered into pinned memory and copied without waiting:
    the copy queues behind the device's work and the host goes on."""
    pinned = device.type == "cuda"
    batch = torch.empty((len(arrays), *arrays[0].shape), dtype=torch.from_numpy(arrays[0][:0]).dtype,
                        pin_memory=pinned)
    for row, array in zip(batch.numpy(), arrays):
        row[...] = array
    return batch.to(device, non_blocking=pinned)


class Download:
    """A tensor on its way to the host: on a GPU copied into pinned memory without waiting, behind the work that
    makes it; :meth:`array` (from any thread) waits for the copy and gives it as a numpy array."""

    def __init__(self, tensor):
        self.host, self.done = tensor, None
        if tensor.device.type == "cuda":
            self.host = torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True)
            self.host.copy_(tensor, non_blocking=True)
            self.done = torch.cuda.Event()
            self.done.record(torch.cuda.current_stream(tensor.device))

    def array(self):
        if self.done is not None:
            self.done.synchronize()
        return self.host.numpy()
