"""main.py export: the ONNX file against the engine (within 1 level, on real images and at every size), the
refusal of a file that disagrees or holds another opset, one line for bad input, and the documented snippet."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

for _name in ("onnx", "onnxruntime", "onnxscript"):
    pytest.importorskip(_name, reason=f"{_name} is not installed (main.py export needs it: pip install -r "
                                      f"requirements.txt)")
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402

import checkpoints  # noqa: E402
import export  # noqa: E402
from conftest import ROOT, cli, real_data, upscale_cli  # noqa: E402
from datasets import make_pair  # noqa: E402
from evaluation import colour_card  # noqa: E402
from inference import apply_network, pad_edges, prepare  # noqa: E402
from snippets import run_snippet  # noqa: E402

CHECKPOINT = os.path.join(ROOT, "checkpoint.pth")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(the x3 fp32 file written by `main.py export checkpoint.pth`, the call's result)."""
    path = tmp_path_factory.mktemp("onnx") / "srcnn_x3.onnx"
    return path, cli("main.py", "export", CHECKPOINT, path)


@pytest.fixture(scope="module")
def engine():
    return prepare(checkpoints.load_model(CHECKPOINT)[0], torch.device("cpu"))


def run(path, batch):
    """The file run as docs/python.md runs it: (N, H, W, 3) uint8 -> float32 in [0, 1], rounded back with no
    clip (the graph clamps); (N, H, W, 3) int64, and the raw output's (min, max)."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    y = session.run(None, {"input": np.ascontiguousarray(batch.transpose(0, 3, 1, 2), np.float32) / 255})[0]
    return np.rint(y * 255).astype(np.int64).transpose(0, 2, 3, 1), (y.min(), y.max())


def largest_difference(path, engine, batch):
    got, (low, high) = run(path, batch)
    assert got.shape == batch.shape and 0 <= low and high <= 1
    return max(int(np.abs(g - apply_network(engine, image).astype(np.int64)).max()) for g, image in zip(got, batch))


def one_error_line(r):
    assert r.returncode == 1 and r.stdout == "" and "Traceback" not in r.stderr, r
    assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.stderr
    return r.stderr


def test_export_checks_the_file_and_says_how_it_agrees(exported):
    path, r = exported
    assert r.returncode == 0, r.stderr
    checked, wrote = r.stdout.splitlines()
    assert checked.startswith("checked with onnxruntime against PyTorch on the colour card (144x432) and 2 crops "
                              "of 5x7: largest difference ") and "% of pixels within 1 level" in checked
    assert int(checked.split("largest difference ")[1].split()[0]) <= export.TOLERANCE
    opset = export.file_opset(path)
    assert wrote.startswith(f"wrote {path} (x3, fp32, opset {opset}, ")
    assert os.listdir(path.parent) == [path.name]  # one file: no weights beside it, no temporary left
    model = onnx.load(path)
    assert {p.key: p.value for p in model.metadata_props}["scale"] == "3"
    dims = [[d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in (*model.graph.input,
                                                                                         *model.graph.output)]
    assert dims == [["N", 3, "H", "W"]] * 2


def test_the_file_is_within_one_level_on_set5_and_the_card_at_two_sizes(exported, engine):
    for name in sorted(os.listdir(real_data("Set5"))):
        lr = make_pair(Image.open(os.path.join(real_data("Set5"), name)).convert("RGB"), 3)[0]
        assert largest_difference(exported[0], engine, lr[None]) <= 1, name
    card = make_pair(Image.fromarray(colour_card()[0]), 3)[0]
    assert largest_difference(exported[0], engine, card[None]) <= 1
    crop = card[11:108, 250:381]  # 97 x 131, odd, through the text panel's edge
    assert largest_difference(exported[0], engine, np.stack([crop, crop[::-1, ::-1]])) <= 1


def test_odd_and_tiny_sizes_and_batches(exported, engine):
    """Sides of 1 to 6 pixels repeat their edge pixels, longer ones are mirrored, chosen per axis in the graph."""
    rng = np.random.default_rng(0)
    for h, w in [(1, 1), (1, 9), (2, 3), (5, 7), (6, 6), (7, 7), (13, 9), (6, 40), (40, 6)]:
        for n in (1, 2):
            batch = rng.integers(0, 256, (n, h, w, 3), dtype=np.uint8)
            assert largest_difference(exported[0], engine, batch) <= 1, (n, h, w)


def test_the_graphs_mirror_is_pad_edges_for_every_size():
    for radius in (1, 6, 7):
        for h in range(1, 21):
            image = torch.arange(h * (h + 3) * 2, dtype=torch.float32).reshape(1, 2, h, h + 3)
            expected = pad_edges(image.permute(0, 2, 3, 1), radius).permute(0, 3, 1, 2)
            assert torch.equal(export.mirror_edges(image, radius), expected), (radius, h)


def test_fp16_file_in_the_opset_asked_is_within_one_level(tmp_path, engine):
    path = tmp_path / "fp16.onnx"
    r = cli("main.py", "export", CHECKPOINT, path, "--fp16", "--opset", "18")
    assert r.returncode == 0, r.stderr
    assert export.file_opset(path) == 18 and "(x3, fp16, opset 18, " in r.stdout
    model = onnx.load(path)
    assert {v.type.tensor_type.elem_type for v in (*model.graph.input, *model.graph.output)} == {onnx.TensorProto.FLOAT}
    assert onnx.TensorProto.FLOAT16 in {t.data_type for t in model.graph.initializer}
    set5 = [make_pair(Image.open(os.path.join(real_data("Set5"), name)).convert("RGB"), 3)[0]
            for name in sorted(os.listdir(real_data("Set5")))]
    card = make_pair(Image.fromarray(colour_card()[0]), 3)[0]
    for batch in [image[None] for image in set5] + [card[None], card[None, 40:45, 10:17]]:
        assert largest_difference(path, engine, batch) <= export.TOLERANCE


def test_a_file_that_disagrees_with_pytorch_is_not_kept(tmp_path, monkeypatch):
    """The graph's mirror planted as zero padding: the check sees the edge differ, and the file being replaced
    is left as it was, with nothing beside it."""
    monkeypatch.setattr(export, "mirror_edges", lambda x, r: torch.nn.functional.pad(x, (r, r, r, r)))
    out = tmp_path / "srcnn.onnx"
    out.write_text("the user's file")
    error = one_error_line(cli("main.py", "export", CHECKPOINT, out, "--overwrite"))
    assert error.startswith("error: the exported file differs from PyTorch by up to ")
    assert "nothing was written" in error
    assert out.read_text() == "the user's file" and os.listdir(tmp_path) == ["srcnn.onnx"]


def test_a_file_in_another_opset_than_asked_is_not_kept(tmp_path, monkeypatch, exported):
    """As the exporter does for opsets below 15: it writes opset 18 whatever was asked, and says nothing."""
    monkeypatch.setattr(export, "write_onnx", lambda module, path, opset, metadata: shutil.copy(exported[0], path))
    asked = 19 if export.file_opset(exported[0]) != 19 else 18
    error = one_error_line(cli("main.py", "export", CHECKPOINT, tmp_path / "x.onnx", "--opset", asked))
    assert error == f"error: the exporter wrote opset {export.file_opset(exported[0])} when asked for {asked}; " \
                    f"nothing was written\n"
    assert os.listdir(tmp_path) == []


def test_bad_input_is_one_line_and_leaves_nothing(tmp_path):
    existing = tmp_path / "mine.onnx"
    existing.write_text("mine")
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    for argv, says in [
        (["absent.pth", tmp_path / "a.onnx"], "error: checkpoint not found: absent.pth"),
        ([tmp_path / "notes.txt", tmp_path / "a.onnx"], "not a PyTorch file"),
        ([CHECKPOINT, existing], f"error: {existing} exists already; nothing was written. Pass --overwrite"),
        ([CHECKPOINT, tmp_path], "is a folder"),
        ([CHECKPOINT, tmp_path / "nowhere" / "a.onnx"], "error: output folder does not exist"),
        ([CHECKPOINT, tmp_path / "a.onnx", "--opset", "9"], "error: --opset 9 is not supported: this exporter "
                                                            "writes opsets 15 to"),
        ([CHECKPOINT, tmp_path / "a.onnx", "--opset", "99"], "error: --opset 99 is not supported"),
    ]:
        assert says in one_error_line(cli("main.py", "export", *argv)), argv
    existing.chmod(0o444)
    assert "read-only; not replaced" in one_error_line(cli("main.py", "export", CHECKPOINT, existing, "--overwrite"))
    assert sorted(os.listdir(tmp_path)) == ["mine.onnx", "notes.txt"] and existing.read_text() == "mine"


def test_an_unwritable_folder_is_one_line(locked_folder):
    assert "not writable" in one_error_line(cli("main.py", "export", CHECKPOINT, locked_folder / "a.onnx"))
    assert os.listdir(locked_folder) == []


def test_without_onnxruntime_export_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    error = one_error_line(cli("main.py", "export", CHECKPOINT, tmp_path / "a.onnx"))
    assert error == ("error: main.py export needs onnx, onnxruntime, onnxscript (onnxruntime is missing): "
                     "pip install -r requirements.txt\n")
    assert os.listdir(tmp_path) == []


def test_the_documented_onnxruntime_snippet_gives_super_resolve_pys_result(exported, tmp_path):
    shutil.copy(exported[0], tmp_path / "srcnn_x3.onnx")
    Image.open(os.path.join(ROOT, "image_examples", "lr", "butterfly.bmp")).save(tmp_path / "lr.png")
    run_snippet("onnx", tmp_path)
    assert upscale_cli(CHECKPOINT, tmp_path / "lr.png", "--output", tmp_path / "cli.png").returncode == 0
    got, expected = (np.asarray(Image.open(tmp_path / n)).astype(int) for n in ("sr.png", "cli.png"))
    assert got.shape == expected.shape == (255, 255, 3) and np.abs(got - expected).max() <= 1


def test_the_benchmark_runs_each_configuration(exported):
    r = subprocess.run([sys.executable, "benchmarks/onnx_speed.py", "--onnx", str(exported[0]), "--size", "120x90",
                        "--repeat", "1", "--tile", "16"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("CPU: ") and "load average" in lines[1]
    assert [l.split(":")[0] for l in lines[2:5]] == ["engine, tiles 256", "onnxruntime, whole image",
                                                     "onnxruntime, tiles 16"]
    assert all("MP/s" in l and "peak RSS" in l and "difference from the engine: " in l for l in lines[2:5])


def test_the_agreement_script_reports_each_image_and_all(exported, image_folder):
    r = subprocess.run([sys.executable, "benchmarks/onnx_agreement.py", str(exported[0]), CHECKPOINT, "--data",
                        image_folder], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert [l.split(":")[0] for l in lines[:3]] == ["img0.png", "img1.png", "img2.png"]
    assert lines[3].startswith("all 3 images (x3, ") and "largest " in lines[3] and "within 1 level" in lines[3]
