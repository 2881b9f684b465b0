"""Whisper audio-encoder weights: openai's checkpoint (``whisper_tiny.pt``, as EchoMimic ships it) or a
transformers Whisper file, converted to transformers' ``WhisperEncoder`` keys.

openai's file is ``{"dims": {...}, "model_state_dict": {...}}`` (read with ``weights_only=True``); its
encoder keys ``encoder.{conv1, conv2, positional_embedding, blocks.i.{attn.{query,key,value,out},
attn_ln, mlp.0, mlp.2, mlp_ln}, ln_post}`` map one to one onto ``{conv1, conv2, embed_positions.weight,
layers.i.{self_attn.{q,k,v,out}_proj, self_attn_layer_norm, fc1, fc2, final_layer_norm}, layer_norm}``.
The text decoder's weights are not needed and are dropped. The config is read from the shapes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from .safe_load import WeightsError, load_component, no_weights_error, read_state_dict

COMPONENT = "Whisper audio encoder"
EXPECTED_KEYS = ("encoder.conv1.weight", "encoder.blocks.0.attn.query.weight", "encoder.positional_embedding")
_BLOCK = {"attn.query": "self_attn.q_proj", "attn.key": "self_attn.k_proj", "attn.value": "self_attn.v_proj",
          "attn.out": "self_attn.out_proj", "attn_ln": "self_attn_layer_norm", "mlp.0": "fc1", "mlp.2": "fc2",
          "mlp_ln": "final_layer_norm"}
_OPENAI_BLOCK = re.compile(r"^encoder\.blocks\.(\d+)\.(attn\.query|attn\.key|attn\.value|attn\.out|attn_ln|mlp\.0|mlp\.2|mlp_ln)\.(.+)$")


def is_openai_whisper(state_dict: dict[str, torch.Tensor]) -> bool:
    """True for openai Whisper keys (``encoder.blocks.*``, ``encoder.positional_embedding``)."""
    return "encoder.positional_embedding" in state_dict


def convert_openai_whisper(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """openai Whisper keys -> transformers ``WhisperEncoder`` keys (decoder keys dropped)."""
    out = {}
    for key, value in state_dict.items():
        if (m := _OPENAI_BLOCK.match(key)):
            out[f"layers.{m.group(1)}.{_BLOCK[m.group(2)]}.{m.group(3)}"] = value
        elif key == "encoder.positional_embedding":
            out["embed_positions.weight"] = value
        elif key.startswith("encoder.ln_post."):
            out["layer_norm." + key.removeprefix("encoder.ln_post.")] = value
        elif key.startswith(("encoder.conv1.", "encoder.conv2.")):
            out[key.removeprefix("encoder.")] = value
    return out


def encoder_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A Whisper file's encoder tensors in ``WhisperEncoder`` keys (openai or transformers layout)."""
    if is_openai_whisper(state_dict):
        return convert_openai_whisper(state_dict)
    for prefix in ("model.encoder.", "encoder."):
        inner = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if "conv1.weight" in inner:
            return inner
    return dict(state_dict)


def whisper_encoder_config(encoder: dict[str, torch.Tensor]) -> dict[str, Any]:
    """``WhisperConfig`` kwargs that fit an encoder state dict (heads = width / 64, as every release)."""
    layers = {int(m.group(1)) for k in encoder if (m := re.match(r"layers\.(\d+)\.", k))}
    d_model, mels = encoder["conv1.weight"].shape[:2]
    return dict(d_model=int(d_model), num_mel_bins=int(mels), encoder_layers=len(layers),
                encoder_attention_heads=max(1, int(d_model) // 64),
                encoder_ffn_dim=int(encoder["layers.0.fc1.weight"].shape[0]) if layers else 4 * int(d_model),
                max_source_positions=int(encoder["embed_positions.weight"].shape[0]))


def read_whisper(path: str | Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(WhisperConfig kwargs, WhisperEncoder state dict)`` from openai's ``.pt`` or a transformers file.

    Refuses a file without Whisper encoder weights with a :class:`WeightsError`.
    """
    state_dict = read_state_dict(path)
    encoder = encoder_state_dict(state_dict)
    required = ("conv1.weight", "conv2.weight", "embed_positions.weight", "layers.0.fc1.weight")
    if not all(k in encoder for k in required):
        raise no_weights_error(str(path), COMPONENT, state_dict, EXPECTED_KEYS)
    return whisper_encoder_config(encoder), encoder


def load_whisper_encoder(path: str | Path, config: dict[str, Any] | None = None):
    """A transformers ``WhisperEncoder`` (eval) with the file's weights; ``config`` checks the size."""
    from ..whisper_audio import build_whisper_encoder

    found, encoder = read_whisper(path)
    if config is not None:
        wrong = {k: (found[k], config[k]) for k in found if k in config and config[k] != found[k]}
        if wrong:
            raise WeightsError(f"{path}: a Whisper encoder of another size ({wrong}, file vs config); "
                               "give the whisper_tiny.pt the model was trained with")
    model = build_whisper_encoder({**found, **(config or {})})
    load_component(model, encoder, COMPONENT, str(path))
    return model.eval()
