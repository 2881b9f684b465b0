"""Reference-attention: the backbone's self-attention also attends to the ReferenceNet's features.

Two attention processors share one :class:`ReferenceBank`:
- :class:`ReferenceWriteProcessor` sits on every ``attn1`` of the ReferenceNet and records its input
  (the block's normalised hidden states) while the ReferenceNet runs once on the reference latent;
- :class:`ReferenceAttnProcessor` sits on the same ``attn1`` of the backbone and attends over
  ``[frame tokens ; reference tokens]`` (keys and values concatenated on the token axis).
Both are plain diffusers attention processors: the UNets they sit in stay stock. With the clip's
:class:`~emo_models.clip_cache.ClipCache` the reference tokens' keys and values are projected once per
clip, not once per frame per step.
"""

from __future__ import annotations

import torch
from diffusers.models.attention_processor import Attention, AttnProcessor2_0
from einops import repeat

from .clip_cache import attention_output, project_keys_values, split_heads


class ReferenceBank:
    """Shared state between the ReferenceNet's writers and the backbone's readers.

    recording: name -> (b, hw, c) captured while ``capturing`` is True.
    reference: name -> (v, hw, c) read by the backbone; frames: frames per video in the backbone batch;
    use_reference: (v,) bool, False rows attend to themselves only (classifier-free guidance).
    cache: the :class:`~emo_models.clip_cache.ClipCache` of the denoise call in progress, or None.
    tiled: frame row i of the (v·f) batch reads reference i mod v instead of its own video's (Hallo's
    batching: ``reference.repeat`` over frames).
    """

    def __init__(self):
        self.capturing = False
        self.recording: dict[str, torch.Tensor] = {}
        self.reference: dict[str, torch.Tensor] | None = None
        self.frames = 1
        self.use_reference: torch.Tensor | None = None
        self.cache = None
        self.tiled = False

    def clear(self) -> None:
        """Forget everything recorded or set, so no state outlives a call."""
        self.capturing = False
        self.recording = {}
        self.reference = None
        self.frames = 1
        self.use_reference = None
        self.cache = None
        self.tiled = False


def attend(attn: Attention, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    """Multi-head attention with ``attn``'s projections. queries: (b, n, c); context: (b, m, c) -> (b, n, c)."""
    return attention_output(attn, split_heads(attn, attn.to_q(queries)), *project_keys_values(attn, context))


class ReferenceWriteProcessor(AttnProcessor2_0):
    """ReferenceNet ``attn1``: record the input under ``name`` when the bank is capturing, then self-attend."""

    def __init__(self, name: str, bank: ReferenceBank):
        super().__init__()
        self.name, self.bank = name, bank

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if self.bank.capturing:
            self.bank.recording[self.name] = hidden_states
        return super().__call__(attn, hidden_states, *args, **kwargs)


class ReferenceAttnProcessor(AttnProcessor2_0):
    """Backbone ``attn1``: self-attention whose keys/values also hold the reference's tokens.

    hidden_states: (v·f, hw, c); bank.reference[name]: (v, hw_ref, c) -> (v·f, hw, c).
    With no reference set it is exactly diffusers' ``AttnProcessor2_0``.
    """

    def __init__(self, name: str, bank: ReferenceBank):
        super().__init__()
        self.name, self.bank = name, bank

    def __call__(self, attn: Attention, hidden_states: torch.Tensor, encoder_hidden_states=None,
                 attention_mask=None, *args, **kwargs) -> torch.Tensor:
        bank = self.bank
        if bank.reference is None or encoder_hidden_states is not None:
            return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, *args, **kwargs)
        if bank.cache is not None and not bank.tiled:  # tiled (Hallo's) pairing: the plain path below
            return self._with_clip_cache(attn, hidden_states)
        layout = "v n c -> (f v) n c" if bank.tiled else "v n c -> (v f) n c"
        reference = repeat(bank.reference[self.name].to(hidden_states.dtype), layout, f=bank.frames)
        if reference.shape[0] != hidden_states.shape[0]:
            raise RuntimeError(
                f"reference-attention {self.name}: {reference.shape[0]} reference rows for "
                f"{hidden_states.shape[0]} frames; the reference batch must match the videos being denoised"
            )
        if bank.use_reference is None or bool(bank.use_reference.all()):
            return attend(attn, hidden_states, torch.cat([hidden_states, reference], dim=1))
        rows = repeat(bank.use_reference.to(hidden_states.device), "v -> (v f)", f=bank.frames)
        out = torch.empty_like(hidden_states)
        with_ref, without = hidden_states[rows], hidden_states[~rows]
        if with_ref.shape[0]:
            out[rows] = attend(attn, with_ref, torch.cat([with_ref, reference[rows]], dim=1))
        if without.shape[0]:
            out[~rows] = attend(attn, without, without)
        return out

    def _with_clip_cache(self, attn: Attention, hidden_states: torch.Tensor) -> torch.Tensor:
        """The same attention, the reference's keys/values read from the clip cache (projected on its
        first step, for the videos that attend to the reference only)."""
        bank, f = self.bank, self.bank.frames
        reference = bank.reference[self.name]
        if reference.shape[0] * f != hidden_states.shape[0]:
            raise RuntimeError(
                f"reference-attention {self.name}: {reference.shape[0]} reference rows for "
                f"{hidden_states.shape[0]} frames; the reference batch must match the videos being denoised"
            )
        use = None if bank.use_reference is None else bank.use_reference.bool().cpu()  # None: every video
        sources = (reference, bank.use_reference, hidden_states.dtype)
        ref_keys, ref_values = bank.cache.memo(attn, "reference", sources, lambda: project_keys_values(
            attn, (reference if use is None else reference[use.to(reference.device)]).to(hidden_states.dtype)))
        q, k, v = (split_heads(attn, p(hidden_states)) for p in (attn.to_q, attn.to_k, attn.to_v))
        with_ref = lambda x, ref: torch.cat([x, repeat(ref, "v h n d -> (v f) h n d", f=f)], dim=2)  # noqa: E731
        if use is None or bool(use.all()):
            return attention_output(attn, q, with_ref(k, ref_keys), with_ref(v, ref_values))
        rows = repeat(use, "v -> (v f)", f=f).to(q.device)
        out = torch.empty_like(hidden_states)
        if bool(use.any()):
            out[rows] = attention_output(attn, q[rows], with_ref(k[rows], ref_keys), with_ref(v[rows], ref_values))
        out[~rows] = attention_output(attn, q[~rows], k[~rows], v[~rows])
        return out


def self_attention_names(unet: torch.nn.Module) -> list[str]:
    """Names of every transformer block's self-attention (``…transformer_blocks.k.attn1``) in a UNet."""
    return [name for name, module in unet.named_modules() if isinstance(module, Attention) and name.endswith("attn1")]


def install_reference_attention(backbone: torch.nn.Module, reference_net: torch.nn.Module,
                                bank: ReferenceBank) -> None:
    """Put writers on the ReferenceNet's and readers on the backbone's ``attn1`` processors."""
    for unet, processor in ((reference_net, ReferenceWriteProcessor), (backbone, ReferenceAttnProcessor)):
        processors = {}
        for name, current in unet.attn_processors.items():
            layer = name.removesuffix(".processor")
            processors[name] = processor(layer, bank) if layer.endswith("attn1") else current
        unet.set_attn_processor(processors)
