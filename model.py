"""The SRCNN network of Dong, Loy, He and Tang, "Image super-resolution using deep
convolutional networks", IEEE TPAMI 38(2), 2016: the 9-1-5 variant with 64 and 32 filters."""
from torch import nn


class SRCNN(nn.Module):
    """Three convolutions that map a bicubic-upscaled image to a sharper one of the same size.

    Input:  (N, C, H, W) float tensor, the low-resolution image already upscaled x3 with bicubic
            interpolation, values in [0, 1].
    Output: (N, C, H, W) float tensor, same size, values roughly in [0, 1] (not clamped).

    The paddings (f // 2) keep the output the size of the input. The defaults are the exact
    network of the assignment: 3 -> 64 (9x9) -> ReLU -> 32 (1x1) -> ReLU -> 3 (5x5); 20,099 parameters.
    The receptive field is f1 + f2 + f3 - 2 = 13 pixels.
    """

    def __init__(self, num_channels=3, n1=64, n2=32, f1=9, f2=1, f3=5):
        super().__init__()
        self.init_kwargs = dict(num_channels=num_channels, n1=n1, n2=n2, f1=f1, f2=f2, f3=f3)  # saved in checkpoints
        self.patch_extraction = nn.Conv2d(num_channels, n1, f1, padding=f1 // 2)
        self.nonlinear_mapping = nn.Conv2d(n1, n2, f2, padding=f2 // 2)
        self.reconstruction = nn.Conv2d(n2, num_channels, f3, padding=f3 // 2)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.relu(self.patch_extraction(x))
        x = self.relu(self.nonlinear_mapping(x))
        return self.reconstruction(x)
