"""FVD's I3D (Inception-v1 inflated to 3-D, Kinetics-400), keyed like pytorch-i3d's weights.

No maintained PyPI package ships an importable I3D for FVD: the reference FVD is TensorFlow
(TF-Hub ``i3d-kinetics-400``), StyleGAN-V's port is a TorchScript file (running it executes code from
the file), and the plain-state-dict port is piergiaj/pytorch-i3d's ``InceptionI3d``, which VideoGPT
ships converted from the TF-Hub model as ``i3d_pretrained_400.pt``. This module has exactly that
class's layers and key names (``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_3b.b1b.bn.running_mean``,
``logits.conv3d.bias`` ...) and its TF-style "same" padding, so the file loads strictly as tensors.
FVD reads the 400 logits averaged over time, as the TF reference and VideoGPT do.
``width`` scales every channel count (1.0 = the published net; tests use tiny ones).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .weights import channels, published_sizes

FVD_INPUT_SIZE = 224
FVD_CLIP_FRAMES = 16

# (name, out channels of branches b0, b1a, b1b, b2a, b2b, b3b) for each Inception module; None = max pool
_LAYOUT = (
    ("MaxPool3d_3a_3x3", ((1, 3, 3), (1, 2, 2))),
    ("Mixed_3b", (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("MaxPool3d_4a_3x3", ((3, 3, 3), (2, 2, 2))),
    ("Mixed_4b", (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("MaxPool3d_5a_2x2", ((2, 2, 2), (2, 2, 2))),
    ("Mixed_5b", (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", (384, 192, 384, 48, 128, 128)),
)


def _same_pad(x: torch.Tensor, kernel, stride) -> torch.Tensor:
    """TensorFlow "SAME" padding of (B, C, T, H, W) for a kernel and stride (extra cell at the end)."""
    pads = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


class MaxPool3dSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x):
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class Unit3D(nn.Module):
    """"same"-padded Conv3d (+ BatchNorm eps 1e-5) (+ ReLU), pytorch-i3d's building block."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), norm: bool = True,
                 relu: bool = True, bias: bool = False):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-5, momentum=0.001) if norm else None

    def forward(self, x):
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class InceptionModule(nn.Module):
    def __init__(self, cin: int, outs):
        super().__init__()
        self.b0 = Unit3D(cin, outs[0])
        self.b1a = Unit3D(cin, outs[1])
        self.b1b = Unit3D(outs[1], outs[2], kernel=(3, 3, 3))
        self.b2a = Unit3D(cin, outs[3])
        self.b2b = Unit3D(outs[3], outs[4], kernel=(3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, outs[5])
        self.out_channels = outs[0] + outs[2] + outs[4] + outs[5]

    def forward(self, x):
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class InceptionI3d(nn.Module):
    """clips (B, 3, T, H, W) in [-1, 1] -> logits (B, num_classes), averaged over time.

    The published net reads T = 16 frames of 224x224 (the 2x7x7 average pool needs at least that).
    """

    def __init__(self, num_classes: int = 400, width: float = 1.0):
        super().__init__()
        c = lambda n: channels(n, width)  # noqa: E731
        self.Conv3d_1a_7x7 = Unit3D(3, c(64), kernel=(7, 7, 7), stride=(2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(c(64), c(64))
        self.Conv3d_2c_3x3 = Unit3D(c(64), c(192), kernel=(3, 3, 3))
        self.blocks = ["Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3"]
        cin = c(192)
        for name, spec in _LAYOUT:
            if name.startswith("MaxPool"):
                block = MaxPool3dSame(*spec)
            else:
                block = InceptionModule(cin, [c(n) for n in spec])
                cin = block.out_channels
            self.add_module(name, block)
            self.blocks.append(name)
        self.logits = Unit3D(cin, num_classes, norm=False, relu=False, bias=True)

    @classmethod
    def from_state_dict(cls, state_dict: dict[str, torch.Tensor]) -> InceptionI3d:
        """The module whose widths fit a pytorch-i3d-layout state dict."""
        width, classes = published_sizes(state_dict, "I3D", "i3d_pretrained_400.pt (pytorch-i3d layout)",
                                         ("Conv3d_1a_7x7.conv3d.weight", 64), "logits.conv3d.weight")
        return cls(num_classes=classes, width=width)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        x = clips
        for name in self.blocks:
            x = getattr(self, name)(x)
        x = F.avg_pool3d(x, kernel_size=(2, 7, 7), stride=1)
        return self.logits(x).mean(dim=(3, 4)).mean(dim=2)
