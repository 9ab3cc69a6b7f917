"""The pieces of a training step, each against a value it must produce: the losses, the learning-rate schedule
inside the training loop, the optimizers' steps by their formulas, weight decay, the last layer's rate, the
initialisations, and the flat-colour term that keeps colours true."""
import numpy as np
import pytest
import torch

import checkpoints
import training
from evaluation import FLAT_COLOURS
from inference import apply_network
from metrics import RGB_TO_YCBCR, rgb_to_y, rgb_to_ycbcr
from model import SRCNN
from training import Recipe, flat_colours, flat_loss, flat_response, identity_init, make_optimizer, patch_loss


# --------------------------------------------------------------------------- losses

def test_rgb_loss_is_the_mean_squared_error_and_the_border_is_left_out():
    torch.manual_seed(0)
    out, target = torch.rand(2, 3, 11, 11), torch.rand(2, 3, 11, 11)
    assert torch.allclose(patch_loss(out, target), ((out - target) ** 2).mean())
    edge_only = target.clone()
    edge_only[..., 0, :] += 0.5  # an error on the outermost row only
    assert patch_loss(edge_only, target, border=1) == 0
    assert patch_loss(edge_only, target, border=0) == pytest.approx(0.25 / 11)


def test_ycbcr_loss_scores_luma_like_the_test_metric_and_weights_chroma():
    rng = np.random.default_rng(1)
    out, target = rng.random((1, 3, 5, 7)), rng.random((1, 3, 5, 7))
    t_out, t_target = torch.from_numpy(out), torch.from_numpy(target)
    nhwc = lambda a: a.transpose(0, 2, 3, 1) * 255  # noqa: E731
    y_mse = ((rgb_to_y(nhwc(out)) - rgb_to_y(nhwc(target))) ** 2).mean() / 255 ** 2
    chroma = ((rgb_to_ycbcr(nhwc(out)) - rgb_to_ycbcr(nhwc(target)))[..., 1:] ** 2).sum(-1).mean() / 255 ** 2
    for w in (0.0, 0.1, 1.0):
        got = patch_loss(t_out, t_target, "ycbcr", chroma_weight=w).item()
        assert got == pytest.approx(y_mse + w * chroma, rel=1e-9)
    # a pure chroma change (equal luma) costs nothing when chroma has no weight
    shift = torch.from_numpy(np.linalg.inv(RGB_TO_YCBCR)[:, 1]).view(1, 3, 1, 1) * 0.01
    assert patch_loss(t_target + shift, t_target, "ycbcr", chroma_weight=0) < 1e-12


# --------------------------------------------------------------------------- schedule and optimizers

def recorded_rates(monkeypatch, optimizer):
    """The learning rate of each parameter group at every optimizer step taken from now on."""
    rates, step = [], optimizer.step

    def recording(self, *args, **kwargs):
        rates.append([g["lr"] for g in self.param_groups])
        return step(self, *args, **kwargs)
    monkeypatch.setattr(optimizer, "step", recording)
    return rates


def test_the_training_loop_warms_up_from_a_first_step_above_zero_then_follows_the_cosine(tiny_run, monkeypatch):
    """18 tiny patches, batch 8: 2 steps an epoch, 6 in 3 epochs; warm-up over the first epoch (2 steps), then
    half a cosine over the other 4. The reconstruction layer runs at --last-layer-lr times the rate."""
    rates = recorded_rates(monkeypatch, torch.optim.Adam)
    tiny_run("train", "--lr=0.01", "--warmup-epochs=1", "--schedule=cosine", "--num-epoch=3", "--last-layer-lr=0.1")
    first = [r[0] for r in rates]
    # warm-up: 1/2 and 2/2 of the rate (the end of warm-up is the full rate); cosine: 1, 0.854, 0.5 (its
    # midpoint, 2 of 4 steps), 0.146
    assert first == pytest.approx([0.005, 0.01, 0.01, 0.0085355, 0.005, 0.0014645], rel=1e-4)
    assert [r[1] for r in rates] == pytest.approx([0.1 * r for r in first], rel=1e-9)


