"""Checkpoints: their format, their file names in a run's folder, saving, safe loading, and continuing.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (:func:`state` lists its keys),
so that ``torch.load(..., weights_only=True)`` reads it: a file that would run code when unpickled is
refused, never executed. Its ``epoch`` is the number of epochs completed; ``batch`` (non-zero only in a
checkpoint written when a run was stopped) is the number of batches already done of the epoch after it.

In a run's folder: ``checkpoint.{epoch}`` every ``--save-freq`` epochs (the assignment's names),
``checkpoint.best`` (best test PSNR so far), ``checkpoint.last`` (after every epoch) and
``checkpoint.interrupted`` (written when a signal stopped the run). Every one is written atomically.
"""
import os
import zipfile

import torch

from model import SRCNN
from utils import UserError, atomic_write

FORMAT_VERSION = 1
MODEL_NAME = "SRCNN"
LAST, BEST, INTERRUPTED = "checkpoint.last", "checkpoint.best", "checkpoint.interrupted"
NEWEST = (LAST, INTERRUPTED)  # where a run's furthest state can be
KEYS = ("format_version", "model_name", "model_kwargs", "state_dict", "epoch", "args", "info")  # every one has these


def periodic_name(epoch):
    """The file name of the checkpoint saved after ``epoch`` every --save-freq epochs."""
    return f"checkpoint.{epoch}"


def state(model, optimizer, args, info, progress, world):
    """Everything a training checkpoint holds: ``model`` (the unwrapped SRCNN) and ``optimizer`` states, the
    run's arguments ``args`` (a dict), the ``info`` record, the ``progress`` dict (epoch, batch, loss_sum, psnr,
    best_psnr, history), the process count ``world``, this process's thread count and the RNG state."""
    return {
        "format_version": FORMAT_VERSION,
        "model_name": MODEL_NAME,
        "model_kwargs": dict(model.init_kwargs),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "args": dict(args),
        "info": info.to_dict(),
        "world_size": world,
        "threads": torch.get_num_threads(),
        "rng": {"torch": torch.get_rng_state()},
        **progress,
    }


def save(ckpt, path):
    """Write the checkpoint dict ``ckpt`` to ``path`` atomically: a crash leaves the old file or the new one."""
    atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


def _unloadable(path, error):
    """Why torch.load could not read ``path``, in words: by the file's first bytes (torch writes a zip
    archive, or before torch 1.6 a pickle), then by what torch said."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return "the file is empty"
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        return "not a PyTorch file (a checkpoint is what main.py train writes)"
    if "Unsupported global" in str(error):
        return "it holds objects other than tensors and plain data (refused for safety, never run)"
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if not any(name.endswith("/data.pkl") for name in z.namelist()):
                return "a zip archive, not a PyTorch file (a checkpoint is what main.py train writes)"
    return "a damaged or truncated PyTorch file"


def load(path):
    """Load and check a checkpoint written by :func:`save`; safe on untrusted files. Raises UserError with a
    one-line reason for anything that is not a checkpoint of this project's format."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise UserError(f"checkpoint {path} is a folder; give the checkpoint file in it")
    if not os.path.isfile(path):
        raise UserError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many types for bad bytes; all mean "not a checkpoint"
        raise UserError(f"cannot load checkpoint {path}: {_unloadable(path, e)}") from None
    if not isinstance(ckpt, dict) or "format_version" not in ckpt:
        raise UserError(f"{path} is not an SRCNN checkpoint of this project (no format_version)")
    if ckpt["format_version"] != FORMAT_VERSION:
        raise UserError(f"{path} has checkpoint format version {ckpt['format_version']}, expected {FORMAT_VERSION}")
    if ckpt.get("model_name") != MODEL_NAME:
        raise UserError(f"{path} holds a {ckpt.get('model_name')!r} model, expected {MODEL_NAME!r}")
    missing = set(KEYS) - set(ckpt)
    if missing:
        raise UserError(f"{path} is missing checkpoint entries: {', '.join(sorted(missing))}")
    return ckpt


def load_model(path):
    """(the SRCNN of the checkpoint ``path``, built from its constructor arguments, on the CPU in float32,
    the checkpoint dict); UserError when the file is no checkpoint or its weights do not fit."""
    ckpt = load(path)
    try:
        model = SRCNN(**ckpt["model_kwargs"])
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, ValueError, RuntimeError) as e:
        raise UserError(f"{path}: weights do not fit the SRCNN it describes ({str(e).splitlines()[0]})") from None
    return model, ckpt


def scale_of(ckpt):
    """The upscaling factor a checkpoint was trained for; checkpoints older than the --scale flag are x3."""
    return int(ckpt["args"].get("scale", 3))


def position(ckpt):
    """How far into its run a checkpoint is: (epochs completed, batches of the next)."""
    return ckpt["epoch"], ckpt.get("batch", 0)


def run_files(out_dir):
    """The names of the checkpoints and run configuration in ``out_dir`` (a run's folder), sorted."""
    if not os.path.isdir(out_dir):
        return []
    return sorted(n for n in os.listdir(out_dir) if n.startswith("checkpoint.") or n == "config.json")


def _checkpoints_in(out_dir):
    """(name, checkpoint) of every checkpoint file in ``out_dir`` that loads."""
    found = []
    for name in run_files(out_dir):
        if name.startswith("checkpoint."):
            try:
                found.append((name, load(os.path.join(out_dir, name))))
            except UserError:
                continue  # not one of ours: not part of the run
    return found


def newest(out_dir):
    """(path, checkpoint) of the checkpoint in ``out_dir`` that is furthest into the run (by epoch, then batch)
    among ``checkpoint.last`` and ``checkpoint.interrupted``, or None."""
    found = [(position(ckpt), name, ckpt) for name, ckpt in _checkpoints_in(out_dir) if name in NEWEST]
    if not found:
        return None
    _, name, ckpt = max(found, key=lambda f: f[0])
    return os.path.join(out_dir, name), ckpt


def further_than(out_dir, ckpt):
    """The names of the checkpoints in ``out_dir`` that are further into the run than ``ckpt``: what continuing
    from ``ckpt`` in that folder would write over."""
    return [name for name, other in _checkpoints_in(out_dir) if position(other) > position(ckpt)]


def merged_args(defaults, saved, given):
    """The arguments a continued run goes on with: ``defaults`` (for flags newer than the checkpoint), then the
    ``saved`` ones, then the flags ``given`` on the command line (those not None)."""
    return {**defaults, **saved, **{k: v for k, v in given.items() if v is not None}}
