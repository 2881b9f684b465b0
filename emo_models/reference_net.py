"""The ReferenceNet's construction and the layer geometry both UNets share."""

from __future__ import annotations

from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from torch import nn

from .config import EMOConfig


def build_reference_net(config: EMOConfig) -> UNet2DConditionModel:
    """The ReferenceNet: a stock UNet of the backbone's layout, optionally without cross-attention
    (``attn2``/``norm2`` set to None: diffusers' blocks then skip it) or output layers (``conv_norm_out``
    None, ``conv_out`` an identity: only its attention inputs are ever read)."""
    unet = UNet2DConditionModel(**config.unet)
    if not config.reference_net_attn2:
        for module in unet.modules():
            if isinstance(module, BasicTransformerBlock):
                module.attn2, module.norm2 = None, None
    if not config.reference_net_conv_out:
        unet.conv_norm_out, unet.conv_out = None, nn.Identity()
    return unet


def block_downscale(unet: UNet2DConditionModel, block: nn.Module) -> int:
    """How many times smaller than the latent a block's layer outputs are."""
    downs = list(unet.down_blocks)
    if block in downs:
        return 2 ** downs.index(block)
    if block is unet.mid_block:
        return 2 ** (len(downs) - 1)
    ups = list(unet.up_blocks)
    return 2 ** (len(downs) - 1 - ups.index(block))
