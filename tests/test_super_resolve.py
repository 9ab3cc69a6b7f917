"""Inference: exact tiling, the image edge, self-ensemble, output naming, many inputs, and every kind of
input image."""

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, cli, upscale_cli
from model import SRCNN
from inference import (PRECISIONS, ReducedPrecisionSRCNN, Upscaler, apply_network, apply_network_float, bicubic_upscale,
                       bicubic_upscale_torch, pad_edges, prepare, round_preserving_sums, symmetry)
from images import Picture, read_picture
from super_resolve import super_resolve


def test_tiles_reproduce_the_whole_image_pass_single_and_self_ensemble():
    torch.manual_seed(1)
    model = SRCNN().eval()
    img = np.random.default_rng(0).integers(0, 256, (150, 123, 3), dtype=np.uint8)
    for ensemble in (False, True):
        whole = apply_network_float(model, img, tile=None, self_ensemble=ensemble)
        for tile in (5, 37, 64):
            tiled = apply_network_float(model, img, tile=tile, self_ensemble=ensemble)
            assert (tiled - whole).abs().max() < 1e-5, (tile, ensemble)


def test_the_edge_is_the_network_on_the_mirrored_image_not_on_zeros():
    """The output equals the network run on the image mirrored by 6 pixels (its receptive radius),
    then cropped: no output pixel sees the convolutions' zero padding."""
    torch.manual_seed(2)
    model = SRCNN().eval()
    img = np.random.default_rng(1).integers(0, 256, (40, 31, 3), dtype=np.uint8)
    out = apply_network_float(model, img, tile=None)
    mirrored = torch.from_numpy(np.ascontiguousarray(img[:, :, :])).permute(2, 0, 1)[None].float() / 255
    mirrored = torch.nn.functional.pad(mirrored, (6, 6, 6, 6), mode="reflect")
    with torch.no_grad():
        expected = model(mirrored)[..., 6:-6, 6:-6]
    assert (out - expected).abs().max() < 1e-5
    zero_padded = model(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255).detach()
    assert (out[..., 0, :] - zero_padded[..., 0, :]).abs().max() > 1e-3  # the edge differs from zero padding
    assert pad_edges(img[:3, :3], 6).shape == (15, 15, 3)  # too small to mirror: edge pixels repeat


def test_symmetries_are_undone_by_their_inverses_and_are_eight_distinct():
    x = torch.arange(12.0).reshape(1, 1, 3, 4)
    seen = set()
    for op in range(8):
        y = symmetry(x, op)
        assert torch.equal(symmetry(y, op, inverse=True), x)
        seen.add(tuple(y.flatten().tolist()) + tuple(y.shape))
    assert len(seen) == 8


def test_self_ensemble_of_a_symmetric_network_is_the_single_pass():
    """A network whose kernels are symmetric under the 8 symmetries gives the same output either way."""
    model = SRCNN().eval()
    with torch.no_grad():
        for conv in model.convs:
            w = conv.weight
            w.copy_(sum(symmetry(w, op) for op in range(8)) / 8)
    img = np.random.default_rng(2).integers(0, 256, (20, 26, 3), dtype=np.uint8)
    single = apply_network_float(model, img)
    ensemble = apply_network_float(model, img, self_ensemble=True)
    assert (single - ensemble).abs().max() < 1e-5


def test_writes_stem_srcnn_x3_png_beside_the_input(checkpoint, tmp_path):
    src = tmp_path / "lr.bmp"
    Image.fromarray(np.full((10, 12, 3), 90, np.uint8)).save(src)
    r = upscale_cli(checkpoint, src)
    out = tmp_path / "lr_srcnn_x3.png"
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"wrote {out}"
    assert Image.open(out).size == (36, 30)
    r = upscale_cli(checkpoint, src, "--output", tmp_path / "x.png")
    assert r.returncode == 0 and Image.open(tmp_path / "x.png").size == (36, 30)


