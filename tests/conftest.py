"""Shared fixtures. Real-image tests read the repository's data/ (T91/ and Set5/ are committed);
SRCNN_DATA, a folder holding image sets, overrides it. The benchmark sets that are not shipped
(Set14/, BSD100/) are looked for there too and in ../shared/data; tests that need them skip saying so."""
import os
import sys

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


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
        if argv[0] == "train":
            full += ["--train-data", image_folder, "--test-data", image_folder,
                     "--out-dir", str(tmp_path / out), "--batch-size", "8"]
        main.main(full)
        return tmp_path / out
    return run


@pytest.fixture(scope="session")
def identity_checkpoint(tmp_path_factory):
    """A checkpoint, written as training writes them, of an untrained model that returns its (bicubic)
    input: outputs are then predictable, so the tests can check pixel values."""
    import main
    import training
    from info import Info
    from model import SRCNN
    from utils import save_checkpoint
    model = SRCNN()
    training.identity_init(model)
    args = main.build_parser().parse_args(["train"])
    path = tmp_path_factory.mktemp("ckpt") / "identity.pth"
    progress = {"epoch": 1, "batch": 0, "loss_sum": 0.0, "psnr": 30.0, "best_psnr": 30.0, "history": []}
    save_checkpoint(training.checkpoint_state(model, training.make_optimizer(model, args), args, Info(), progress, 1),
                    path)
    return str(path)