def test_a_constant_schedule_keeps_the_rate_after_warm_up(tiny_run, monkeypatch):
    rates = recorded_rates(monkeypatch, torch.optim.SGD)
    out = tiny_run("train", "--lr=0.02", "--warmup-epochs=0.5", "--num-epoch=2", "--optimizer=sgd",
                   "--weight-decay=0.001")
    assert [r[0] for r in rates] == pytest.approx([0.02] * 4)  # warm-up of round(0.5 * 2) = 1 step: 1/1
    groups = checkpoints.load(out / "checkpoint.last")["optimizer"]["param_groups"]
    assert all(g["momentum"] == 0.9 and g["weight_decay"] == 0.001 for g in groups)


def test_sgd_steps_by_the_momentum_formula():
    torch.manual_seed(0)
    model = SRCNN(n1=4, n2=2)
    opt = make_optimizer(model, "sgd", lr=0.1, last_layer_lr=0.5)
    p = model.patch_extraction.weight
    q = model.reconstruction.bias
    p0, q0 = p.detach().clone(), q.detach().clone()
    g1, g2 = torch.randn_like(p), torch.randn_like(p)
    for g in (g1, g2):
        opt.zero_grad()
        p.grad, q.grad = g.clone(), torch.ones_like(q)
        opt.step()
    # v1 = g1, v2 = 0.9 v1 + g2; each step subtracts lr times v
    torch.testing.assert_close(p.detach(), p0 - 0.1 * g1 - 0.1 * (0.9 * g1 + g2))
    torch.testing.assert_close(q.detach(), q0 - 0.05 * 1 - 0.05 * (0.9 + 1))  # the last layer at half the rate


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_weight_decay_shrinks_a_weight_whose_gradient_is_zero(name):
    model = SRCNN(n1=4, n2=2)
    with torch.no_grad():
        model.patch_extraction.weight.fill_(0.5)
    opt = make_optimizer(model, name, lr=0.01, weight_decay=0.1)
    opt.zero_grad()
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    w = model.patch_extraction.weight
    if name == "sgd":  # the decay is the only gradient: w (1 - lr * wd)
        torch.testing.assert_close(w, torch.full_like(w, 0.5 * (1 - 0.01 * 0.1)))
    else:  # Adam's first step moves each weight by lr against the sign of its gradient, here wd * w > 0
        torch.testing.assert_close(w, torch.full_like(w, 0.5 - 0.01), atol=1e-6, rtol=0)
    assert torch.equal(model.patch_extraction.bias.grad, torch.zeros_like(model.patch_extraction.bias))
    no_decay = make_optimizer(SRCNN(n1=4, n2=2), name, lr=0.01)
    assert all(g["weight_decay"] == 0 for g in no_decay.param_groups)


def test_the_optimizer_groups_are_the_network_less_its_last_layer_and_the_last_layer():
    model = SRCNN()
    first, last = make_optimizer(model, last_layer_lr=0.1).param_groups
    assert [p.shape for p in last["params"]] == [model.reconstruction.weight.shape, model.reconstruction.bias.shape]
    assert sum(p.numel() for p in first["params"] + last["params"]) == 20_099
    assert (first["lr_scale"], last["lr_scale"]) == (1.0, 0.1)
    with pytest.raises(ValueError):
        make_optimizer(model, "rmsprop")


def test_recipe_defaults_are_the_assignments():
    r = Recipe()
    assert (r.num_epoch, r.optimizer, r.lr, r.batch_size, r.scale) == (100, "adam", 1e-4, 128, 3)
    assert SRCNN(**r.model_kwargs).init_kwargs == SRCNN().init_kwargs
    assert Recipe.from_dict({"lr": 0.5, "kernels": [9, 5, 5], "unknown": 1}) == Recipe(lr=0.5, kernels=(9, 5, 5))


# --------------------------------------------------------------------------- initialisation

def test_identity_init_returns_its_input_exactly():
    model = SRCNN()
    identity_init(model)
    x = torch.rand(2, 3, 20, 17)
    with torch.no_grad():
        assert torch.equal(model(x)[..., 6:-6, 6:-6], x[..., 6:-6, 6:-6])


