"""The SRCNN network of Dong, Loy, He and Tang, "Image super-resolution using deep
convolutional networks", IEEE TPAMI 38(2), 2016: by default the 9-1-5 variant with 64 and 32 filters."""
from torch import nn


class SRCNN(nn.Module):
    """Three convolutions that map a bicubic-upscaled image to a sharper one of the same size.

    Input:  (N, C, H, W) float tensor, the low-resolution image already upscaled with bicubic
            interpolation, values in [0, 1].
    Output: (N, C, H, W) float tensor, same size, values roughly in [0, 1] (not clamped).

    The defaults are the exact network of the assignment: 3 -> 64 (9x9) -> ReLU -> 32 (1x1) -> ReLU -> 3 (5x5);
    20,099 parameters. ``n1``, ``n2`` (filters) and ``f1``, ``f2``, ``f3`` (odd kernel sides) give the paper's
    other variants, e.g. its 9-5-5 with ``f2=5``. The paddings (f // 2) keep the output the size of the input.
    """

    def __init__(self, num_channels=3, n1=64, n2=32, f1=9, f2=1, f3=5):
        super().__init__()
        if not all(f % 2 for f in (f1, f2, f3)):
            raise ValueError(f"kernel sides must be odd to keep the image size, got {f1}-{f2}-{f3}")
        self.init_kwargs = dict(num_channels=num_channels, n1=n1, n2=n2, f1=f1, f2=f2, f3=f3)  # saved in checkpoints
        self.patch_extraction = nn.Conv2d(num_channels, n1, f1, padding=f1 // 2)
        self.nonlinear_mapping = nn.Conv2d(n1, n2, f2, padding=f2 // 2)
        self.reconstruction = nn.Conv2d(n2, num_channels, f3, padding=f3 // 2)
        self.relu = nn.ReLU(inplace=True)

    @property
    def convs(self):
        """The three convolutions in the order the image meets them; the last is the reconstruction layer,
        the only one without a ReLU after it."""
        return self.patch_extraction, self.nonlinear_mapping, self.reconstruction

    @property
    def num_channels(self):
        return self.init_kwargs["num_channels"]

    @property
    def receptive_radius(self):
        """Pixels either side of an output pixel that reach it: 4 + 0 + 2 = 6 for the 9-1-5 (a 13-pixel field)."""
        return sum(conv.kernel_size[0] // 2 for conv in self.convs)

    @property
    def device(self):
        return self.patch_extraction.weight.device

    @property
    def dtype(self):
        return self.patch_extraction.weight.dtype

    def forward(self, x):
        x = self.relu(self.patch_extraction(x))
        x = self.relu(self.nonlinear_mapping(x))
        return self.reconstruction(x)
