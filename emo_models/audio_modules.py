"""Audio-attention as separate blocks, weighted by face regions (Hallo's "audio modules").

One block follows each attention layer of the backbone (before its temporal module): GroupNorm, a
1x1 conv to the block's width, self-attention, then three cross-attentions from the frame's tokens to
that frame's audio tokens — ``full`` (pose), ``face`` and ``lip`` — whose outputs are multiplied by
soft region masks of that UNet depth, passed through zero-initialised 1x1 convs and summed with the
weights ``pose·full + face·face + lip·lip``; a feed-forward, a 1x1 conv back, and a residual.

Parameter names are Hallo's (``down_blocks.i.audio_modules.j.transformer_blocks.0.attn2_0...``), so its
weights load by prefix. The backbone around them stays a stock ``UNet2DConditionModel``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from einops import rearrange, repeat
from torch import nn

from .config import EMOConfig

REGIONS = ("full", "face", "lip")


@dataclass(frozen=True)
class RegionMasks:
    """Soft masks that weight the three audio-attention branches, one tensor per UNet depth.

    full, face, lip: depth d -> (v, h_d·w_d) in [0, 1], h_d = latent height / 2^d (row-major tokens).
    weights: (pose, face, lip) scales of the ``full``, ``face`` and ``lip`` branches.
    """

    full: tuple[torch.Tensor, ...]
    face: tuple[torch.Tensor, ...]
    lip: tuple[torch.Tensor, ...]
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def at(self, depth: int, frames: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """The three masks of ``depth``, one row per frame: 3 x (v·frames, h_d·w_d)."""
        return tuple(repeat(getattr(self, r)[depth].to(dtype), "v n -> (v f) n", f=frames) for r in REGIONS)

    def select(self, index: torch.Tensor | slice) -> RegionMasks:
        """The masks of a subset of the v videos."""
        return replace(self, **{r: tuple(m[index] for m in getattr(self, r)) for r in REGIONS})

    def to(self, device=None, dtype=None) -> RegionMasks:
        """The masks on ``device`` / ``dtype``."""
        return replace(self, **{r: tuple(m.to(device, dtype) for m in getattr(self, r)) for r in REGIONS})

    def repeat(self, videos: int) -> RegionMasks:
        """The masks of one video (v = 1) for ``videos`` videos (expanded views)."""
        return replace(self, **{r: tuple(m.expand(videos, -1) for m in getattr(self, r)) for r in REGIONS})


class AudioSite(NamedTuple):
    """Where an audio module sits: its name, the backbone layer it follows, widths, heads, mask depth."""

    name: str
    layer: str
    channels: int
    width: int
    heads: int
    depth: int


def audio_module_sites(unet_config: dict) -> list[AudioSite]:
    """One site per backbone attention layer, as Hallo builds them, in forward order.

    The inner width is ``heads · (c_in // heads)`` with c_in the block's input channels for a down
    block's first layer, its output channels after, the skip width for up blocks (narrower than the
    block in places, exactly as Hallo's weights are shaped). Depth: down i -> i, mid -> last, up i ->
    last - i (which region-mask resolution the module reads).
    """
    channels = list(unet_config["block_out_channels"])
    n = len(channels)
    heads = unet_config.get("attention_head_dim", 8)
    heads = list(heads) if isinstance(heads, (list, tuple)) else [heads] * n
    layers = unet_config["layers_per_block"]
    sites = []
    for i, kind in enumerate(unet_config["down_block_types"]):
        if "CrossAttn" in kind:
            for j in range(layers):
                c_in = (channels[i - 1] if i else channels[0]) if j == 0 else channels[i]
                width = heads[i] * (c_in // heads[i])
                sites.append(AudioSite(f"down_blocks.{i}.audio_modules.{j}", f"down_blocks.{i}.attentions.{j}",
                                       channels[i], width, heads[i], i))
    mid_width = heads[-1] * (channels[-1] // heads[-1])
    sites.append(AudioSite("mid_block.audio_modules.0", "mid_block.attentions.0", channels[-1], mid_width,
                           heads[-1], n - 1))
    reversed_channels, reversed_heads = channels[::-1], heads[::-1]
    for i, kind in enumerate(unet_config["up_block_types"]):
        if "CrossAttn" in kind:
            skip = reversed_channels[min(i + 1, n - 1)]
            width = reversed_heads[i] * (skip // reversed_heads[i])
            sites += [AudioSite(f"up_blocks.{i}.audio_modules.{j}", f"up_blocks.{i}.attentions.{j}",
                                reversed_channels[i], width, reversed_heads[i], n - 1 - i)
                      for j in range(layers + 1)]
    return sites


class RegionAudioBlock(nn.Module):
    """Self-attention, three region-weighted audio cross-attentions, feed-forward; pre-norm, residual.

    hidden: (b·f, hw, c); audio: (b·f, K, D); masks: 3 x (b·f, hw) -> (b·f, hw, c); (h, w) the map size.
    """

    def __init__(self, dim: int, heads: int, audio_dim: int):
        super().__init__()
        attention = dict(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        self.zero_conv_full, self.zero_conv_face, self.zero_conv_lip = (nn.Conv2d(dim, dim, 1) for _ in REGIONS)
        self.attn1 = Attention(**attention)
        self.norm1 = nn.LayerNorm(dim)
        self.attn2_0, self.attn2_1, self.attn2_2 = (Attention(cross_attention_dim=audio_dim, **attention)
                                                    for _ in REGIONS)
        self.norm2 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.norm3 = nn.LayerNorm(dim)
        for conv in (self.zero_conv_full, self.zero_conv_face, self.zero_conv_lip):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, hidden, audio, masks, weights, size: tuple[int, int]):
        hidden = self.attn1(self.norm1(hidden)) + hidden
        norm = self.norm2(hidden)
        branches = zip((self.attn2_0, self.attn2_1, self.attn2_2),
                       (self.zero_conv_full, self.zero_conv_face, self.zero_conv_lip), masks, weights)
        for attention, zero_conv, mask, weight in branches:
            region = rearrange(attention(norm, audio) * mask[:, :, None], "b (h w) c -> b c h w", h=size[0])
            hidden = hidden + weight * rearrange(zero_conv(region), "b c h w -> b (h w) c")
        return self.ff(self.norm3(hidden)) + hidden


class RegionAudioAttention(nn.Module):
    """One audio module: GroupNorm, 1x1 conv in, :class:`RegionAudioBlock`, 1x1 conv out, residual.

    x: (b·f, c, h, w); audio: (b·f, K, D); masks: 3 x (b·f, hw); weights: 3 floats -> (b·f, c, h, w)
    """

    def __init__(self, site: AudioSite, audio_dim: int, groups: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(groups, site.channels, eps=1e-6)
        self.proj_in = nn.Conv2d(site.channels, site.width, 1)
        self.transformer_blocks = nn.ModuleList([RegionAudioBlock(site.width, site.heads, audio_dim)])
        self.proj_out = nn.Conv2d(site.width, site.channels, 1)

    def forward(self, x, audio, masks, weights) -> torch.Tensor:
        h, w = x.shape[-2:]
        hidden = rearrange(self.proj_in(self.norm(x)), "b c h w -> b (h w) c")
        for block in self.transformer_blocks:
            hidden = block(hidden, audio, masks, weights, (h, w))
        return x + self.proj_out(rearrange(hidden, "b (h w) c -> b c h w", h=h))


class AudioModules(nn.Module):
    """All audio modules of the backbone, laid out so the state dict matches Hallo's ``audio_modules`` keys."""

    def __init__(self, config: EMOConfig):
        super().__init__()
        groups = config.unet.get("norm_num_groups", 32)
        self.sites = audio_module_sites(config.unet)
        by_block: dict[str, list[AudioSite]] = {}
        for site in self.sites:
            by_block.setdefault(site.name.rsplit(".audio_modules", 1)[0], []).append(site)

        def block(name: str) -> nn.Module:
            holder = nn.Module()
            holder.audio_modules = nn.ModuleList(RegionAudioAttention(s, config.audio_token_dim, groups)
                                                 for s in by_block.get(name, []))
            return holder

        self.down_blocks = nn.ModuleList(block(f"down_blocks.{i}") for i in range(len(config.unet["down_block_types"])))
        self.mid_block = block("mid_block")
        self.up_blocks = nn.ModuleList(block(f"up_blocks.{i}") for i in range(len(config.unet["up_block_types"])))

    def module(self, name: str) -> RegionAudioAttention:
        """The audio module called ``name`` (e.g. ``up_blocks.1.audio_modules.2``)."""
        return self.get_submodule(name)


__all__ = ["AudioModules", "AudioSite", "RegionAudioAttention", "RegionMasks", "audio_module_sites"]
