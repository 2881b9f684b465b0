"""Temporal modules: AnimateDiff-style self-attention along the frame axis, with speed cross-attention.

The parameter names are AnimateDiff's own (``mm_sd_v15_v2``): a :class:`TemporalModules` state dict has
keys ``down_blocks.{i}.motion_modules.{j}.temporal_transformer.…``, so motion-module files load into it
directly. Only the speed layers (``speed_norm``, ``speed_attention``) are new; their output projection
starts at zero, so a freshly loaded motion module behaves exactly as AnimateDiff's.

GroupNorm runs per frame on ``(b·f, c, h, w)``, as the original AnimateDiff does. The positional
encoding is computed, not stored; ``temporal_positions`` rounds it to the precision a checkpoint
kept it in (a model that loaded fp16-stored encodings ran with those values).
"""

from __future__ import annotations

import math

import torch
from diffusers.models.attention import FeedForward
from diffusers.models.attention_processor import Attention
from einops import rearrange
from torch import nn

from .config import EMOConfig


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """AnimateDiff's positional encoding: (1, length, dim), sin on even channels, cos on odd."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(position * div_term)
    pe[0, :, 1::2] = torch.cos(position * div_term)
    return pe


class TemporalSelfAttention(Attention):
    """Self-attention over frames with AnimateDiff's positional encoding added to its input.

    hidden: (b·hw, f, c) -> (b·hw, f, c)
    """

    def __init__(self, dim: int, heads: int, max_frames: int):
        super().__init__(query_dim=dim, heads=heads, dim_head=dim // heads, bias=False)
        self.register_buffer("positions", sinusoidal_positions(max_frames, dim), persistent=False)

    def forward(self, hidden_states: torch.Tensor, **kwargs) -> torch.Tensor:
        frames = hidden_states.shape[1]
        if frames > self.positions.shape[1]:
            raise ValueError(
                f"temporal module: {frames} frames (motion frames + frames per clip) exceed the "
                f"{self.positions.shape[1]} positions of its encoding; use fewer frames per clip"
            )
        hidden_states = hidden_states + self.positions[:, :frames].to(hidden_states.dtype)
        return super().forward(hidden_states)


class SpeedAttention(nn.Module):
    """Cross-attention from each frame's tokens to that frame's speed tokens.

    hidden: (b, hw, f, c); speed: (b, f, k, c_speed) -> (b, hw, f, c). Keys and values are computed
    once per frame, not once per pixel, so memory stays O(b·hw·f·k).
    """

    def __init__(self, dim: int, speed_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(speed_dim, dim, bias=False)
        self.to_v = nn.Linear(speed_dim, dim, bias=False)
        self.to_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, hidden: torch.Tensor, speed: torch.Tensor) -> torch.Tensor:
        q = rearrange(self.to_q(hidden), "b n f (h d) -> b n f h d", h=self.heads)
        k = rearrange(self.to_k(speed), "b f k (h d) -> b f k h d", h=self.heads)
        v = rearrange(self.to_v(speed), "b f k (h d) -> b f k h d", h=self.heads)
        scores = torch.einsum("bnfhd,bfkhd->bnfhk", q, k) / math.sqrt(q.shape[-1])
        out = torch.einsum("bnfhk,bfkhd->bnfhd", scores.softmax(dim=-1), v)
        return self.to_out(rearrange(out, "b n f h d -> b n f (h d)"))


class TemporalTransformerBlock(nn.Module):
    """Two temporal self-attentions, speed cross-attention, feed-forward; pre-norm, residual.

    hidden: (b, hw, f, c); speed: (b, f, k, c_speed) or None -> (b, hw, f, c)
    """

    def __init__(self, dim: int, heads: int, max_frames: int, speed_dim: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList(TemporalSelfAttention(dim, heads, max_frames) for _ in range(2))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))
        self.speed_norm = nn.LayerNorm(dim)
        self.speed_attention = SpeedAttention(dim, speed_dim, heads)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, hidden: torch.Tensor, speed: torch.Tensor | None) -> torch.Tensor:
        b, n = hidden.shape[:2]
        for attention, norm in zip(self.attention_blocks, self.norms):
            frames_as_sequence = rearrange(norm(hidden), "b n f c -> (b n) f c")
            hidden = hidden + rearrange(attention(frames_as_sequence), "(b n) f c -> b n f c", b=b)
        if speed is not None:
            hidden = hidden + self.speed_attention(self.speed_norm(hidden), speed)
        return hidden + self.ff(self.ff_norm(hidden))


class TemporalTransformer(nn.Module):
    """GroupNorm per frame, project in, temporal blocks, project out (zero-initialised), residual.

    x: (b·f, c, h, w) -> (b·f, c, h, w)
    """

    def __init__(self, dim: int, heads: int, max_frames: int, speed_dim: int, groups: int = 32):
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(dim, heads, max_frames, speed_dim)])
        self.proj_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, frames: int, speed: torch.Tensor | None) -> torch.Tensor:
        h, w = x.shape[-2:]
        hidden = rearrange(self.norm(x), "(b f) c h w -> b (h w) f c", f=frames)
        hidden = self.proj_in(hidden)
        for block in self.transformer_blocks:
            hidden = block(hidden, speed)
        hidden = self.proj_out(hidden)
        return x + rearrange(hidden, "b (h w) f c -> (b f) c h w", h=h, w=w)


class TemporalModule(nn.Module):
    """One AnimateDiff motion module with EMO's motion-frame context.

    x: (b·f, c, h, w); motion: (b, n, c, h, w) ReferenceNet features of the previous clip's last n
    frames at this position (or None); speed: (b, f, k, c_speed) or None -> (b·f, c, h, w).
    Motion frames are prepended on the frame axis, attended over, then sliced off.
    """

    def __init__(self, dim: int, heads: int, max_frames: int, speed_dim: int, groups: int = 32):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(dim, heads, max_frames, speed_dim, groups)

    def forward(self, x, frames: int, motion: torch.Tensor | None = None, speed: torch.Tensor | None = None):
        if motion is None:
            return self.temporal_transformer(x, frames, speed)
        n = motion.shape[1]
        video = rearrange(x, "(b f) c h w -> b f c h w", f=frames)
        video = torch.cat([motion.to(x.dtype), video], dim=1)
        if speed is not None:
            speed = torch.cat([speed[:, :1].expand(-1, n, -1, -1), speed], dim=1)
        out = self.temporal_transformer(rearrange(video, "b f c h w -> (b f) c h w"), frames + n, speed)
        return rearrange(rearrange(out, "(b f) c h w -> b f c h w", f=frames + n)[:, n:], "b f c h w -> (b f) c h w")


def motion_module_sites(unet_config: dict) -> list[tuple[str, str, int]]:
    """Where AnimateDiff puts motion modules in an SD-shaped UNet, in forward order.

    Returns (motion module name, name of the UNet layer it follows, channels), e.g.
    ("down_blocks.0.motion_modules.1", "down_blocks.0.attentions.1", 320).
    """
    channels = list(unet_config["block_out_channels"])
    layers = unet_config["layers_per_block"]
    sites = []
    for i, kind in enumerate(unet_config["down_block_types"]):
        layer = "attentions" if "CrossAttn" in kind else "resnets"
        sites += [(f"down_blocks.{i}.motion_modules.{j}", f"down_blocks.{i}.{layer}.{j}", channels[i])
                  for j in range(layers)]
    sites.append(("mid_block.motion_modules.0", "mid_block.attentions.0", channels[-1]))
    for i, kind in enumerate(unet_config["up_block_types"]):
        layer = "attentions" if "CrossAttn" in kind else "resnets"
        sites += [(f"up_blocks.{i}.motion_modules.{j}", f"up_blocks.{i}.{layer}.{j}", channels[::-1][i])
                  for j in range(layers + 1)]
    return sites


class TemporalModules(nn.Module):
    """All motion modules of the backbone, laid out so the state dict matches AnimateDiff's keys."""

    def __init__(self, config: EMOConfig):
        super().__init__()
        groups = config.unet.get("norm_num_groups", 32)

        def block(names: list[tuple[str, int]]) -> nn.Module:
            holder = nn.Module()
            holder.motion_modules = nn.ModuleList(
                TemporalModule(c, config.temporal_heads, config.temporal_max_frames, config.speed_dim, groups)
                for _, c in names
            )
            return holder

        self.sites = motion_module_sites(config.unet)
        by_block: dict[str, list] = {}
        for name, _, channels in self.sites:
            by_block.setdefault(name.rsplit(".motion_modules", 1)[0], []).append((name, channels))
        self.down_blocks = nn.ModuleList(block(by_block[f"down_blocks.{i}"])
                                         for i in range(len(config.unet["down_block_types"])))
        self.mid_block = block(by_block["mid_block"])
        self.up_blocks = nn.ModuleList(block(by_block[f"up_blocks.{i}"])
                                       for i in range(len(config.unet["up_block_types"])))
        if config.temporal_positions != "float32":  # the encoding as a checkpoint stored it (EchoMimic, Hallo: fp16)
            stored = getattr(torch, config.temporal_positions)
            for attention in self.modules():
                if isinstance(attention, TemporalSelfAttention):
                    attention.positions = attention.positions.to(stored).float()

    def module(self, name: str) -> TemporalModule:
        """The motion module called ``name`` (e.g. ``up_blocks.1.motion_modules.2``)."""
        return self.get_submodule(name)


def is_speed_parameter(key: str) -> bool:
    """True for the speed layers inside temporal modules (not part of AnimateDiff files)."""
    return ".speed_norm." in key or ".speed_attention." in key


def new_speed_layers_(temporal: nn.Module) -> None:
    """Give every temporal block new speed layers (output projection at zero: speed has no effect until
    trained), e.g. after loading motion modules that have none into a model built on the meta device."""
    for block in temporal.modules():
        if isinstance(block, TemporalTransformerBlock):
            attention = block.speed_attention
            dim, speed_dim = attention.to_q.in_features, attention.to_k.in_features
            block.speed_norm = nn.LayerNorm(dim)
            block.speed_attention = SpeedAttention(dim, speed_dim, attention.heads)


__all__ = [
    "TemporalModule",
    "TemporalModules",
    "SpeedAttention",
    "motion_module_sites",
    "is_speed_parameter",
    "new_speed_layers_",
    "sinusoidal_positions",
]
