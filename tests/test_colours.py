"""True colours: every shipped model gives flat colours back unchanged and beats bicubic in RGB on graphics and
on every Set5 (and, where present, Set14) image. The flat-colour loss that taught them: tests/test_training.py."""
import os

import numpy as np
import pytest

import datasets
from conftest import ROOT, real_data
from evaluation import FLAT_COLOURS, card_scores, colour_card, edge_mask, flat_colour_error
from inference import Upscaler, apply_network
from metrics import image_metrics

SHIPPED = {2: "checkpoints/srcnn_x2.pth", 3: "checkpoint.pth", 4: "checkpoints/srcnn_x4.pth"}


@pytest.fixture(scope="module", params=sorted(SHIPPED), ids=lambda s: f"x{s}")
def shipped(request):
    path = os.path.join(ROOT, SHIPPED[request.param])
    if not os.path.exists(path):
        pytest.skip(f"{SHIPPED[request.param]} is not in this checkout")
    upscaler = Upscaler.from_checkpoint(path)
    assert upscaler.scale == request.param
    return upscaler.model, request.param


def test_every_flat_colour_comes_back_unchanged(shipped):
    """The 8 corners of the RGB cube and greys 0..255 in steps of 17, each a flat 16x16 input whose output
    (32x32 to 64x64) must stay within 1 level of it in every pixel and channel."""
    model, scale = shipped
    change, colour, got = flat_colour_error(model, scale)
    assert change <= 1, f"{colour} came back as {got}"


def test_graphics_card_beats_bicubic_in_rgb_and_at_every_edge(shipped):
    model, scale = shipped
    scores, _ = card_scores(model, scale)
    assert scores["SRCNN"]["rgb_psnr"] >= scores["bicubic"]["rgb_psnr"]
    for panel in ("shapes on black", "shapes on white", "text"):
        assert scores["SRCNN"][f"{panel} edges"] <= scores["bicubic"][f"{panel} edges"], panel


def test_the_card_has_what_it_is_for():
    card, panels = colour_card()
    assert card.shape == (144, 432, 3) and all(n % 12 == 0 for n in card.shape[:2])
    colours = {tuple(int(v) for v in p) for p in card.reshape(-1, 3)}
    assert {(0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 255, 255)} <= colours
    assert edge_mask(card).mean() > 0.1 and not edge_mask(np.zeros((8, 8, 3), np.uint8)).any()


@pytest.mark.parametrize("test_set", ["Set5", "Set14"])
def test_rgb_psnr_is_above_bicubic_on_every_image(shipped, test_set):
    model, scale = shipped
    data = datasets.TestDataset(real_data(test_set), scale)
    for name, lr, hr in data:
        ours = image_metrics(apply_network(model, lr), hr, scale)["rgb_psnr"]
        assert ours >= image_metrics(lr, hr, scale)["rgb_psnr"], name


def test_bf16_on_the_cpu_costs_at_most_a_hundredth_of_a_db_and_no_flat_colour(shipped):
    """--precision bf16 on a CPU (inference.Bf16FirstLayerSRCNN) at fp32's quality: Set5 Y-PSNR within 0.01 dB
    of fp32's and every flat colour unchanged, at each scale. The arithmetic is exact in bfloat16, so this holds
    on a CPU with bfloat16 instructions as on one without (oneDNN emulates them there): the bfloat16 mode is
    used here on either kind, as a CPU with them uses it."""
    import torch
    from evaluation import evaluate_model
    from inference import prepare
    from metrics import mean_metrics
    model, scale = shipped
    data = datasets.TestDataset(real_data("Set5"), scale)
    fast = prepare(model, torch.device("cpu"), "bf16")
    fast.bf16_math = True
    fp32, bf16 = (mean_metrics(evaluate_model(m, data)[0])["y_psnr"] for m in (model, fast))
    assert abs(fp32 - bf16) <= 0.01, (fp32, bf16)
    change, colour, got = flat_colour_error(fast, scale)
    assert change == 0, f"{colour} came back as {got}"
