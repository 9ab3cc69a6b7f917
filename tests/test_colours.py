"""True colours: every shipped model gives flat colours back unchanged and beats bicubic in RGB on graphics and
on every Set5 (and, where present, Set14) image; the flat-colour loss that taught them is exact."""
import os

import numpy as np
import pytest
import torch

import datasets
import training
from conftest import ROOT, real_data
from evaluation import FLAT_COLOURS, card_scores, colour_card, edge_mask, flat_colour_error
from inference import apply_network, checkpoint_scale, load_model
from model import SRCNN
from utils import image_metrics

SHIPPED = {2: "checkpoints/srcnn_x2.pth", 3: "checkpoint.pth", 4: "checkpoints/srcnn_x4.pth"}
CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=sorted(SHIPPED), ids=lambda s: f"x{s}")
def shipped(request):
    path = os.path.join(ROOT, SHIPPED[request.param])
    if not os.path.exists(path):
        pytest.skip(f"{SHIPPED[request.param]} is not in this checkout")
    model, ckpt = load_model(path, CPU)
    assert checkpoint_scale(ckpt) == request.param
    return model, request.param


def test_flat_response_is_the_network_on_a_flat_image():
    """The flat-colour loss's shortcut (kernels summed over space) equals running the network on flat
    images through the inference engine, edges included."""
    torch.manual_seed(0)
    model = SRCNN().eval()
    colours = torch.tensor(FLAT_COLOURS[:10], dtype=torch.float32) / 255
    with torch.no_grad():
        fast = training.flat_response(model, colours)
    for c, f in zip(colours, fast):
        flat = np.full((9, 11, 3), np.round(c.numpy() * 255), np.uint8)
        out = apply_network(model, flat).astype(float) / 255  # quantised, so compare within half a level
        assert np.abs(out - f.clamp(0, 1).numpy()).max() <= 0.5 / 255 + 1e-6


def test_the_flat_colour_loss_teaches_a_network_its_colours():
    torch.manual_seed(1)
    model = SRCNN()
    colours = training.flat_colours()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    before = training.flat_loss(model, colours).item()
    for _ in range(200):
        opt.zero_grad()
        loss = training.flat_loss(model, colours)
        loss.backward()
        opt.step()
    assert loss.item() < before / 100


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
