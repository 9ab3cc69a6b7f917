"""torch.hub entry points (hubconf.py), loaded from the clone: the shipped networks, and an upscaler that gives
super_resolve.py's pixels for every kind of image it takes; a caller's own modules of the same names are kept."""
import ast
import os
import shutil
import subprocess
import sys

import numpy as np
import png
import pytest
import torch
from PIL import Image

import checkpoints
from conftest import ROOT, upscale_cli
from snippets import run_snippet

SHIPPED = {2: "checkpoints/srcnn_x2.pth", 3: "checkpoint.pth", 4: "checkpoints/srcnn_x4.pth"}


def hub(entry, **kwargs):
    return torch.hub.load(ROOT, entry, source="local", **kwargs)


@pytest.fixture(scope="module")
def upscale():
    return hub("upscaler", scale=3)


def read_png(path):
    """Every sample of a PNG file as (H, W, planes) uint8 or uint16, read by pypng: not the project's reader."""
    width, height, rows, meta = png.Reader(filename=str(path)).asDirect()
    dtype = np.uint16 if meta["bitdepth"] > 8 else np.uint8
    return np.vstack([np.asarray(r, dtype) for r in rows]).reshape(height, width, meta["planes"])


def write_png(path, samples):
    """(H, W, C) uint8 or uint16 samples (C = 1 grey, 2 grey and alpha, 3 RGB, 4 RGBA) as a PNG, with pypng."""
    h, w, c = samples.shape
    png.Writer(w, h, greyscale=c <= 2, alpha=c in (2, 4), bitdepth=8 * samples.itemsize).write(
        open(path, "wb"), samples.reshape(h, w * c))


def picture(h, w, channels, dtype, seed=0):
    """A smooth image with noise and, where it has alpha, a ramp of transparency: (H, W, C) of ``dtype``."""
    yy, xx = np.mgrid[0:h, 0:w]
    peak = np.iinfo(dtype).max
    planes = [np.sin(xx / 3 + c) * np.cos(yy / 4 - c) for c in range(3)][:1 if channels <= 2 else 3]
    planes = [(p + 1) / 2 * peak for p in planes]
    if channels in (2, 4):
        planes.append(xx / (w - 1) * peak)
    noise = np.random.default_rng(seed).normal(0, peak / 40, (h, w, len(planes)))
    return np.clip(np.stack(planes, -1) + noise, 0, peak).astype(dtype)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_srcnn_is_the_shipped_network_in_eval_mode(scale):
    net = hub("srcnn", scale=scale)
    saved = checkpoints.load(os.path.join(ROOT, SHIPPED[scale]))["state_dict"]
    assert not net.training and net.receptive_radius == 6
    assert net.state_dict().keys() == saved.keys()
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())


def test_a_scale_without_a_shipped_model_is_a_value_error():
    with pytest.raises(ValueError, match="scale must be 2, 3 or 4"):
        hub("srcnn", scale=5)


@pytest.mark.parametrize("channels, dtype", [(3, np.uint8), (4, np.uint8), (1, np.uint8), (2, np.uint8),
                                             (3, np.uint16), (4, np.uint16), (1, np.uint16), (2, np.uint16)])
def test_the_upscaler_gives_super_resolve_pys_pixels(upscale, tmp_path, channels, dtype):
    """Arrays of every kind, and the same images as Pillow images where Pillow holds them (8 bits, 16-bit grey),
    against the PNG that super_resolve.py writes with the shipped checkpoint: equal, sample for sample."""
    samples = picture(23, 31, channels, dtype)
    write_png(tmp_path / "in.png", samples)
    r = upscale_cli(os.path.join(ROOT, "checkpoint.pth"), tmp_path / "in.png", "--output", tmp_path / "out.png")
    assert r.returncode == 0, r.stderr
    written = read_png(tmp_path / "out.png")
    assert written.shape == (69, 93, channels)
    given = samples[..., 0] if channels == 1 else samples
    got = upscale(given)
    assert got.dtype == dtype and got.shape == given.shape[:0] + (69, 93) + given.shape[2:]
    assert np.array_equal(got.reshape(written.shape), written)
    if dtype == np.uint8 or channels == 1:
        image = Image.open(tmp_path / "in.png")
        out = upscale(image)
        assert out.mode == image.mode and out.size == (93, 69)
        assert np.array_equal(np.asarray(out).reshape(written.shape), written)


