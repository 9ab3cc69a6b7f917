"""ONNX export of a checkpoint's network (``main.py export``): the file, checked with onnxruntime before it is kept.

What the file computes (:class:`OnnxNetwork`): input ``"input"``, an (N, 3, H, W) float32 image in [0, 1] of any
N, H and W >= 1, the low-resolution image already upscaled by the checkpoint's scale with Pillow's bicubic (what
the network takes); output ``"output"``, (N, 3, H, W) float32 in [0, 1]. Inside the graph: the edge mirrored by
the network's receptive radius exactly as :func:`inference.pad_edges` mirrors it, the SRCNN, the margin cropped
and the clamp to [0, 1]. A caller only rounds (``np.rint(y * 255)``) to get the engine's 8-bit output within one
level, up to the last pixel; docs/python.md shows the whole way from a low-resolution file.

Choices, as measured (torch 2.14.1, onnx 1.23.2, onnxruntime 1.32.0):

- The mirror is an index Gather of the 2 x radius margin rows and columns, concatenated around the image, the
  indices computed in the graph by pad_edges' own rule per axis (:func:`mirror_index`). ``Pad(mode=reflect)``
  exports too, but onnxruntime refuses it for any side of 6 pixels or less ("pre-pad (6) exceeds maximum allowed");
  gathering every row and column cost 0.22 s of a 4K frame, the margins 0.022 s (the network: about 8 s).
- The clamp is in the graph: the raw output leaves [0, 1] (-0.23 to 1.21 on the colour card, 44% of its values
  outside), and a caller's plain ``astype(np.uint8)`` would wrap those by up to 255 levels.
- Exporter: torch's dynamo exporter (the TorchScript one warns it will be removed, and labels opsets it cannot
  write as 21 or 23), weights in the one file (``external_data=False``).
- Opsets: the exporter converts to an older opset only as far as 15 and leaves the file at 18 when asked for
  less, with no error; so the opset in the written file is read back and a mismatch is refused.
- ``fp16``: the engine's own fp16 arrangement (:class:`inference.ReducedPrecisionSRCNN`) with float32 input
  and output and the Casts inside, so callers use one code for both files. onnxruntime's CPU provider has no
  fp16 convolution on x86 without AVX512-FP16: there it computes in float32 with the fp16-rounded weights, at
  fp32's speed; the file is a third smaller. An fp16 provider (CUDA) computes in fp16.
- The check: the file against the fp32 engine (:func:`inference.apply_network`) on the colour card and a batch of
  two tiny odd-sized crops of it, 8-bit after rounding; more than :data:`TOLERANCE` levels anywhere and the file
  is not kept. Exact equality is out of reach: onnxruntime's floats differ from PyTorch's by up to 3.6e-6 (1e-3
  of a level), enough to round a value lying on a half level the other way; fp16 measured within 1 level too.
"""
import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

import checkpoints
from datasets import make_pair
from evaluation import colour_card
from inference import apply_network, prepare
from utils import UserError, atomic_write

TOLERANCE = 1  # 8-bit levels between the file and the fp32 engine that a kept file may show
MIN_OPSET = 15  # the oldest opset the exporter reaches: for 14 and below it fails to convert and writes 18
EXAMPLE = (2, 3, 32, 48)  # the traced input: no axis of 1, which an exporter may take for a fixed size
PACKAGES = ("onnx", "onnxruntime", "onnxscript")  # import names; onnxscript is the dynamo exporter's


def mirror_index(n, radius):
    """The row (or column) indices of :func:`inference.pad_edges` along a side of ``n`` pixels (an int, or the
    exporter's symbolic size), as an (n + 2 * radius,) int64 tensor computed with tensor operations only, so that
    the graph chooses for each size: reflection without repeating the edge pixel where n > radius, the edge pixel
    repeated where n <= radius."""
    i = torch.arange(-radius, n + radius)
    size = i[-1:] - (radius - 1)  # n, as a tensor: a Python comparison of a symbolic size would fix it
    a = i.abs()
    reflected = torch.where(a >= size, 2 * (size - 1) - a, a)
    repeated = torch.minimum(i.clamp(min=0), size - 1)
    return torch.where(size > radius, reflected, repeated)