def _sr(checkpoint, img, tmp_path, name="in.png", **save):
    path = tmp_path / name
    img.save(path, **save)
    out = tmp_path / f"out-{name}.png"
    r = upscale_cli(checkpoint, path, "--output", out)
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
    assert out.mode.startswith("I;16") and out.size == (24, 24) and np.asarray(out).max() > 60000
    assert _sr(checkpoint, Image.new("RGB", (1, 1), (200, 10, 10)), tmp_path, "one.png").size == (3, 3)
    jpg = Image.fromarray(np.random.default_rng(1).integers(0, 255, (16, 20, 3), dtype=np.uint8))
    assert _sr(checkpoint, jpg, tmp_path, "j.jpg", quality=90).size == (60, 48)


def test_exif_rotation_is_applied(checkpoint, tmp_path):
    img = Image.new("RGB", (20, 10), (50, 100, 150))
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": the picture shown is 10 wide, 20 high
    out = _sr(checkpoint, img, tmp_path, "rot.jpg", exif=exif)
    assert out.size == (30, 60)


def test_read_picture_reports_what_it_decoded(tmp_path):
    Image.new("L", (4, 5), 7).save(tmp_path / "g.png")
    picture = read_picture(str(tmp_path / "g.png"))
    assert picture.frames[0].shape == (5, 4, 3) and picture.alphas == [None] and picture.gray
    assert picture.bits == 8 and not picture.animated


def test_super_resolve_output_matches_evaluate_pipeline():
    """super_resolve on the LR image reproduces the evaluate pipeline's input (bicubic x3 of the LR)."""
    model = SRCNN().eval()
    hr = Image.fromarray(np.random.default_rng(3).integers(0, 255, (30, 27, 3), dtype=np.uint8))
    from datasets import make_pair
    lr_up, _ = make_pair(hr)
    small = hr.resize((9, 10), Image.BICUBIC)
    out = super_resolve(Upscaler(model, 3), Picture([np.asarray(small)], [None]))
    expected = apply_network(model, lr_up)
    np.testing.assert_array_equal(out.frames[0], expected)


def test_many_files_and_folders_in_one_run_with_a_bad_file_skipped(checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.bmp"):
        Image.fromarray(np.full((6, 7, 3), 100, np.uint8)).save(folder / name)
    (folder / "broken.png").write_bytes(b"not an image")
    Image.fromarray(np.full((6, 7, 3), 50, np.uint8)).save(folder / "a_srcnn_x3.png")  # an earlier output
    single = tmp_path / "c.png"
    Image.fromarray(np.full((5, 5, 3), 10, np.uint8)).save(single)
    r = upscale_cli(checkpoint, folder, single, "--output-dir", tmp_path / "out")
    assert r.returncode == 1
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a_srcnn_x3.png", "b_srcnn_x3.png",
                                                                    "c_srcnn_x3.png"]
    assert Image.open(tmp_path / "out" / "b_srcnn_x3.png").size == (21, 18)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and "broken.png" in errors[0] and errors[1] == "error: 1 of 4 images failed"
    assert "Traceback" not in r.stderr
    r = upscale_cli(checkpoint, folder / "a.png", single, "--output", tmp_path / "x.png")
    assert r.returncode != 0 and "--output names one file" in r.stderr and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_torch_bicubic_gives_pillows_pixels(scale):
    """The GPU pipeline's bicubic (run here on the CPU) against Pillow's, on noise, on a black and white
    checkerboard (the largest overshoots, clipped) and on tiny images."""
    rng = np.random.default_rng(scale)
    checkers = np.indices((23, 29)).sum(0)[..., None] % 2 * np.array([255, 0, 255], np.uint8)
    for img in [rng.integers(0, 256, (37, 51, 3), dtype=np.uint8), checkers.astype(np.uint8),
                rng.integers(0, 256, (2, 3, 3), dtype=np.uint8), rng.integers(0, 256, (1, 1, 3), dtype=np.uint8)]:
        ours = bicubic_upscale_torch(torch.from_numpy(img), scale).numpy().astype(int)
        pillow = bicubic_upscale(img, scale).astype(int)
        np.testing.assert_array_equal(ours, pillow)


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_reduced_precision_stays_close_to_fp32_and_leaves_the_model_alone(precision):
    torch.manual_seed(3)
    model = SRCNN().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    img = np.random.default_rng(4).integers(0, 256, (45, 38, 3), dtype=np.uint8)
    exact = apply_network_float(model, img)
    for reduced in (prepare(model, torch.device("cpu"), precision),  # bf16 on a CPU: Bf16FirstLayerSRCNN
                    ReducedPrecisionSRCNN(model, PRECISIONS[precision]).eval()):  # the GPU's, here on the CPU
        first = reduced.convs[0].weight
        assert torch.equal(first, first.to(PRECISIONS[precision]).to(first.dtype))  # exact in the format
        diff = (apply_network_float(reduced, img) - exact).abs()
        assert diff.max() < 0.02 and diff.mean() < 0.002, (type(reduced), diff.max(), diff.mean())
    if precision == "bf16":  # with bfloat16 instructions or not (oneDNN's float32 kernels): the same products
        cpu, modes = prepare(model, torch.device("cpu"), precision), []
        for bf16_math in (True, False):
            cpu.bf16_math = bf16_math
            modes.append(apply_network_float(cpu, img))
        assert (modes[0] - modes[1]).abs().max() < 1e-5
    assert ReducedPrecisionSRCNN(model, PRECISIONS[precision]).offset.dtype == torch.float32
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # a copy was converted


