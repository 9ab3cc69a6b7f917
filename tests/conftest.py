"""Shared fixtures. Real-image tests read the repository's data/ (T91/ and Set5/ are committed);
SRCNN_DATA, a folder holding image sets, overrides it. The benchmark sets that are not shipped
(Set14/, BSD100/) are looked for there too and in ../shared/data; tests that need them skip saying so."""
import importlib
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# OpenMP's idle worker threads spin while they wait for work. Beside other busy processes that spinning takes
# the time slices the working threads need: on 2 cores beside two CPU-bound processes the tiling test took
# 15.5 s, 6.3 s with passive waiting; on an idle machine passive waiting costs about a tenth (81.7 s -> 91.0 s
# for test_super_resolve, test_preemption and test_shipped_model). Set before torch is loaded; the tools the
# tests start inherit it. Results do not depend on it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, ROOT)


def cli(script, *argv, cwd=ROOT):
    """Run a command-line tool as `python SCRIPT ARGV...` would, but inside this process (starting Python and
    torch again would cost a second or more a call): its stdout and stderr, the file descriptors too, are
    captured, an uncaught exception is printed as a traceback with exit status 1, as Python does, and the
    working folder and signal handlers are put back afterwards. Signals, Ctrl-C and torchrun still need a real
    process (subprocess); tests/test_cli.py runs the real entry points too."""
    argv = [str(a) for a in argv]
    tool = importlib.import_module(os.path.splitext(script)[0])
    saved = (os.getcwd(), sys.argv, sys.stdout, sys.stderr, os.dup(1), os.dup(2),
             {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)})
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out.fileno(), 1)  # the same open file as `out`: Python's and C's writes land in order
        os.dup2(err.fileno(), 2)
        sys.stdout, sys.stderr, sys.argv = out, err, [script, *argv]
        try:
            os.chdir(cwd)
            tool.main(argv)
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            if not isinstance(e.code, (int, type(None))):
                print(e.code, file=err)
        except Exception:
            traceback.print_exc(file=err)
            code = 1
        finally:
            out.flush()
            err.flush()
            here, sys.argv, sys.stdout, sys.stderr, fd1, fd2, handlers = saved
            os.dup2(fd1, 1)
            os.dup2(fd2, 2)
            os.close(fd1)
            os.close(fd2)
            os.chdir(here)
            for s, handler in handlers.items():
                signal.signal(s, handler)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess([script, *argv], code, out.read(), err.read())


def one_thread_env():
    """The environment for a training process whose weights a test compares bitwise with another process's.
    The bits of a run depend on its number of threads (a 12-epoch run of the tiny test set on 1 thread and on
    2 ends with different weights), so the processes compared get one each, whatever the machine's count;
    on one thread no sum is split among threads. torchrun gives its workers one thread too."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def real_data(subset):
    """Path of a real image set, or skip the test saying what is missing and where to get it."""
    bases = [os.environ.get("SRCNN_DATA"), os.path.join(ROOT, "data"), os.path.join(ROOT, "..", "shared", "data")]
    for base in filter(None, bases):
        if os.path.isdir(os.path.join(base, subset)):
            return os.path.join(base, subset)
    pytest.skip(f"real data missing: no {subset}/ in data/, $SRCNN_DATA or ../shared/data "
                f"(data/README.md says where to get it)")


@pytest.fixture
def image_folder(tmp_path):
    """Three small smooth-ish RGB images, enough for a few 33x33 patches each."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(60, 75), (48, 48), (70, 52)]):
        yy, xx = np.mgrid[0:h, 0:w]
        base = np.stack([np.sin(xx / (3 + i)), np.cos(yy / 4), np.sin((xx + yy) / 5)], -1)
        img = (127.5 + 100 * base + rng.normal(0, 8, (h, w, 3))).clip(0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i}.png")
    return str(folder)


@pytest.fixture
def tiny_run(image_folder, tmp_path):
    """A function that runs `main.py` in-process with fast defaults on the tiny images."""
    import main

    def run(*argv, out="run"):
        full = list(argv)
        if argv[0] == "train":  # these first, so that the test's own flags win
            full[1:1] = ["--train-data", image_folder, "--test-data", image_folder,
                         "--out-dir", str(tmp_path / out), "--batch-size", "8"]
        main.main(full)
        return tmp_path / out
    return run


@pytest.fixture
def locked_folder(tmp_path):
    """An empty folder this user cannot write into: its permission bits, or for root (who ignores them) the
    immutable flag; the test is skipped where neither stops this user."""
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    immutable = False
    if os.access(locked, os.W_OK):
        immutable = subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode == 0
        if not immutable or os.access(locked, os.W_OK):
            pytest.skip("cannot make a folder unwritable for this user (root without chattr +i)")
    yield locked
    if immutable:
        subprocess.run(["chattr", "-i", str(locked)])
    locked.chmod(0o700)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """A checkpoint, written as training writes them, of an untrained model that returns its (bicubic)
    input: outputs are then predictable, so the tests can check pixel values."""
    from dataclasses import asdict

    import checkpoints
    from info import Info
    from model import SRCNN
    from training import Recipe, identity_init, make_optimizer
    model = SRCNN()
    identity_init(model)
    path = tmp_path_factory.mktemp("ckpt") / "identity.pth"
    progress = {"epoch": 1, "batch": 0, "loss_sum": 0.0, "psnr": 30.0, "best_psnr": 30.0, "history": []}
    checkpoints.save(checkpoints.state(model, make_optimizer(model), asdict(Recipe()), Info(), progress, 1), path)
    return str(path)


def upscale_cli(checkpoint, *argv):
    """`python super_resolve.py --checkpoint CHECKPOINT ARGV...`, in-process (:func:`cli`); it never ends in a
    traceback."""
    r = cli("super_resolve.py", "--checkpoint", checkpoint, *argv)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def train_cmd(image_folder, out, epochs, *extra):
    """The command line of a real `main.py train` process on the tiny images, batch 4."""
    return [sys.executable, "main.py", "train", "--train-data", image_folder, "--test-data", image_folder,
            "--batch-size=4", f"--num-epoch={epochs}", "--out-dir", str(out), *extra]


def wait_for(path, proc, timeout=300):
    """Wait until ``path`` exists, failing if the process ``proc`` ends first or ``timeout`` seconds pass."""
    end = time.time() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.05)