def test_init_from_copies_the_weights_and_refuses_another_network(tmp_path, tiny_run):
    run = tiny_run("train", "--num-epoch=1")
    saved = checkpoints.load(run / "checkpoint.last")["state_dict"]
    model = training.initial_model(Recipe(init_from=str(run / "checkpoint.last")), None)
    assert all(torch.equal(v, saved[k]) for k, v in model.state_dict().items())
    from utils import UserError
    with pytest.raises(UserError, match="holds another network"):
        training.initial_model(Recipe(init_from=str(run / "checkpoint.last"), filters=(16, 8)), None)


def test_a_network_of_other_sizes_trains_saves_and_upscales(tiny_run, tmp_path):
    from conftest import upscale_cli
    run = tiny_run("train", "--num-epoch=1", "--filters=16,8", "--kernels=5,3,3")
    ckpt = checkpoints.load(run / "checkpoint.last")
    assert ckpt["model_kwargs"] == dict(num_channels=3, n1=16, n2=8, f1=5, f2=3, f3=3)
    model, _ = checkpoints.load_model(run / "checkpoint.last")
    assert model.receptive_radius == 2 + 1 + 1
    from PIL import Image
    Image.fromarray(np.full((9, 10, 3), 77, np.uint8)).save(tmp_path / "a.png")
    r = upscale_cli(run / "checkpoint.last", tmp_path / "a.png")
    assert r.returncode == 0 and Image.open(tmp_path / "a_srcnn_x3.png").size == (30, 27)


# --------------------------------------------------------------------------- the flat-colour term

def test_flat_response_is_the_network_on_a_flat_image():
    """The flat-colour loss's shortcut (kernels summed over space) equals running the network on flat
    images through the inference engine, edges included."""
    torch.manual_seed(0)
    model = SRCNN().eval()
    colours = torch.tensor(FLAT_COLOURS[:10], dtype=torch.float32) / 255
    with torch.no_grad():
        fast = flat_response(model, colours)
    for c, f in zip(colours, fast):
        flat = np.full((9, 11, 3), np.round(c.numpy() * 255), np.uint8)
        out = apply_network(model, flat).astype(float) / 255  # quantised, so compare within half a level
        assert np.abs(out - f.clamp(0, 1).numpy()).max() <= 0.5 / 255 + 1e-6


def test_the_flat_colour_loss_counts_only_what_the_clip_to_0_1_does_not_hide():
    model = SRCNN(n1=4, n2=2)
    with torch.no_grad():
        for conv in model.convs:
            conv.weight.zero_()
            conv.bias.zero_()
        model.reconstruction.bias.fill_(-0.1)  # every colour comes back 0.1 darker
    black_white = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    err = flat_response(model, black_white) - black_white
    assert torch.allclose(err, torch.tensor([[-0.1] * 3, [-1.1] * 3]))
    # the "grid" here is black and white: black comes back as -0.1, which the clip makes black again (no error);
    # white comes back 1.1 too dark. Then the named colours: black 0 off, white 1.1, the primaries and
    # secondaries 1.1 in their full channels; greys: 0 none, 255 1.1, the others v/255 + 0.1 in every channel.
    colours = torch.cat([black_white, torch.tensor(FLAT_COLOURS, dtype=torch.float32) / 255])
    grid = 3 * 1.1 ** 2 / 6
    corners = sum(1.1 ** 2 * bin(i).count("1") for i in range(8))  # each full channel of the 8 corners
    greys = 3 * 1.1 ** 2 + sum(3 * (v / 255 + 0.1) ** 2 for v in range(17, 255, 17))
    named = (corners + greys) / (3 * len(FLAT_COLOURS))
    assert flat_loss(model, colours).item() == pytest.approx(grid + named, rel=1e-5)


def test_flat_weight_lowers_the_flat_colour_error_in_a_short_run(tiny_run):
    common = ("train", "--num-epoch=6", "--lr=0.001", "--batch-size=2")  # 54 steps: 0.013 without, 0.0025 with
    plain = checkpoints.load_model(tiny_run(*common, out="plain") / "checkpoint.last")[0]
    flat = checkpoints.load_model(tiny_run(*common, "--flat-weight=1", out="flat") / "checkpoint.last")[0]
    with torch.no_grad():
        plain_error, flat_error = (flat_loss(m, flat_colours()).item() for m in (plain, flat))
    assert flat_error < plain_error / 2, (flat_error, plain_error)
