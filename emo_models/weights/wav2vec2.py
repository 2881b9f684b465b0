"""wav2vec2 audio encoder weights: a transformers folder, or one file as ComfyUI keeps them.

ComfyUI's ``models/audio_encoders`` files (e.g. ``wav2vec2_base_fp16.safetensors`` for Wan S2V) use
the transformers ``Wav2Vec2Model`` key names, optionally under ``wav2vec2.`` (as saved from
``Wav2Vec2ForCTC``); ComfyUI strips that prefix and so do we. The positional convolution's weight
norm may be stored the legacy way (``weight_g``/``weight_v``) or as parametrizations; both load.
A single file carries no config, so it is inferred from the tensor shapes.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

from .safe_load import WeightsError, load_component, no_weights_error, read_state_dict, strip_prefix

logger = logging.getLogger(__name__)

COMPONENT = "wav2vec2"
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")
SHARD_INDEX_NAMES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
EXPECTED_KEYS = ("feature_extractor.conv_layers.*", "feature_projection.projection.weight", "encoder.layers.*")
_POS_CONV = "encoder.pos_conv_embed.conv."
_LEGACY_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
_MARKER = "feature_projection.projection.weight"
_REQUIRED = (_MARKER, "encoder.layers.0.feed_forward.intermediate_dense.weight", "feature_extractor.conv_layers.0.conv.weight")
_STANDARD_STRIDES = (5, 2, 2, 2, 2, 2, 2)
# Attention heads of the released widths (a file does not record them): base 768/12, large and
# XLS-R 300M 1024/16, XLS-R 1B 1280/16, XLS-R 2B 1920/16; other widths: width / 64.
RELEASED_HEADS = {768: 12, 1024: 16, 1280: 16, 1920: 16}
# (width, layers) -> the released family a layout matches; stable layer norm tells large models apart.
RELEASED_LAYOUTS = {(768, 12): "base", (1024, 24): "large", (1280, 48): "XLS-R 1B", (1920, 48): "XLS-R 2B"}


def normalize_wav2vec2_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip a ``wav2vec2.`` prefix and rename legacy weight-norm keys to transformers' current names."""
    if any(k.startswith("wav2vec2.") for k in state_dict):
        state_dict = strip_prefix(state_dict, "wav2vec2.")
    renamed = {}
    for key, value in state_dict.items():
        if key.startswith(_POS_CONV) and key[len(_POS_CONV):] in _LEGACY_WEIGHT_NORM:
            key = _POS_CONV + _LEGACY_WEIGHT_NORM[key[len(_POS_CONV):]]
        renamed[key] = value
    return renamed


def _indices(state_dict: dict[str, torch.Tensor], pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for k in state_dict if (m := re.match(pattern, k))})


