"""Small helpers both CLIs share: the one error type, number arguments and the parser that reports a bad
command line in one line, atomic file writing, seeding, and the choice of device.

Image conventions used across the project: 8-bit images are numpy ``uint8`` arrays of shape (H, W, 3) in RGB
order (16-bit ones ``uint16``); float images are in [0, 255] unless a docstring says otherwise.
"""
import argparse
import difflib
import math
import os
import random
import tempfile

import numpy as np
import torch


class UserError(Exception):
    """A problem with what the user asked for or gave us; the CLIs print it as one ``error:`` line and exit 1."""


# Command-line number types: argparse turns their ArgumentTypeError into a one-line usage error.
def _number(kind, minimum, inclusive):
    """An argparse type: a ``kind`` number that is finite and above (or, ``inclusive``, at least) ``minimum``."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n integer' if kind is int else ' number'}")
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"{text} must be {'>=' if inclusive else '>'} {minimum}")
        return value
    return parse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default in ``--help``, except the defaults that say nothing (None, False)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:  # 0 is shown
            return action.help
        return super()._get_help_string(action)


positive_int, positive_float = _number(int, 0, False), _number(float, 0.0, False)
non_negative_float, non_negative_int = _number(float, 0.0, True), _number(int, 0, True)


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, with the nearest valid flags or choices for a slip."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}{self._suggestion(message)} (see --help)\n")

    def _options(self):
        """Every option string of this parser and of its sub-commands' parsers."""
        names = set()
        for action in self._actions:
            names.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    names.update(s for a in sub._actions for s in a.option_strings)
        return sorted(n for n in names if n.startswith("--"))

    def _suggestion(self, message):
        if message.startswith("unrecognized arguments: "):
            words = [w.split("=")[0] for w in message.split(": ", 1)[1].split() if w.startswith("-")]
            near = [m for w in words for m in difflib.get_close_matches(w, self._options(), n=2, cutoff=0.6)]
        elif "invalid choice: " in message:
            word = message.split("invalid choice: ", 1)[1].split(" (")[0].strip("'")
            choices = message.split("(choose from ", 1)[-1].rstrip(")").replace("'", "").split(", ")
            near = difflib.get_close_matches(word, choices, n=2, cutoff=0.5)
        else:
            return ""
        return f"; did you mean {' or '.join(dict.fromkeys(near))}?" if near else ""


# --------------------------------------------------------------------------- reproducibility, devices

def set_seed(seed):
    """Seed every RNG the project touches (Python, NumPy, PyTorch on all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def choose_device(cuda, local_rank=0):
    """The device to run on: ``cuda:local_rank`` when ``cuda`` is asked for, else the CPU.

    Raises UserError when CUDA is asked for but not available, rather than silently using the CPU, and
    when torchrun starts more processes on a machine than it has GPUs (one GPU per process)."""
    if not cuda:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError("--cuda was given but no CUDA device is available; drop --cuda to run on the CPU")
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise UserError(f"--cuda gives each process on a machine a GPU of its own; this machine has {count}, so its "
                        f"process {local_rank} has none: start at most --nproc_per_node={count} here")
    return torch.device("cuda", local_rank)


def cpu_has_bf16(cpuinfo="/proc/cpuinfo"):
    """Whether this CPU has bfloat16 arithmetic instructions (x86 AVX512-BF16 or AMX-BF16, Arm BF16), by
    the kernel's CPU flags; None where they cannot be read. Without them, bfloat16 convolutions are
    emulated and run slower than float32."""
    try:
        with open(cpuinfo) as f:
            flags = {word for line in f if line.startswith(("flags", "Features")) for word in line.split()}
    except OSError:
        return None
    return bool(flags & {"avx512_bf16", "amx_bf16", "bf16"})


# --------------------------------------------------------------------------- files

def atomic_write(path, write):
    """Create ``path`` all at once: ``write(tmp)`` fills a temporary file in the same folder, which is
    flushed to disk and only then renamed over ``path``. A crash at any moment leaves either the old
    file or the new one, never half of one; on failure the temporary file is removed.
    The file gets the usual permissions (0666 less the umask), not mkstemp's private 0600."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    # ".NAME-XXXX.tmp": hidden, and never without a stem before its last dot (torch.save needs one)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + "-", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
