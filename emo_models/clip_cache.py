"""Work that is constant over a clip's denoising steps, done once per clip: the per-clip cache.

Every denoising step of a clip reads the same reference tokens, motion-frame features and audio tokens,
so their key/value projections (and anything else a module derives from them alone) are the same at
every step. A :class:`ClipCache` is built once per clip for that clip's condition batch
(:meth:`~emo_models.model.EMOModel.clip_cache`) and handed to each
:meth:`~emo_models.model.EMOModel.denoise` call of the clip; a module or attention processor asks it
for such a value with :meth:`ClipCache.memo` (computed on the first step, read on every later one).
The cache lives with the caller, not in the model: when the clip is done it is dropped and the model
holds nothing of it. Any model family's module uses it the same way:
``keys, values = cache.memo(attn, "context", lambda: project_keys_values(attn, context))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from einops import rearrange


class ClipCache:
    """Per-clip values keyed by (module, kind), for the one condition batch it was built for.

    condition: the :class:`~emo_models.model.ClipCondition` the values derive from (denoise refuses a
    cache built for another one). computed: how many values were computed so far (tests count them).
    """

    def __init__(self, condition: Any):
        self.condition = condition
        self.computed = 0
        self._values: dict[tuple[torch.nn.Module, str], Any] = {}

    def memo(self, owner: torch.nn.Module, kind: str, compute: Callable[[], Any]) -> Any:
        """``owner``'s value ``kind`` for this clip: ``compute()`` on the first request, the stored result after."""
        key = (owner, kind)  # modules hash by identity
        if key not in self._values:
            self._values[key] = compute()
            self.computed += 1
        return self._values[key]


def split_heads(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """(b, n, heads·d) -> (b, heads, n, d) for ``attn``'s heads."""
    return rearrange(x, "b n (h d) -> b h n d", h=attn.heads)


def project_keys_values(attn: Attention, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``attn``'s keys and values of context tokens. context: (b, m, c) -> ((b, heads, m, d), (b, heads, m, d))."""
    return split_heads(attn, attn.to_k(context)), split_heads(attn, attn.to_v(context))


def attention_output(attn: Attention, queries: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Scaled-dot-product attention then ``attn``'s output projection.

    queries: (b, heads, n, d); keys, values: (b, heads, m, d) -> (b, n, heads·d)
    """
    out = F.scaled_dot_product_attention(queries, keys, values)
    return attn.to_out[1](attn.to_out[0](rearrange(out, "b h n d -> b n (h d)")))