def infer_wav2vec2_config(state_dict: dict[str, torch.Tensor], overrides: dict[str, Any] | None = None):
    """A ``Wav2Vec2Config`` that fits a normalized state dict's tensor shapes.

    Inferred: hidden size, layer count, intermediate size, conv dims/kernels/bias, positional-conv
    kernel and groups, ``feat_extract_norm`` ("layer" when every conv layer has a LayerNorm).
    Assumed: heads of the released widths (:data:`RELEASED_HEADS`, else hidden / 64), ``do_stable_layer_norm`` = layer-norm
    feature extractor (true of lv60/XLSR "large" models, false of base and large-960h), the standard
    conv strides for 7 conv layers. ``overrides`` (e.g. an EMOConfig's ``audio_encoder``) win.
    """
    from transformers import Wav2Vec2Config

    convs = _indices(state_dict, r"feature_extractor\.conv_layers\.(\d+)\.conv\.weight$")
    conv_weights = [state_dict[f"feature_extractor.conv_layers.{i}.conv.weight"] for i in convs]
    hidden = state_dict[_MARKER].shape[0]
    pos_conv = state_dict.get(_POS_CONV + _LEGACY_WEIGHT_NORM["weight_v"])
    layer_norm = "feature_extractor.conv_layers.1.layer_norm.weight" in state_dict
    values: dict[str, Any] = dict(
        hidden_size=hidden,
        num_hidden_layers=len(_indices(state_dict, r"encoder\.layers\.(\d+)\.")),
        num_attention_heads=RELEASED_HEADS.get(hidden, max(1, hidden // 64)),
        intermediate_size=state_dict["encoder.layers.0.feed_forward.intermediate_dense.weight"].shape[0],
        conv_dim=[w.shape[0] for w in conv_weights],
        conv_kernel=[w.shape[2] for w in conv_weights],
        conv_bias=f"feature_extractor.conv_layers.{convs[-1]}.conv.bias" in state_dict,
        feat_extract_norm="layer" if layer_norm else "group",
        do_stable_layer_norm=layer_norm,
    )
    if pos_conv is not None:
        values.update(num_conv_pos_embeddings=pos_conv.shape[2], num_conv_pos_embedding_groups=hidden // pos_conv.shape[1])
    values.update(overrides or {})
    if len(values["conv_dim"]) != len(_STANDARD_STRIDES) and "conv_stride" not in values:
        raise WeightsError(f"wav2vec2: {len(values['conv_dim'])} conv layers, not the standard 7; "
                           "pass conv_stride in config_overrides")
    return Wav2Vec2Config(**values)


def wav2vec2_variant(config) -> str:
    """What a ``Wav2Vec2Config`` is, in words: the released layout it matches (base, large, XLS-R 1B/2B)
    or "custom", with its layer count, width, heads and normalisation order."""
    family = RELEASED_LAYOUTS.get((config.hidden_size, config.num_hidden_layers), "custom")
    if family == "large":
        family += (" (LV-60 / XLSR-53 / XLS-R 300M layout)" if config.do_stable_layer_norm
                   else " (960h layout)")
    norm = "stable layer norm (pre-norm)" if config.do_stable_layer_norm else "post-norm"
    return (f"wav2vec2 {family}: {config.num_hidden_layers} layers, width {config.hidden_size}, "
            f"{config.num_attention_heads} head{'s' * (config.num_attention_heads != 1)}, {norm}, "
            f"feature extractor norm {config.feat_extract_norm!r}")


def _folder_weights(folder: Path) -> tuple[dict[str, torch.Tensor], str]:
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return read_state_dict(folder / name), str(folder / name)
    for name in SHARD_INDEX_NAMES:
        if (folder / name).is_file():
            shards = sorted(set(json.loads((folder / name).read_text())["weight_map"].values()))
            return {k: v for shard in shards for k, v in read_state_dict(folder / shard).items()}, str(folder / name)
    raise WeightsError(f"{folder}: no wav2vec2 weights found; expected one of {', '.join(WEIGHT_NAMES + SHARD_INDEX_NAMES)} "
                       "beside config.json (a transformers model folder)")


def _folder_config(folder: Path, overrides: dict[str, Any] | None):
    from transformers import Wav2Vec2Config

    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise WeightsError(f"{folder}: cannot read config.json ({err}); expected a transformers wav2vec2 folder") from err
    if data.get("model_type") != "wav2vec2":
        raise WeightsError(f"{folder}/config.json: model_type {data.get('model_type')!r}; expected 'wav2vec2' "
                           "(e.g. facebook/wav2vec2-base-960h)")
    return Wav2Vec2Config.from_dict({**data, **(overrides or {})})


def read_wav2vec2(path: str | Path, config_overrides: dict[str, Any] | None = None):
    """``(Wav2Vec2Config, normalized state dict, source)`` from a transformers folder or one file.

    Refuses a file that holds no wav2vec2 weights with a :class:`WeightsError`.
    """
    path = Path(path)
    if path.is_dir():
        state_dict, source = _folder_weights(path)
    else:
        state_dict, source = read_state_dict(path), str(path)
    state_dict = normalize_wav2vec2_keys(state_dict)
    if not all(k in state_dict for k in _REQUIRED):
        raise no_weights_error(source, COMPONENT, state_dict, EXPECTED_KEYS)
    if path.is_dir():
        config = _folder_config(path, config_overrides)
    else:
        config = infer_wav2vec2_config(state_dict, config_overrides)
    return config, state_dict, source


def load_wav2vec2(path: str | Path, config_overrides: dict[str, Any] | None = None):
    """A transformers ``Wav2Vec2Model`` in eval mode, from a folder or a single file; no network.

    path: a transformers folder (``config.json`` + ``model.safetensors``/``pytorch_model.bin``) or a
    ``.safetensors``/``.bin`` file (ComfyUI ``models/audio_encoders``). ``config_overrides`` replace
    config fields (for a file, the inferred ones). Input ``(B, samples)`` at 16 kHz.
    """
    from transformers import Wav2Vec2Model

    config, state_dict, source = read_wav2vec2(path, config_overrides)
    model = Wav2Vec2Model(config)
    report = load_component(model, state_dict, COMPONENT, source, allow_missing=lambda k: k == "masked_spec_embed")
    logger.info("%s", report)
    return model.eval()
