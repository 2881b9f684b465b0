"""Face locator: where the face may move, as a residual on the backbone's first feature map.

The union of the face boxes over a clip is a mask; a few strided convs bring it to latent resolution
and a zero-initialised last conv maps it to the backbone's first width, so a new face locator changes
nothing until it is trained. Layout as Hallo/EchoMimic: ``conv_in``, ``blocks.0..5``, ``conv_out``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import EMOConfig


class FaceLocator(nn.Module):
    """mask: (b, 1, H, W) in [0, 1] -> (b, C0, H/8, W/8), C0 = the backbone's first block width."""

    def __init__(self, config: EMOConfig):
        super().__init__()
        channels = config.face_locator_channels
        self.conv_in = nn.Conv2d(config.face_locator_in, channels[0], 3, padding=1)
        blocks = []
        for c_in, c_out in zip(channels[:-1], channels[1:]):
            blocks.append(nn.Conv2d(c_in, c_in, 3, padding=1))
            blocks.append(nn.Conv2d(c_in, c_out, 3, padding=1, stride=2))
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], config.unet["block_out_channels"][0], 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        x = mask.to(self.conv_in.weight.dtype)
        if x.shape[1] != self.conv_in.in_channels:
            x = x[:, :1].expand(-1, self.conv_in.in_channels, -1, -1)
        x = F.silu(self.conv_in(x))
        for block in self.blocks:
            x = F.silu(block(x))
        return self.conv_out(x)