def mirror_edges(x, radius):
    """:func:`inference.pad_edges` of an (N, C, H, W) tensor: (N, C, H + 2 * radius, W + 2 * radius). Only the
    margins are gathered and concatenated around the image (the middle of the index vector is always 0..n-1)."""
    for axis in (2, 3):
        i = mirror_index(x.shape[axis], radius)
        x = torch.cat([x.index_select(axis, i[:radius]), x, x.index_select(axis, i[-radius:])], axis)
    return x


class OnnxNetwork(torch.nn.Module):
    """What the ONNX file computes: (N, 3, H, W) float32 in [0, 1], the bicubic-upscaled image, to the
    network's output of the same shape, float32 clamped to [0, 1], the edge mirrored by the receptive radius
    inside. ``fp16``: the network in float16 as the engine's ``--precision fp16`` runs it; float32 in and out."""

    def __init__(self, model, fp16=False):
        super().__init__()
        self.radius = model.receptive_radius
        self.net = prepare(model, torch.device("cpu"), "fp16" if fp16 else "fp32")
        self.span = getattr(self.net, "INPUT_SPAN", 1.0)  # the fp16 network takes 0..255

    def forward(self, x):
        r = self.radius
        x = mirror_edges(x, r)
        y = self.net(x * self.span if self.span != 1.0 else x)
        return y[:, :, r:-r, r:-r].clamp(0, 1)


@dataclass(frozen=True)
class Check:
    """How an exported file agrees with the fp32 engine: the ``largest`` difference in 8-bit levels, the
    share of pixels (all three channels) ``within`` one level and ``equal``, over the ``images`` described."""
    largest: int
    within: float
    equal: float
    images: str


@dataclass(frozen=True)
class Exported:
    """An exported file: its ``path``, ``opset``, ``size`` in bytes, ``scale``, ``fp16`` and its :class:`Check`."""
    path: str
    opset: int
    size: int
    scale: int
    fp16: bool
    check: Check


def export(checkpoint, out, fp16=False, opset=None, overwrite=False):
    """Write the network of ``checkpoint`` to the ONNX file ``out`` (float16 weights and arithmetic with ``fp16``;
    ``opset``: None for the exporter's default), check it (:func:`check_file`) and keep it only if it agrees;
    returns the :class:`Exported`. UserError, with nothing written, for a checkpoint that does not load, an
    unsupported opset, an output that exists (unless ``overwrite``) or cannot be written, a file in another opset
    than asked, or one that disagrees with PyTorch."""
    model, ckpt = checkpoints.load_model(checkpoint)
    onnx = require_packages()
    if opset is not None and not MIN_OPSET <= opset <= onnx.defs.onnx_opset_version():
        raise UserError(f"--opset {opset} is not supported: this exporter writes opsets {MIN_OPSET} to "
                        f"{onnx.defs.onnx_opset_version()}")
    check_output(out, overwrite)
    scale = checkpoints.scale_of(ckpt)
    found = {}

    def write(tmp):
        write_onnx(OnnxNetwork(model, fp16).eval(), tmp, opset, {"scale": str(scale)})
        found["opset"] = file_opset(tmp)
        if opset is not None and found["opset"] != opset:
            raise UserError(f"the exporter wrote opset {found['opset']} when asked for {opset}; nothing was written")
        found["check"] = check_file(tmp, model, scale)
        if found["check"].largest > TOLERANCE:
            raise UserError(f"the exported file differs from PyTorch by up to {found['check'].largest} levels "
                            f"(8-bit) on {found['check'].images}, more than {TOLERANCE}; nothing was written")
    try:
        atomic_write(out, write)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e}") from None
    return Exported(out, found["opset"], os.path.getsize(out), scale, fp16, found["check"])


def require_packages():
    """The onnx module, once every one of :data:`PACKAGES` imports; UserError naming what to install where one
    does not."""
    import importlib
    try:
        modules = [importlib.import_module(name) for name in PACKAGES]
    except ImportError as e:
        raise UserError(f"main.py export needs {', '.join(PACKAGES)} ({e.name} is missing): "
                        f"pip install -r requirements.txt") from None
    return modules[0]