def test_rounding_that_preserves_sums_keeps_each_kernels_flat_response():
    torch.manual_seed(5)
    w = torch.randn(16, 3, 9, 9) / 40
    for dtype in (torch.bfloat16, torch.float16):
        r = round_preserving_sums(w, dtype)
        assert torch.equal(r, r.to(dtype).float())  # every weight exact in the format
        plain = w.to(dtype).float()
        err, plain_err = ((x.double().sum((2, 3)) - w.double().sum((2, 3))).abs() for x in (r, plain))
        assert err.max() < plain_err.max() / 10, (dtype, err.max(), plain_err.max())
        steps = ((r - plain).abs() > 0).sum((2, 3))
        assert (r - plain).abs().max() <= (torch.nextafter(plain.abs().to(dtype), torch.tensor(1.0, dtype=dtype))
                                          .float() - plain.abs()).max()  # each weight moved by one step at most
        assert steps.max() <= 81


def test_image_examples_are_the_pipelines_own_images():
    """image_examples/: each LR .bmp is its HR image bicubic-downscaled x3, and its bicubic image is the
    pipeline's bicubic (Pillow's, and the GPU pipeline's torch version) of that LR image."""
    import os
    folder = os.path.join(ROOT, "image_examples")
    stems = sorted(f[:-4] for f in os.listdir(os.path.join(folder, "lr")) if f.endswith(".bmp"))
    assert stems == ["baby", "bird", "butterfly", "head", "woman"]  # outputs a user wrote beside them aside
    for stem in stems:
        lr = np.array(Image.open(os.path.join(folder, "lr", f"{stem}.bmp")))
        hr = Image.open(os.path.join(folder, "hr", f"{stem}.png"))
        bic = np.asarray(Image.open(os.path.join(folder, "bicubic", f"{stem}.png")))
        np.testing.assert_array_equal(lr, np.asarray(hr.resize((hr.width // 3, hr.height // 3), Image.BICUBIC)))
        np.testing.assert_array_equal(bic, bicubic_upscale(lr, 3))
        np.testing.assert_array_equal(bic, bicubic_upscale_torch(torch.from_numpy(lr), 3).numpy())


def test_torch_bicubic_of_16_bit_samples_is_pillows_within_one_of_65535():
    """16-bit frames (10-bit video on the device path) go through bicubic_upscale_torch as int32 tensors."""
    rng = np.random.default_rng(6)
    for scale in (2, 3, 4):
        img = (rng.integers(0, 1024, (17, 23, 3)) * 64).astype(np.uint16)
        img[5:9, 4:12] = (65535, 0, 65280)  # hard edges at the extremes: Pillow's ringing is clipped
        ours = bicubic_upscale_torch(torch.from_numpy(img.astype(np.int32)), scale)
        assert ours.dtype == torch.int32
        diff = np.abs(ours.numpy().astype(int) - bicubic_upscale(img, scale).astype(int))
        assert diff.max() <= 1 and np.mean(diff == 0) > 0.99