def test_palette_and_bilevel_pillow_images_come_back_as_super_resolve_py_writes_them(upscale, tmp_path):
    rgb = picture(20, 16, 3, np.uint8)
    palette = Image.fromarray(rgb).quantize(16)
    palette.info["transparency"] = 3
    bilevel = Image.fromarray(rgb[..., 0] > 128)
    for name, image in [("p.png", palette), ("1.png", bilevel)]:
        image.save(tmp_path / name)
        r = upscale_cli(os.path.join(ROOT, "checkpoint.pth"), tmp_path / name, "--output", tmp_path / f"sr_{name}")
        assert r.returncode == 0, r.stderr
        assert np.array_equal(np.asarray(upscale(Image.open(tmp_path / name))).reshape(60, 48, -1),
                              read_png(tmp_path / f"sr_{name}")), name


def test_bad_images_are_value_errors(upscale):
    for bad in [np.zeros((4, 4, 3), np.float32), np.zeros((4, 4, 5), np.uint8), np.zeros(4, np.uint8),
                Image.new("F", (4, 4)), Image.new("I", (4, 4))]:
        with pytest.raises(ValueError):
            upscale(bad)


def test_a_callers_own_modules_of_the_same_names_are_kept(tmp_path):
    """One imported before torch.hub.load (which would break ours) and one after (which would be ours)."""
    (tmp_path / "utils.py").write_text("WHOSE = 'caller'\n")
    (tmp_path / "model.py").write_text("WHOSE = 'caller'\n")
    script = (f"import numpy as np, torch\n"
              f"import utils\n"
              f"net = torch.hub.load({ROOT!r}, 'srcnn', scale=3, source='local')\n"
              f"up = torch.hub.load({ROOT!r}, 'upscaler', scale=3, source='local')\n"
              f"out = up(np.full((8, 8, 3), 100, np.uint8))\n"
              f"import model\n"
              f"print(utils.WHOSE, model.WHOSE, type(net).__name__, out.shape)\n")
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "caller caller SRCNN (24, 24, 3)"


def imports_on_load(path):
    """The top-level names of the modules that the Python file ``path`` imports as it loads (not in functions)."""
    with open(path) as f:
        todo, names = ast.parse(f.read()).body, set()
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.split(".")[0])
        elif isinstance(node, (ast.Try, ast.If, ast.With)):
            todo += node.body + getattr(node, "orelse", []) + getattr(node, "finalbody", [])
            todo += [n for handler in getattr(node, "handlers", []) for n in handler.body]
    return names


def test_dependencies_are_the_packages_the_entry_points_load():
    import hubconf
    seen, todo, packages = set(), list(hubconf._USED), set()
    while todo:
        name = todo.pop()
        seen.add(name)
        for imported in imports_on_load(os.path.join(ROOT, f"{name}.py")):
            if imported in hubconf._OURS:
                todo += [] if imported in seen else [imported]
            elif imported not in sys.stdlib_module_names:
                packages.add(imported)
    assert sorted(hubconf.dependencies) == sorted(packages)


def test_the_documented_hub_snippet(tmp_path):
    (tmp_path / "SRCNN").symlink_to(ROOT)
    shutil.copy(os.path.join(ROOT, "image_examples", "lr", "butterfly.bmp"), tmp_path / "lr.png")
    write_png(tmp_path / "logo.png", picture(15, 12, 4, np.uint8))
    done = run_snippet("hub", tmp_path)
    for name, got in [("lr.png", np.asarray(Image.open(tmp_path / "sr.png"))), ("logo.png", done["logo"])]:
        r = upscale_cli(os.path.join(ROOT, "checkpoint.pth"), tmp_path / name, "--output", tmp_path / "cli.png")
        assert r.returncode == 0, r.stderr
        assert np.array_equal(got, np.asarray(Image.open(tmp_path / "cli.png"))), name
        os.unlink(tmp_path / "cli.png")


def test_the_documented_python_api_snippets(tmp_path):
    os.symlink(os.path.join(ROOT, "checkpoint.pth"), tmp_path / "checkpoint.pth")
    shutil.copy(os.path.join(ROOT, "image_examples", "lr", "woman.bmp"), tmp_path / "lr.png")
    api, network = run_snippet("api", tmp_path), run_snippet("network", tmp_path)
    r = upscale_cli(os.path.join(ROOT, "checkpoint.pth"), tmp_path / "lr.png", "--output", tmp_path / "cli.png")
    assert r.returncode == 0, r.stderr
    written = np.asarray(Image.open(tmp_path / "cli.png"))
    assert np.array_equal(api["sr"], written) and np.array_equal(network["sr"], written)
    assert all(np.array_equal(f, written) for f in api["frames"]) and len(api["frames"]) == 2
