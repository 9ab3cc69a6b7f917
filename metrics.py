"""Image quality metrics as the super-resolution literature reports them, and the colour conversion they need.

Images are numpy arrays (H, W) or (H, W, C); values in [0, 255] (``data_range``) unless a docstring says
otherwise; computed in float64. ``border`` pixels are shaved from each side before scoring (the literature
shaves the scale). Every function here is pure: the same images give the same number.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

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
