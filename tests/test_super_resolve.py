"""Inference: exact tiling, output naming, and every kind of input image."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import main
from conftest import ROOT
from model import SRCNN
from super_resolve import apply_network_float, read_image, super_resolve
from utils import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint, written as training writes them, of an untrained model that returns its
    (bicubic) input: outputs are then predictable, so the tests can check pixel values."""
    model = SRCNN()
    main.identity_init(model)
    args = main.build_parser().parse_args(["train"])
    path = tmp_path_factory.mktemp("ckpt") / "model.pth"
    progress = {"epoch": 1, "batch": 0, "loss_sum": 0.0, "psnr": 30.0, "best_psnr": 30.0, "history": []}
    opt = main.make_optimizer(model, args)
    save_checkpoint(main.checkpoint_state(model, opt, args, main.Info(), progress, 1), path)
    return str(path)


def run(*argv):
    return subprocess.run([sys.executable, "super_resolve.py", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_tiles_reproduce_the_whole_image_pass():
    torch.manual_seed(1)
    model = SRCNN().eval()
    img = np.random.default_rng(0).integers(0, 256, (150, 123, 3), dtype=np.uint8)
    whole = apply_network_float(model, img, torch.device("cpu"), tile=None)
    for tile in (16, 37, 64):
        tiled = apply_network_float(model, img, torch.device("cpu"), tile=tile)
        assert (tiled - whole).abs().max() < 1e-5, tile


def test_writes_stem_srcnn_x3_png_beside_the_input(checkpoint, tmp_path):
    src = tmp_path / "lr.bmp"
    Image.fromarray(np.full((10, 12, 3), 90, np.uint8)).save(src)
    r = run("--checkpoint", checkpoint, src)
    out = tmp_path / "lr_srcnn_x3.png"
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"wrote {out}"
    assert Image.open(out).size == (36, 30)
    r = run("--checkpoint", checkpoint, src, "--output", tmp_path / "x.png")
    assert r.returncode == 0 and Image.open(tmp_path / "x.png").size == (36, 30)


def _sr(checkpoint, img, tmp_path, name="in.png", **save):
    path = tmp_path / name
    img.save(path, **save)
    out = tmp_path / "out.png"
    r = run("--checkpoint", checkpoint, path, "--output", out)
    assert r.returncode == 0, r.stderr
    return Image.open(out)


def test_grayscale_stays_grayscale(checkpoint, tmp_path):
    gray = Image.fromarray(np.arange(100, dtype=np.uint8).reshape(10, 10))
    out = _sr(checkpoint, gray, tmp_path)
    assert out.mode == "L" and out.size == (30, 30)
    np.testing.assert_allclose(np.asarray(out), np.asarray(gray.resize((30, 30), Image.BICUBIC)), atol=1)


def test_alpha_is_kept_and_upscaled(checkpoint, tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3] = 120
    rgba[:, 4:, 3] = 255
    out = _sr(checkpoint, Image.fromarray(rgba, "RGBA"), tmp_path)
    assert out.mode == "RGBA" and out.size == (24, 24)
    a = np.asarray(out)[..., 3]
    assert a[:, :9].max() < 40 and a[:, 15:].min() > 215
    la = _sr(checkpoint, Image.fromarray(rgba[..., ::3].copy(), "LA"), tmp_path, "la.png")
    assert la.mode == "LA"


def test_palette_16_bit_one_pixel_and_jpeg_images_work(checkpoint, tmp_path):
    pal = Image.fromarray(np.random.default_rng(0).integers(0, 255, (9, 7, 3), dtype=np.uint8)).quantize(8)
    assert _sr(checkpoint, pal, tmp_path, "p.png").mode == "RGB"
    deep = Image.fromarray(np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000)
    assert deep.mode.startswith("I;16")
    out = _sr(checkpoint, deep, tmp_path, "d.png")
    assert out.mode == "L" and out.size == (24, 24) and np.asarray(out).max() > 200
    assert _sr(checkpoint, Image.new("RGB", (1, 1), (200, 10, 10)), tmp_path, "one.png").size == (3, 3)
    jpg = Image.fromarray(np.random.default_rng(1).integers(0, 255, (16, 20, 3), dtype=np.uint8))
    assert _sr(checkpoint, jpg, tmp_path, "j.jpg", quality=90).size == (60, 48)


def test_exif_rotation_is_applied(checkpoint, tmp_path):
    img = Image.new("RGB", (20, 10), (50, 100, 150))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the picture shown is 10 wide, 20 high
    out = _sr(checkpoint, img, tmp_path, "rot.jpg", exif=exif)
    assert out.size == (30, 60)


def test_read_image_reports_what_it_decoded(tmp_path):
    Image.new("L", (4, 5), 7).save(tmp_path / "g.png")
    rgb, alpha, gray = read_image(str(tmp_path / "g.png"))
    assert rgb.shape == (5, 4, 3) and alpha is None and gray


def test_super_resolve_output_matches_evaluate_pipeline():
    """super_resolve on the LR image reproduces the evaluate pipeline's input (bicubic x3 of the LR)."""
    model = SRCNN().eval()
    hr = Image.fromarray(np.random.default_rng(3).integers(0, 255, (30, 27, 3), dtype=np.uint8))
    from datasets import make_pair
    lr_up, _ = make_pair(hr)
    small = hr.resize((9, 10), Image.BICUBIC)
    out = super_resolve(model, np.asarray(small), None, False, torch.device("cpu"))
    expected = main.apply_network(model, lr_up, torch.device("cpu"))
    np.testing.assert_array_equal(np.asarray(out), expected)