def check_output(out, overwrite):
    """UserError, before any work, where ``out`` cannot be written: its folder is missing or not writable, it is a
    folder, or it exists (the project's policy: only with ``overwrite``, and never a read-only file)."""
    folder = os.path.dirname(os.path.abspath(out))
    if os.path.isdir(out):
        raise UserError(f"{out} is a folder; give the ONNX file's name")
    if not os.path.isdir(folder):
        raise UserError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise UserError(f"output folder is not writable: {folder}")
    if os.path.lexists(out):
        if not overwrite:
            raise UserError(f"{out} exists already; nothing was written. Pass --overwrite to replace it")
        if not os.access(out, os.W_OK) or not os.stat(out).st_mode & 0o222:
            raise UserError(f"{out} exists and is read-only; not replaced")


def write_onnx(module, path, opset=None, metadata=None):
    """Export ``module`` (an :class:`OnnxNetwork`) to the one file ``path``, with a dynamic batch, height and width,
    in ``opset`` (None: the exporter's default) and ``metadata`` (str -> str) in the file's metadata_props. The
    exporter's log (conversion notes, tracebacks of what it could not convert) is silenced: :func:`export` reads
    back what the file holds."""
    import onnx
    dim = torch.export.Dim
    shapes = {"x": {0: dim("N", min=1), 2: dim("H", min=1), 3: dim("W", min=1)}}
    loggers = [logging.getLogger(name) for name in ("onnxscript", "torch.onnx", "onnx_ir")]
    levels = [log.level for log in loggers]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for log in loggers:
            log.setLevel(logging.CRITICAL)
        try:
            torch.onnx.export(module, (torch.rand(*EXAMPLE),), path, input_names=["input"], output_names=["output"],
                              dynamo=True, dynamic_shapes=shapes, external_data=False, opset_version=opset,
                              verbose=False)
        finally:
            for log, level in zip(loggers, levels):
                log.setLevel(level)
    proto = onnx.load(path)
    for key, value in (metadata or {}).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(proto)
    onnx.save(proto, path)


def file_opset(path):
    """The ONNX operator set (of the default domain) that the file ``path`` declares."""
    import onnx
    return next(o.version for o in onnx.load(path).opset_import if o.domain in ("", "ai.onnx"))


def check_images(scale):
    """The images :func:`check_file` runs, as (description, (N, H, W, 3) uint8 network inputs): the colour card
    (evaluation.colour_card) down- and upscaled by ``scale`` as the test data are, and a batch of two 5 x 7
    crops of it: odd sides, one too short to mirror (its edge pixels repeat)."""
    card = make_pair(Image.fromarray(colour_card()[0]), scale)[0]
    crops = np.stack([card[40:45, 10:17], card[100:105, 300:307]])
    return [(f"the colour card ({card.shape[0]}x{card.shape[1]})", card[None]), ("2 crops of 5x7", crops)]


def run_file(path, batch):
    """Run the ONNX file ``path`` with onnxruntime on the CPU over the (N, H, W, 3) uint8 ``batch``: its output
    rounded to 8 bits as a caller rounds it (no clip: the graph clamps), (N, H, W, 3) int64."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    try:
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        x = np.ascontiguousarray(batch.transpose(0, 3, 1, 2), np.float32) / np.float32(255)
        y = session.run(None, {"input": x})[0]
    except Exception as e:  # onnxruntime raises its own types for a graph it cannot load or run
        raise UserError(f"onnxruntime cannot run the exported file: {str(e).splitlines()[0]}") from None
    return np.rint(y * 255).astype(np.int64).transpose(0, 2, 3, 1)


def check_file(path, model, scale):
    """The :class:`Check` of the ONNX file ``path`` against the fp32 engine running ``model`` (the SRCNN, on the
    CPU) on :func:`check_images` at ``scale``."""
    engine = prepare(model, torch.device("cpu"))
    worst, pixels, within, equal, names = 0, 0, 0, 0, []
    for name, batch in check_images(scale):
        reference = np.stack([apply_network(engine, image, tile=None) for image in batch]).astype(np.int64)
        difference = np.abs(run_file(path, batch) - reference).max(-1)  # per pixel, the worst channel
        worst = max(worst, int(difference.max()))
        pixels += difference.size
        within += int((difference <= 1).sum())
        equal += int((difference == 0).sum())
        names.append(name)
    return Check(worst, within / pixels, equal / pixels, " and ".join(names))
