"""Work that is constant over a clip's denoising steps, done once per clip: the per-clip cache.

Every denoising step of a clip reads the same reference tokens, motion-frame features and audio tokens,
so their key/value projections (and anything else a module derives from them alone) are the same at
every step. A :class:`ClipCache` (:meth:`~emo_models.model.EMOModel.clip_cache`) is handed to each
:meth:`~emo_models.model.EMOModel.denoise` call of a clip; a module or attention processor asks it for
such a value with :meth:`ClipCache.memo`, naming the tensors the value derives from: it is computed on
the first request and read while later requests name the same tensors (the same objects), recomputed
when they name others. So one cache may serve the steps of a clip, or all the windows and steps of the
``context_windows`` sampler (the reference is the same object in every window, the audio tokens are
not), and a cache handed over with other inputs can only cost time, never give other numbers.
The cache lives with the caller, not in the model: when the clip is done it is dropped and the model
holds nothing of it. Any model family's module uses it the same way:
``keys, values = cache.memo(attn, "context", (context,), lambda: project_keys_values(attn, context))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention
from einops import rearrange


class ClipCache:
    """Values keyed by (module, kind), each kept with the inputs it was computed from.

    computed: how many values were computed so far (tests count them).
    """

    def __init__(self):
        self.computed = 0
        self._values: dict[tuple[torch.nn.Module, str], tuple[tuple, Any]] = {}

    def memo(self, owner: torch.nn.Module, kind: str, inputs: tuple, compute: Callable[[], Any]) -> Any:
        """``owner``'s value ``kind`` of ``inputs``: ``compute()`` unless the stored value was computed from
        the same inputs (tensors: the same objects; anything else: equal), which is then returned.

        The stored inputs are kept alive with the value, so an object id is never reused meanwhile;
        a tensor changed in place after the first request is not noticed (conditions are not changed).
        """
        key = (owner, kind)  # modules hash by identity
        stored = self._values.get(key)
        if stored is None or not _same_inputs(stored[0], inputs):
            self._values[key] = (inputs, compute())
            self.computed += 1
        return self._values[key][1]


def _same_inputs(a: tuple, b: tuple) -> bool:
    """Tensors the same objects, anything else equal, position by position."""
    return len(a) == len(b) and all(
        x is y if isinstance(x, torch.Tensor) or isinstance(y, torch.Tensor) else x == y for x, y in zip(a, b))


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


def constant_rows(attn: Attention, context: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The rows whose context tokens are all equal (a dropped condition's zero tokens) and their attention
    output, which is the same whatever the queries: equal keys give equal weights, and the weighted mean
    of equal values is that value.

    context: (b, m, c); values: ``attn``'s values of it (b, heads, m, d)
    -> (rows (b,) bool, their output (r, 1, heads·d after to_out)), or None when there are none.
    """
    rows = (context == context[:, :1]).flatten(1).all(dim=1)
    if not bool(rows.any()):
        return None
    value = rearrange(values[rows][:, :, :1], "b h n d -> b n (h d)")
    return rows, attn.to_out[1](attn.to_out[0](value))


def cross_attention(attn: Attention, hidden: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
                    constant: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """``attn`` over projected context keys/values, the rows in ``constant`` (:func:`constant_rows`) given
    their output without computing it. hidden: (b, n, c); keys, values: (b, heads, m, d) -> (b, n, c_out)."""
    if constant is None:
        return attention_output(attn, split_heads(attn, attn.to_q(hidden)), keys, values)
    rows, output = constant
    out = hidden.new_empty(*hidden.shape[:2], output.shape[-1])
    out[rows] = output.to(hidden.dtype)
    live = ~rows
    if bool(live.any()):
        out[live] = attention_output(attn, split_heads(attn, attn.to_q(hidden[live])), keys[live], values[live])
    return out
