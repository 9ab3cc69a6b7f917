"""Checkpoints as data: they round-trip, a failed or killed save keeps the old file, a file that would run code
is refused and never runs, other formats are refused in words, and a run's folder is read back as a run."""
import os
import pickle

import pytest
import torch

import checkpoints
from utils import UserError


def _ckpt():
    return {"format_version": 1, "model_name": "SRCNN", "model_kwargs": {}, "state_dict": {"w": torch.arange(4.0)},
            "epoch": 3, "args": {"lr": 0.1}, "info": {"name": "x", "student_id": "", "email": ""}}


@pytest.mark.parametrize("name", ["c.pth", "model", ".hidden"])
def test_checkpoint_round_trips(tmp_path, name):
    path = tmp_path / name
    checkpoints.save(_ckpt(), path)
    back = checkpoints.load(path)
    assert back["epoch"] == 3 and back["args"] == {"lr": 0.1}
    assert torch.equal(back["state_dict"]["w"], torch.arange(4.0))
    assert os.listdir(tmp_path) == [name]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # shareable, not mkstemp's private 0600


def test_failed_save_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "c.pth"
    checkpoints.save(_ckpt(), path)
    with pytest.raises(Exception):
        checkpoints.save({"bad": lambda: 0}, path)  # a lambda cannot be pickled
    assert checkpoints.load(path)["epoch"] == 3
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
            checkpoints.load(p)
    assert not marker.exists()


@pytest.mark.parametrize("change, message", [
    ({"format_version": 99}, "format version 99, expected 1"),
    ({"model_name": "ESPCN"}, "expected 'SRCNN'"),
])
def test_other_formats_and_models_are_refused_saying_what_was_expected(tmp_path, change, message):
    path = tmp_path / "c.pth"
    checkpoints.save({**_ckpt(), **change}, path)
    with pytest.raises(UserError, match=message):
        checkpoints.load(path)


DIE_INSIDE_THE_WRITE = """
import os, signal, sys
import torch
sys.path.insert(0, {root!r})
import checkpoints

def dying(obj, path, *args, **kwargs):  # writes part of a checkpoint, then the process is killed
    with open(path, "wb") as f:
        f.write(b"PK\\x03\\x04" + bytes(1000))
        f.flush()
        os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)

torch.save = dying
checkpoints.save({{"epoch": 2}}, {path!r})
"""


def test_a_process_killed_inside_the_write_leaves_the_old_checkpoint_whole(tmp_path):
    """The child dies with half of the new file written, every time: the old checkpoint stays under its name,
    whole; the half-written one is a hidden temporary file, which no run mistakes for a checkpoint."""
    import subprocess
    import sys
    from conftest import ROOT
    path = tmp_path / "checkpoint.last"
    checkpoints.save(_ckpt(), path)
    before = path.read_bytes()
    r = subprocess.run([sys.executable, "-c", DIE_INSIDE_THE_WRITE.format(root=ROOT, path=str(path))],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == -9, r.stderr
    assert path.read_bytes() == before and checkpoints.load(path)["epoch"] == 3
    left = [p.name for p in tmp_path.iterdir() if p.name != "checkpoint.last"]
    assert len(left) == 1 and left[0].startswith(".checkpoint.last-") and left[0].endswith(".tmp"), left
    assert checkpoints.run_files(tmp_path) == ["checkpoint.last"]
    assert checkpoints.newest(tmp_path)[1]["epoch"] == 3


def _at(epoch, batch=0):
    return {**_ckpt(), "epoch": epoch, "batch": batch}


def test_newest_is_the_furthest_of_last_and_interrupted_and_further_than_names_what_would_be_overwritten(tmp_path):
    assert checkpoints.newest(tmp_path) is None and checkpoints.run_files(tmp_path / "absent") == []
    checkpoints.save(_at(4), tmp_path / checkpoints.LAST)
    checkpoints.save(_at(4, 7), tmp_path / checkpoints.INTERRUPTED)  # stopped 7 batches into epoch 5
    checkpoints.save(_at(2), tmp_path / checkpoints.periodic_name(2))
    checkpoints.save(_at(9), tmp_path / checkpoints.BEST)  # not where a run continues from
    (tmp_path / "checkpoint.notes").write_text("not a checkpoint")
    path, ckpt = checkpoints.newest(tmp_path)
    assert path == str(tmp_path / checkpoints.INTERRUPTED) and checkpoints.position(ckpt) == (4, 7)
    assert sorted(checkpoints.further_than(tmp_path, _at(2))) == ["checkpoint.best", "checkpoint.interrupted",
                                                                  "checkpoint.last"]
    assert checkpoints.further_than(tmp_path, _at(9)) == []


def test_saved_arguments_merge_under_the_flags_given_and_over_the_defaults():
    merged = checkpoints.merged_args({"lr": 1e-4, "loss": "rgb", "seed": 0}, {"lr": 0.01, "seed": 5},
                                     {"lr": 0.5, "seed": None})
    assert merged == {"lr": 0.5, "loss": "rgb", "seed": 5}  # given > saved > default; None is "not given"


def test_a_checkpoint_whose_weights_do_not_fit_its_network_is_refused_in_words(tmp_path):
    from model import SRCNN
    model = SRCNN(n1=8, n2=4)
    ckpt = {**_ckpt(), "model_kwargs": model.init_kwargs, "state_dict": model.state_dict()}
    checkpoints.save(ckpt, tmp_path / "small.pth")
    back, _ = checkpoints.load_model(tmp_path / "small.pth")
    assert back.init_kwargs == model.init_kwargs  # rebuilt from its constructor arguments alone
    checkpoints.save({**ckpt, "model_kwargs": SRCNN().init_kwargs}, tmp_path / "wrong.pth")
    with pytest.raises(UserError, match="weights do not fit the SRCNN it describes"):
        checkpoints.load_model(tmp_path / "wrong.pth")
