"""Temporal modules: AnimateDiff-style self-attention along the frame axis, with speed cross-attention.

The parameter names are AnimateDiff's own (``mm_sd_v15_v2``): a :class:`TemporalModules` state dict has
keys ``down_blocks.{i}.motion_modules.{j}.temporal_transformer.…``, so motion-module files load into it
directly. Only the speed layers (``speed_norm``, ``speed_attention``) are new; their output projection
starts at zero, so a freshly loaded motion module behaves exactly as AnimateDiff's.

GroupNorm runs per frame on ``(b·f, c, h, w)``, as the original AnimateDiff does. The positional
encoding is computed, not stored; ``temporal_positions`` rounds it to the precision a checkpoint
kept it in (a model that loaded fp16-stored encodings ran with those values). Motion frames (the
previous clip's last n frames, prepended on the frame axis) are constant over a clip: with the clip's
:class:`~emo_models.clip_cache.ClipCache` their first-attention inputs, queries, keys and values are
computed once per clip (:class:`MotionContext`), and per step only what the clip's own rows read of them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
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
        return super().forward(self.positioned(hidden_states))

    def positioned(self, hidden: torch.Tensor, start: int = 0) -> torch.Tensor:
        """hidden: (..., f, c) frames start .. start+f -> the same with their positional encoding added."""
        end = start + hidden.shape[-2]
        if end > self.positions.shape[1]:
            raise ValueError(
                f"temporal module: {end} frames (motion frames + frames per clip) exceed the "
                f"{self.positions.shape[1]} positions of its encoding; use fewer frames per clip"
            )
        return hidden + self.positions[0, start:end].to(hidden.dtype)

    def attend(self, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Attention along frames from projected tokens, then the output projection.

        queries: (b, n, f_q, c); keys, values: (b, n, f_k, c) -> (b, n, f_q, c)
        """
        b = queries.shape[0]
        q, k, v = (rearrange(x, "b n f (h d) -> (b n) h f d", h=self.heads) for x in (queries, keys, values))
        out = rearrange(F.scaled_dot_product_attention(q, k, v), "(b n) h f d -> b n f (h d)", b=b)
        return self.to_out[1](self.to_out[0](out))


class MotionContext(NamedTuple):
    """What the motion frames contribute to a temporal transformer, constant over a clip.

    hidden: (b, hw, n, c) motion rows after ``proj_in``; query, key, value: (b, hw, n, c) their
    projections in the first temporal attention.
    """

    hidden: torch.Tensor
    query: torch.Tensor
    key: torch.Tensor
    value: torch.Tensor


