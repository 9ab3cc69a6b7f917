"""The metrics against values worked out by hand: PSNR in float64 with the border shaved, BT.601 Y in studio
range, SSIM's known cases, and averages over images, not pixels."""
import math

import numpy as np
import pytest

from metrics import image_metrics, mean_metrics, psnr, rgb_to_y, rgb_to_ycbcr, ssim, ycbcr_to_rgb


def test_psnr_matches_a_hand_computed_mse():
    a = np.zeros((10, 10), np.uint8)
    b = a.copy()
    b[0, 0] = 10  # MSE = 100 / 100 = 1 -> 10 log10(255^2) = 48.1308 dB
    assert psnr(a, b) == pytest.approx(20 * math.log10(255), abs=1e-9)
    c = np.full((8, 8, 3), 100.0)
    assert psnr(c, c + 5) == pytest.approx(10 * math.log10(255 ** 2 / 25))


def test_psnr_is_inf_for_identical_images_and_shaves_the_border():
    a = np.random.default_rng(0).integers(0, 256, (20, 20)).astype(np.uint8)
    assert psnr(a, a) == math.inf
    b = a.copy()
    b[:3, :] = 255 - b[:3, :]   # damage only the border rows
    assert psnr(a, b, border=3) == math.inf
    assert psnr(a, b, border=2) < 30


def test_y_channel_is_bt601_studio_range():
    assert rgb_to_y(np.array([0, 0, 0])) == pytest.approx(16)
    assert rgb_to_y(np.array([255, 255, 255])) == pytest.approx(235)
    assert rgb_to_y(np.array([255, 0, 0])) == pytest.approx(16 + 65.481)
    rgb = np.random.default_rng(1).uniform(0, 255, (5, 7, 3))
    np.testing.assert_allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-9)
    assert rgb_to_ycbcr(np.array([128, 128, 128]))[1:] == pytest.approx([128, 128])


def test_ssim_known_values():
    rng = np.random.default_rng(2)
    a = rng.uniform(0, 255, (32, 32))
    assert ssim(a, a) == pytest.approx(1.0)
    assert ssim(a, 255 - a) < 0  # anti-correlated structure
    # A constant shift leaves contrast and structure alone and lowers only the luminance term.
    shifted = ssim(a, a + 20)
    assert 0.9 < shifted < 1.0
    assert math.isnan(ssim(a[:10, :10], a[:10, :10]))  # no 11x11 window fits


def test_image_metrics_average_over_images_not_pixels():
    big, small = np.zeros((60, 60, 3), np.uint8), np.zeros((20, 20, 3), np.uint8)
    rows = [image_metrics(big, big + 1), image_metrics(small, small + 4)]
    mean = mean_metrics(rows)
    assert mean["rgb_psnr"] == pytest.approx((psnr(big, big + 1) + psnr(small, small + 4)) / 2)
    with pytest.raises(TypeError):
        image_metrics(big.astype(np.float32), big)
