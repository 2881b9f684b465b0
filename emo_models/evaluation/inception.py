"""FID's Inception-v3 (the TF 2015-12-05 graph as pytorch-fid ports it), keyed like its weights file.

Why our own module: pytorch-fid, torch-fidelity and torchmetrics all build this network from
torchvision (pytorch-fid subclasses its blocks; torch-fidelity and torchmetrics import it at package
import), and torchvision is neither a dependency of ours nor importable beside every torch build
(here: torch 2.13 CPU); torch-fidelity also loads its file with ``weights_only=False``. This module
has exactly the layers and key names of pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``
(``Conv2d_1a_3x3.conv.weight`` ... ``Mixed_7c.branch_pool.bn.running_var``, ``fc``), with pytorch-fid's
FID-specific pooling (average pools that exclude padding; max pool in the last block), so that file
loads strictly as a plain state dict and gives pytorch-fid's 2048-d pool3 features.
``width`` scales every channel count (1.0 = the published net; tests use tiny ones).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .weights import channels, published_sizes

FID_INPUT_SIZE = 299
FEATURE_DIM = 2048


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm (eps 1e-3) -> ReLU."""

    def __init__(self, cin: int, cout: int, **conv):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **conv)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x):
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin: int, pool: int, w: float):
        super().__init__()
        c = lambda n: channels(n, w)  # noqa: E731
        self.branch1x1 = BasicConv2d(cin, c(64), kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, c(48), kernel_size=1)
        self.branch5x5_2 = BasicConv2d(c(48), c(64), kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(64), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, c(pool), kernel_size=1)
        self.out_channels = 2 * c(64) + c(96) + c(pool)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg_pool(x))], 1)


class InceptionB(nn.Module):
    def __init__(self, cin: int, w: float):
        super().__init__()
        c = lambda n: channels(n, w)  # noqa: E731
        self.branch3x3 = BasicConv2d(cin, c(384), kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(64), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(c(64), c(96), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(c(96), c(96), kernel_size=3, stride=2)
        self.out_channels = c(384) + c(96) + cin

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionC(nn.Module):
    def __init__(self, cin: int, c7: int, w: float):
        super().__init__()
        c = lambda n: channels(n, w)  # noqa: E731
        c7 = c(c7)
        row, col = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
        self.branch1x1 = BasicConv2d(cin, c(192), kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, **row)
        self.branch7x7_3 = BasicConv2d(c7, c(192), **col)
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **row)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_5 = BasicConv2d(c7, c(192), **row)
        self.branch_pool = BasicConv2d(cin, c(192), kernel_size=1)
        self.out_channels = 4 * c(192)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d7 = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            d7 = layer(d7)
        return torch.cat([self.branch1x1(x), b7, d7, self.branch_pool(_avg_pool(x))], 1)


class InceptionD(nn.Module):
    def __init__(self, cin: int, w: float):
        super().__init__()
        c = lambda n: channels(n, w)  # noqa: E731
        self.branch3x3_1 = BasicConv2d(cin, c(192), kernel_size=1)
        self.branch3x3_2 = BasicConv2d(c(192), c(320), kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, c(192), kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(c(192), c(192), kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(c(192), c(192), kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(c(192), c(192), kernel_size=3, stride=2)
        self.out_channels = c(320) + c(192) + cin

    def forward(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """The last blocks; ``max_pool`` picks the pooling branch pytorch-fid's FIDInceptionE_2 uses."""

    def __init__(self, cin: int, w: float, max_pool: bool):
        super().__init__()
        c = lambda n: channels(n, w)  # noqa: E731
        row, col = dict(kernel_size=(1, 3), padding=(0, 1)), dict(kernel_size=(3, 1), padding=(1, 0))
        self.branch1x1 = BasicConv2d(cin, c(320), kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, c(384), kernel_size=1)
        self.branch3x3_2a = BasicConv2d(c(384), c(384), **row)
        self.branch3x3_2b = BasicConv2d(c(384), c(384), **col)
        self.branch3x3dbl_1 = BasicConv2d(cin, c(448), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(c(448), c(384), kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(c(384), c(384), **row)
        self.branch3x3dbl_3b = BasicConv2d(c(384), c(384), **col)
        self.branch_pool = BasicConv2d(cin, c(192), kernel_size=1)
        self.max_pool = max_pool
        self.out_channels = c(320) + 4 * c(384) + c(192)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        d3 = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(b3), self.branch3x3_2b(b3),
                          self.branch3x3dbl_3a(d3), self.branch3x3dbl_3b(d3), self.branch_pool(pooled)], 1)


class FIDInceptionV3(nn.Module):
    """images (B, 3, H, W) in [0, 1] -> pool3 features (B, 2048·width).

    Images are resized to 299x299 (bilinear, as pytorch-fid) and mapped to [-1, 1] inside.
    """

    def __init__(self, width: float = 1.0, num_classes: int = 1008):
        super().__init__()
        c = lambda n: channels(n, width)  # noqa: E731
        self.Conv2d_1a_3x3 = BasicConv2d(3, c(32), kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(c(32), c(32), kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(c(32), c(64), kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(c(64), c(80), kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(c(80), c(192), kernel_size=3)
        blocks, cin = [], c(192)
        for name, make in (("Mixed_5b", lambda i: InceptionA(i, 32, width)), ("Mixed_5c", lambda i: InceptionA(i, 64, width)),
                           ("Mixed_5d", lambda i: InceptionA(i, 64, width)), ("Mixed_6a", lambda i: InceptionB(i, width)),
                           ("Mixed_6b", lambda i: InceptionC(i, 128, width)), ("Mixed_6c", lambda i: InceptionC(i, 160, width)),
                           ("Mixed_6d", lambda i: InceptionC(i, 160, width)), ("Mixed_6e", lambda i: InceptionC(i, 192, width)),
                           ("Mixed_7a", lambda i: InceptionD(i, width)), ("Mixed_7b", lambda i: InceptionE(i, width, False)),
                           ("Mixed_7c", lambda i: InceptionE(i, width, True))):
            block = make(cin)
            self.add_module(name, block)
            blocks.append(name)
            cin = block.out_channels
        self.blocks = blocks
        self.feature_dim = cin
        self.fc = nn.Linear(cin, num_classes)  # in the weights file; unused by FID

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> FIDInceptionV3:
        """The module whose widths fit a pytorch-fid-layout state dict."""
        width, classes = published_sizes(state_dict, "FID Inception", "pt_inception-2015-12-05-6726825d.pth "
                                         "(pytorch-fid)", ("Conv2d_1a_3x3.conv.weight", 32), "fc.weight")
        return cls(width=width, num_classes=classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images, size=(FID_INPUT_SIZE, FID_INPUT_SIZE), mode="bilinear", align_corners=False)
        x = 2 * x - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), kernel_size=3, stride=2)
        for name in self.blocks:
            x = getattr(self, name)(x)
        return x.mean(dim=(2, 3))
