import torch

from model import SRCNN


def test_architecture_is_the_assignments_9_1_5_network():
    m = SRCNN()
    convs = [m.patch_extraction, m.nonlinear_mapping, m.reconstruction]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding, c.stride) for c in convs] == [
        (3, 64, (9, 9), (4, 4), (1, 1)), (64, 32, (1, 1), (0, 0), (1, 1)), (32, 3, (5, 5), (2, 2), (1, 1))]
    assert sum(p.numel() for p in m.parameters()) == 20_099


def test_output_has_the_input_size():
    for h, w in [(33, 33), (17, 40), (1, 1)]:
        assert SRCNN()(torch.rand(2, 3, h, w)).shape == (2, 3, h, w)


def test_forward_matches_an_independent_reference():
    """A hand-built network that passes each channel through the centre taps computes relu(x) * k:
    checks the layer order, the ReLUs, the paddings and that the last layer has no activation."""
    m = SRCNN()
    with torch.no_grad():
        for conv in (m.patch_extraction, m.nonlinear_mapping, m.reconstruction):
            conv.weight.zero_()
            conv.bias.zero_()
        for c in range(3):
            m.patch_extraction.weight[c, c, 4, 4] = 2.0
            m.nonlinear_mapping.weight[c, c, 0, 0] = 1.5
            m.reconstruction.weight[c, c, 2, 2] = -1.0
        m.reconstruction.bias.fill_(0.25)
    x = torch.randn(1, 3, 12, 10)
    expected = -(x.clamp(min=0) * 3.0) + 0.25
    torch.testing.assert_close(m(x), expected)


def test_borders_see_zero_padding_only():
    """A 9x9 all-ones kernel at a corner sums the 5x5 in-image part of its window."""
    m = SRCNN()
    with torch.no_grad():
        for conv in (m.patch_extraction, m.nonlinear_mapping, m.reconstruction):
            conv.weight.zero_()
            conv.bias.zero_()
        m.patch_extraction.weight[0, 0] = 1.0
        m.nonlinear_mapping.weight[0, 0] = 1.0
        m.reconstruction.weight[0, 0, 2, 2] = 1.0
    out = m(torch.ones(1, 3, 20, 20))
    assert out[0, 0, 0, 0] == 25 and out[0, 0, 10, 10] == 81