class SpeedAttention(nn.Module):
    """Cross-attention from each frame's tokens to that frame's speed tokens.

    hidden: (b, hw, f, c); speed: (b, f, k, c_speed) -> (b, hw, f, c). Keys and values are computed
    once per frame, not once per pixel, so memory stays O(b·hw·f·k); with the clip's ``cache`` once per clip.
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

    def forward(self, hidden: torch.Tensor, speed: torch.Tensor, cache=None) -> torch.Tensor:
        b = hidden.shape[0]
        q = rearrange(self.to_q(hidden), "b n f (h d) -> (b f) h n d", h=self.heads)
        k, v = self.keys_values(speed) if cache is None else cache.memo(
            self, "speed", (speed,), lambda: self.keys_values(speed))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(rearrange(out, "(b f) h n d -> b n f (h d)", b=b))

    def keys_values(self, speed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """speed: (b, f, k, c_speed) -> keys, values ((b·f), heads, k, d)."""
        return tuple(rearrange(p(speed), "b f k (h d) -> (b f) h k d", h=self.heads) for p in (self.to_k, self.to_v))


class TemporalTransformerBlock(nn.Module):
    """Two temporal self-attentions, speed cross-attention, feed-forward; pre-norm, residual.

    hidden: (b, hw, f, c); speed: (b, f, k, c_speed) or None -> (b, hw, f, c); cache: the clip's
    :class:`~emo_models.clip_cache.ClipCache` or None.
    """

    def __init__(self, dim: int, heads: int, max_frames: int, speed_dim: int):
        super().__init__()
        self.attention_blocks = nn.ModuleList(TemporalSelfAttention(dim, heads, max_frames) for _ in range(2))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))
        self.speed_norm = nn.LayerNorm(dim)
        self.speed_attention = SpeedAttention(dim, speed_dim, heads)
        self.ff = FeedForward(dim, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, hidden: torch.Tensor, speed: torch.Tensor | None, cache=None) -> torch.Tensor:
        b, n = hidden.shape[:2]
        for attention, norm in zip(self.attention_blocks, self.norms):
            frames_as_sequence = rearrange(norm(hidden), "b n f c -> (b n) f c")
            hidden = hidden + rearrange(attention(frames_as_sequence), "(b n) f c -> b n f c", b=b)
        return self._speed_and_feed_forward(hidden, speed, cache)

    def forward_after_motion(self, clip: torch.Tensor, context: MotionContext, speed: torch.Tensor | None, cache=None):
        """:meth:`forward` over [motion rows ; clip rows] with the motion rows sliced off, computing of
        the motion rows only what the clip's rows read: their keys/values in each attention, and their
        queries in all but the last. The first attention's motion-row inputs come from ``context``.

        clip: (b, hw, f, c); context: the motion rows' :class:`MotionContext`; speed: (b, f, k, c_s)
        or None -> (b, hw, f, c)
        """
        n, last = context.hidden.shape[2], len(self.attention_blocks) - 1
        hidden = torch.cat([context.hidden, clip], dim=2)
        for i, (attention, norm) in enumerate(zip(self.attention_blocks, self.norms)):
            skip = n if i == last else 0  # rows whose output nobody reads after this attention
            if i == 0:
                clip_in = attention.positioned(norm(clip), start=n)
                q, k, v = (torch.cat([c, p(clip_in)], dim=2) for c, p in
                           zip(context[1:], (attention.to_q, attention.to_k, attention.to_v)))
                q = q[:, :, skip:]
            else:
                rows_in = attention.positioned(norm(hidden))
                q, k, v = attention.to_q(rows_in[:, :, skip:]), attention.to_k(rows_in), attention.to_v(rows_in)
            hidden = hidden[:, :, skip:] + attention.attend(q, k, v)
        return self._speed_and_feed_forward(hidden, speed, cache)

    def _speed_and_feed_forward(self, hidden: torch.Tensor, speed: torch.Tensor | None, cache) -> torch.Tensor:
        if speed is not None:
            hidden = hidden + self.speed_attention(self.speed_norm(hidden), speed, cache)
        return hidden + feed_forward_in_pieces(self.ff, self.ff_norm(hidden))


def feed_forward_in_pieces(ff: nn.Module, hidden: torch.Tensor, rows: int = 1024) -> torch.Tensor:
    """``ff`` (position-wise) over ``rows`` spatial positions at a time: the same numbers as one call,
    without its whole 4x-wide GEGLU intermediate at once (at 512x512 two 12-frame videos' 4,096 positions
    would hold ~1.5 GB). hidden: (b, hw, f, c) -> (b, hw, f, c)."""
    return torch.cat([ff(piece) for piece in hidden.split(rows, dim=1)], dim=1)


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

    def forward(self, x: torch.Tensor, frames: int, speed: torch.Tensor | None, cache=None) -> torch.Tensor:
        hidden = self._project_in(x, frames)
        for block in self.transformer_blocks:
            hidden = block(hidden, speed, cache)
        return self._project_out(x, hidden)

    def motion_context(self, motion: torch.Tensor) -> MotionContext:
        """motion: (b, n, c, h, w) motion frames -> their :class:`MotionContext` (once per clip). A batch
        that repeats one clip's motion frames (an expanded view: the guidance branches) is computed once."""
        if motion.shape[0] > 1 and motion.stride(0) == 0:
            return MotionContext(*(x.expand(motion.shape[0], *x.shape[1:]) for x in self.motion_context(motion[:1])))
        hidden = self._project_in(rearrange(motion, "b n c h w -> (b n) c h w"), motion.shape[1])
        block = self.transformer_blocks[0]
        attention = block.attention_blocks[0]
        rows_in = attention.positioned(block.norms[0](hidden))
        return MotionContext(hidden, attention.to_q(rows_in), attention.to_k(rows_in), attention.to_v(rows_in))

    def forward_after_motion(self, x: torch.Tensor, frames: int, context: MotionContext,
                             speed: torch.Tensor | None, cache=None) -> torch.Tensor:
        """The clip rows of :meth:`forward` over [motion frames ; clip], the motion frames given as their
        :class:`MotionContext`. x: (b·f, c, h, w); speed: (b, f, k, c_s) or None -> (b·f, c, h, w)."""
        if len(self.transformer_blocks) != 1:
            raise NotImplementedError("motion context with more than one temporal transformer block per module")
        hidden = self.transformer_blocks[0].forward_after_motion(self._project_in(x, frames), context, speed, cache)
        return self._project_out(x, hidden)

    def _project_in(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """(b·f, c, h, w) -> GroupNorm per frame, proj_in -> (b, hw, f, c)."""
        return self.proj_in(rearrange(self.norm(x), "(b f) c h w -> b (h w) f c", f=frames))

    def _project_out(self, x: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """x: (b·f, c, h, w) + proj_out(hidden (b, hw, f, c)) -> (b·f, c, h, w)."""
        return x + rearrange(self.proj_out(hidden), "b (h w) f c -> (b f) c h w", h=x.shape[-2])


class TemporalModule(nn.Module):
    """One AnimateDiff motion module with EMO's motion-frame context.

    x: (b·f, c, h, w); motion: (b, n, c, h, w) ReferenceNet features of the previous clip's last n
    frames at this position (or None); speed: (b, f, k, c_speed) or None -> (b·f, c, h, w).
    Motion frames are prepended on the frame axis, attended over, then sliced off. With the clip's
    ``cache`` (:class:`~emo_models.clip_cache.ClipCache`) their constant part is computed once per clip.
    """

    def __init__(self, dim: int, heads: int, max_frames: int, speed_dim: int, groups: int = 32):
        super().__init__()
        self.temporal_transformer = TemporalTransformer(dim, heads, max_frames, speed_dim, groups)

    def forward(self, x, frames: int, motion: torch.Tensor | None = None, speed: torch.Tensor | None = None,
                cache=None):
        if motion is None:
            return self.temporal_transformer(x, frames, speed, cache)
        if cache is not None:
            transformer = self.temporal_transformer
            context = cache.memo(self, "motion", (motion, x.dtype),
                                 lambda: transformer.motion_context(motion.to(x.dtype)))
            return transformer.forward_after_motion(x, frames, context, speed, cache)
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
    "MotionContext",
    "TemporalModule",
    "TemporalModules",
    "SpeedAttention",
    "motion_module_sites",
    "is_speed_parameter",
    "new_speed_layers_",
    "sinusoidal_positions",
]
