"""Speed layers' encoder: head-rotation speed per frame → tokens for the temporal modules.

Each speed w (degrees/frame) is spread over d buckets ``s_i = tanh((w − c_i) / r_i · 3)`` with centres
c_i evenly covering [0, speed_max] and radii r_i the bucket spacing; every frame's buckets are stacked
with its ±m neighbours and an MLP maps them to k tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .config import EMOConfig


class SpeedEncoder(nn.Module):
    """speed: (b, f) degrees/frame -> tokens (b, f, k, speed_dim)."""

    def __init__(self, config: EMOConfig):
        super().__init__()
        d, m = config.speed_buckets, config.audio_window
        self.window, self.tokens = m, config.speed_tokens
        self.register_buffer("centres", torch.linspace(0.0, config.speed_max, d), persistent=False)
        self.register_buffer("radii", torch.full((d,), config.speed_max / max(d - 1, 1)), persistent=False)
        self.mlp = nn.Sequential(
            nn.Linear((2 * m + 1) * d, config.speed_dim),
            nn.SiLU(),
            nn.Linear(config.speed_dim, config.speed_tokens * config.speed_dim),
        )
        self.norm = nn.LayerNorm(config.speed_dim)

    def buckets(self, speed: torch.Tensor) -> torch.Tensor:
        """speed: (b, f) -> (b, f, d) bucket activations in (-1, 1)."""
        return torch.tanh((speed[..., None].float() - self.centres) / self.radii * 3)

    def forward(self, speed: torch.Tensor) -> torch.Tensor:
        if not torch.isfinite(speed).all():
            raise ValueError("speed: NaN or infinite values; give head speeds in degrees/frame (0.1-1.3 typical)")
        buckets = self.buckets(speed)  # (b, f, d)
        m = self.window
        padded = F.pad(rearrange(buckets, "b f d -> b d f"), (m, m), mode="replicate")
        windows = padded.unfold(-1, 2 * m + 1, 1)  # (b, d, f, 2m+1)
        x = rearrange(windows, "b d f w -> b f (w d)").to(self.mlp[0].weight.dtype)
        return self.norm(rearrange(self.mlp(x), "b f (k c) -> b f k c", k=self.tokens))
