"""Identity tokens: a face-recognition embedding turned into a few tokens the UNets' cross-attention reads.

Hallo feeds the 512-d ArcFace embedding of the reference face (InsightFace ``glintr100``, not
normalised) through one linear layer and a LayerNorm (its ``imageproj``); the denoiser and the
ReferenceNet attend to the resulting tokens in every transformer block's ``attn2``. The unconditional
branch of guidance reads the projection of a zero embedding (which is not zero: the bias and the
LayerNorm remain).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from .config import EMOConfig


class IdentityProjection(nn.Module):
    """embedding: (b, identity_dim) -> identity tokens (b, K, D), D = the UNets' cross-attention width."""

    def __init__(self, config: EMOConfig):
        super().__init__()
        self.tokens, self.dim = config.identity_tokens, config.cross_attention_dim
        self.proj = nn.Linear(config.identity_dim, self.tokens * self.dim)
        self.norm = nn.LayerNorm(self.dim)

    def forward(self, embedding: torch.Tensor) -> torch.Tensor:
        x = self.proj(embedding.to(self.proj.weight.dtype))
        return self.norm(rearrange(x, "b (k d) -> b k d", k=self.tokens))
