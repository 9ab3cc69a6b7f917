import math
import os
import pickle

import numpy as np
import pytest
import torch

from utils import (UserError, choose_device, image_metrics, load_checkpoint, mean_metrics, psnr, rgb_to_y, rgb_to_ycbcr,
                   save_checkpoint, ssim, ycbcr_to_rgb)


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


def _ckpt():
    return {"format_version": 1, "model_name": "SRCNN", "model_kwargs": {}, "state_dict": {"w": torch.arange(4.0)},
            "epoch": 3, "args": {"lr": 0.1}, "info": {"name": "x", "student_id": "", "email": ""}}


@pytest.mark.parametrize("name", ["c.pth", "model", ".hidden"])
def test_checkpoint_round_trips(tmp_path, name):
    path = tmp_path / name
    save_checkpoint(_ckpt(), path)
    back = load_checkpoint(path)
    assert back["epoch"] == 3 and back["args"] == {"lr": 0.1}
    assert torch.equal(back["state_dict"]["w"], torch.arange(4.0))
    assert os.listdir(tmp_path) == [name]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # shareable, not mkstemp's private 0600


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "c.pth"
    save_checkpoint(_ckpt(), path)
    with pytest.raises(Exception):
        save_checkpoint({"bad": lambda: 0}, path)  # a lambda cannot be pickled
    assert load_checkpoint(path)["epoch"] == 3
    assert os.listdir(tmp_path) == ["c.pth"]


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_checkpoint_that_would_run_code_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"format_version": 1, "x": _Payload(str(marker))}, f, protocol=2)  # torch.save's protocol
    torch.save({"format_version": 1, "payload": _Payload(str(marker))}, tmp_path / "evil2.pth")
    for p in (path, tmp_path / "evil2.pth"):
        with pytest.raises(UserError, match=r"cannot load checkpoint .* \(refused for safety, never run\)"):
            load_checkpoint(p)
    assert not marker.exists()


@pytest.mark.parametrize("change, message", [
    ({"format_version": 99}, "format version 99, expected 1"),
    ({"model_name": "ESPCN"}, "expected 'SRCNN'"),
])
def test_other_formats_and_models_are_refused_saying_what_was_expected(tmp_path, change, message):
    path = tmp_path / "c.pth"
    save_checkpoint({**_ckpt(), **change}, path)
    with pytest.raises(UserError, match=message):
        load_checkpoint(path)


def test_cpu_has_bf16_reads_the_kernels_cpu_flags(tmp_path):
    from utils import cpu_has_bf16
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512f\n")
    assert cpu_has_bf16(info) is False
    info.write_text("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
    assert cpu_has_bf16(info) is True
    info.write_text("Features\t: fp asimd bf16\n")  # Arm
    assert cpu_has_bf16(info) is True
    assert cpu_has_bf16(tmp_path / "missing") is None


def test_choose_device_refuses_cuda_it_cannot_give(monkeypatch):
    assert choose_device(False, 3) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="no CUDA device"):
        choose_device(True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert choose_device(True, 1) == torch.device("cuda", 1)
    with pytest.raises(UserError, match="has 2, so its process 2 has none: start at most --nproc_per_node=2"):
        choose_device(True, 2)  # torchrun --nproc_per_node=3 on a 2-GPU machine
