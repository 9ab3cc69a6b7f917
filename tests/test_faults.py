"""Faults and hostile input: interrupted runs, killed runs, diverging runs, and bad files of every
kind. Each bad input must end in one line on stderr, a non-zero exit and no output file."""
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

import main
from conftest import ROOT, cli, one_thread_env, train_cmd, wait_for
import checkpoints


def assert_clean_failure(r, needle):
    assert r.returncode != 0, r.stdout
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert needle in r.stderr, r.stderr


def test_ctrl_c_saves_says_how_to_resume_and_resuming_matches_an_uninterrupted_run(image_folder, tmp_path):
    recipe = ["--lr=0.002", "--schedule=cosine", "--augment", "--init=identity"]
    proc = subprocess.Popen(train_cmd(image_folder, tmp_path / "a", 40, *recipe), cwd=ROOT, env=one_thread_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(tmp_path / "a" / "checkpoint.last", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    path = tmp_path / "a" / "checkpoint.interrupted"
    assert f"python main.py resume {path}" in err
    assert 1 <= checkpoints.load(path)["epoch"] < 40
    r = subprocess.run([sys.executable, "main.py", "resume", path], cwd=ROOT, env=one_thread_env(),
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    straight = subprocess.run(train_cmd(image_folder, tmp_path / "b", 40, *recipe), cwd=ROOT, env=one_thread_env(),
                              capture_output=True, text=True)
    assert straight.returncode == 0, straight.stderr
    a = checkpoints.load(tmp_path / "a" / "checkpoint.last")
    b = checkpoints.load(tmp_path / "b" / "checkpoint.last")
    assert a["epoch"] == b["epoch"] == 40
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k


KILLED_IN_ITS_FIFTH_SAVE = """
import os, signal, sys
import torch
sys.path.insert(0, {root!r})
import main
saves, save = [], torch.save

def dying(obj, path, *args, **kwargs):  # the fifth checkpoint is half written when the process is killed
    saves.append(path)
    if len(saves) < 5:
        return save(obj, path, *args, **kwargs)
    with open(path, "wb") as f:
        f.write(b"PK\\x03\\x04" + bytes(2000))
        f.flush()
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = dying
main.main({argv!r})
"""


def test_a_run_killed_inside_a_checkpoint_write_leaves_only_whole_checkpoints_and_resumes(image_folder, tmp_path):
    """Every time, the kill lands inside the fifth write (epoch 2's): the files under checkpoint names all load,
    and the run continues from checkpoint.last."""
    argv = train_cmd(image_folder, tmp_path, 40, "--save-freq=1")[2:]
    r = subprocess.run([sys.executable, "-c", KILLED_IN_ITS_FIFTH_SAVE.format(root=ROOT, argv=argv)], cwd=ROOT,
                       capture_output=True, text=True, env=one_thread_env(), timeout=300)
    assert r.returncode == -signal.SIGKILL, r.stderr
    names = sorted(n for n in os.listdir(tmp_path) if n.startswith("checkpoint."))
    assert names[:3] == ["checkpoint.1", "checkpoint.best", "checkpoint.last"], names
    for n in names:  # every file under a final name is complete
        checkpoints.load(tmp_path / n)
    assert any(n.startswith(".checkpoint.") and n.endswith(".tmp") for n in os.listdir(tmp_path))  # the half one
    last = checkpoints.load(tmp_path / "checkpoint.last")["epoch"]
    r = cli("main.py", "resume", tmp_path / "checkpoint.last", f"--num-epoch={last + 2}")
    assert r.returncode == 0, r.stderr
    assert checkpoints.load(tmp_path / "checkpoint.last")["epoch"] == last + 2


def test_a_diverging_run_stops_clearly_and_keeps_the_last_good_checkpoint(tiny_run, capsys):
    run = tiny_run("train", "--num-epoch=1")
    good = checkpoints.load(run / "checkpoint.last")
    with pytest.raises(SystemExit) as e:
        main.main(["resume", str(run / "checkpoint.last"), "--num-epoch=5", "--lr=1e9"])
    assert "the loss became" in str(e.value.code) and "checkpoint.last" in str(e.value.code)
    kept = checkpoints.load(run / "checkpoint.last")
    assert kept["epoch"] == 1 and torch.equal(kept["state_dict"]["reconstruction.bias"],
                                              good["state_dict"]["reconstruction.bias"])


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("m")
    images = folder / "img"
    images.mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(images / "a.png")
    r = cli("main.py", "train", "--train-data", images, "--test-data", images, "--batch-size=1",
            "--num-epoch=1", "--out-dir", folder / "run")
    assert r.returncode == 0, r.stderr
    return folder / "run" / "checkpoint.last"


def bad_checkpoints(folder):
    """(path, what the message must say) for every kind of broken checkpoint."""
    (folder / "empty.pth").write_bytes(b"")
    (folder / "random.pth").write_bytes(b"\0" + os.urandom(5000))
    Image.new("RGB", (8, 8)).save(folder / "photo.png")
    (folder / "a folder").mkdir()
    torch.save({"conv.weight": torch.zeros(3)}, folder / "state_dict.pth")
    return [(folder / "missing.pth", "not found"), (folder / "empty.pth", "the file is empty"),
            (folder / "random.pth", "not a PyTorch file"), (folder / "photo.png", "not a PyTorch file"),
            (folder / "a folder", "is a folder"), (folder / "state_dict.pth", "not an SRCNN checkpoint")]


def test_broken_checkpoints_fail_cleanly_everywhere(model_file, tmp_path):
    cases = bad_checkpoints(tmp_path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(model_file.read_bytes()[:3000])
    cases.append((truncated, "a damaged or truncated PyTorch file"))
    image = tmp_path / "in.png"
    Image.new("RGB", (8, 8)).save(image)
    for path, needle in cases:
        for argv in (["main.py", "inspect", path], ["main.py", "resume", path], ["main.py", "evaluate", path],
                     ["super_resolve.py", "--checkpoint", path, image]):
            assert_clean_failure(cli(*argv), needle)
    assert not (tmp_path / "in_srcnn_x3.png").exists()


def test_bad_images_and_output_paths_fail_cleanly_and_write_nothing(model_file, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:400])
    for path, needle in [(tmp_path / "missing.png", "not found"), (text, "cannot read image"),
                         (empty, "cannot read image"), (truncated, "cannot read image")]:
        assert_clean_failure(cli("super_resolve.py", "--checkpoint", model_file, path), needle)
    assert_clean_failure(cli("super_resolve.py", "--checkpoint", model_file, good,
                             "--output", tmp_path / "nowhere" / "x.png"), "folder does not exist")
    assert_clean_failure(cli("super_resolve.py", "--checkpoint", model_file, good,
                             "--output", tmp_path / "x.unknownext"), "image format")
    produced = {p.name for p in tmp_path.iterdir()} - {"notes.png", "empty.png", "good.png", "truncated.png"}
    assert produced == set(), produced


def test_unwritable_output_folder_fails_cleanly(model_file, tmp_path, locked_folder):
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good)
    assert_clean_failure(cli("super_resolve.py", "--checkpoint", model_file, good,
                             "--output", locked_folder / "x.png"), "not writable")
    assert os.listdir(locked_folder) == []


def test_bad_training_data_fails_cleanly(image_folder, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    corrupt = tmp_path / "corrupt.h5"
    corrupt.write_bytes(os.urandom(3000))
    shaped = tmp_path / "shaped.h5"
    with h5py.File(shaped, "w") as f:
        f.attrs["kind"] = "train"
        f["lr"] = np.zeros((10, 33, 33, 3), np.uint8)
        f["hr"] = np.zeros((10, 31, 31, 3), np.uint8)
    for data, needle in [(empty, "no images"), (corrupt, "cannot read HDF5"), (shaped, "expected uint8 lr/hr"),
                         (tmp_path / "absent.h5", "not found")]:
        r = cli("main.py", "train", "--train-data", data, "--test-data", image_folder, "--num-epoch=1",
                "--out-dir", tmp_path / "run")
        assert_clean_failure(r, needle)
        assert not (tmp_path / "run").exists()
