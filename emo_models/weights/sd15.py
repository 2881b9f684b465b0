"""SD-1.5 UNet and VAE weights, from every layout users keep them in, as diffusers state dicts.

Layouts read: the original single-file checkpoint (``v1-5-pruned-emaonly.safetensors`` / ``.ckpt``:
``model.diffusion_model.*``, ``first_stage_model.*``, ``cond_stage_model.*``), a bare LDM UNet or
VAE state dict (ComfyUI ``models/vae``: ``vae-ft-mse-840000-ema-pruned.safetensors``), a single
diffusers-layout file, and a diffusers folder (the pipeline folder or its ``unet``/``vae`` folder).
LDM keys are converted with diffusers' own converters; the result is checked against a model built
from the given config (on the meta device, so it costs no memory) before it is returned.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from .safe_load import WeightsError, check_state_dict, read_state_dict

LDM_UNET_PREFIX = "model.diffusion_model."
LDM_VAE_PREFIXES = ("first_stage_model.", "vae.")
DIFFUSERS_WEIGHT_NAMES = (
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.bin",
)
_LEGACY_VAE_ATTENTION = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
_SD2_ATTN2 = LDM_UNET_PREFIX + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


def find_diffusers_weights(folder: str | Path, subfolder: str) -> Path:
    """The weights file of a diffusers model folder: ``folder/subfolder/<name>`` or ``folder/<name>``."""
    folder = Path(folder)
    for base in (folder / subfolder, folder):
        for name in DIFFUSERS_WEIGHT_NAMES:
            if (base / name).is_file():
                return base / name
    raise WeightsError(f"{folder}: no {subfolder} weights found; expected {folder}/{subfolder}/{DIFFUSERS_WEIGHT_NAMES[0]} "
                       f"(a diffusers pipeline folder) or the {subfolder} folder itself holding one of "
                       f"{', '.join(DIFFUSERS_WEIGHT_NAMES)}")


def read_weights(path: str | Path, subfolder: str, device: str = "cpu") -> tuple[dict[str, torch.Tensor], str]:
    """Read a weights file, or the ``subfolder`` model of a diffusers folder: ``(state_dict, source)``."""
    path = Path(path)
    file = find_diffusers_weights(path, subfolder) if path.is_dir() else path
    return read_state_dict(file, device=device), str(file)


def foreign_family(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Name the model family of a single-file checkpoint that is clearly not SD-1.5, else None."""
    if any(k.startswith(("conditioner.embedders.", LDM_UNET_PREFIX + "label_emb.")) for k in state_dict):
        return "an SDXL checkpoint"
    if _SD2_ATTN2 in state_dict and state_dict[_SD2_ATTN2].shape[-1] == 1024:
        return "an SD-2.x checkpoint"
    from ..families import FAMILIES
    from .echomimic import describe_echomimic_file

    hallo = FAMILIES["hallo"]
    if hallo.looks_like(state_dict):
        return f"{hallo.title}'s weights, which load as its whole release folder ({hallo.layout})"
    echomimic = describe_echomimic_file(state_dict)
    return f"{echomimic}, which loads with its whole release folder (models/emo/<name>/)" if echomimic else None


def _refuse_foreign_family(state_dict: dict[str, torch.Tensor], source: str) -> None:
    family = foreign_family(state_dict)
    if family:
        raise WeightsError(f"{source}: looks like {family}; EMO builds on SD-1.5, give an SD-1.5 checkpoint "
                           "(ComfyUI models/checkpoints) or diffusers folder (models/diffusers)")


def convert_unet_state_dict(state_dict: dict[str, torch.Tensor], unet_config: dict[str, Any],
                            prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    """LDM UNet keys (``model.diffusion_model.*`` or bare ``input_blocks.*``) -> diffusers keys.

    A diffusers-layout dict (or anything unrecognised) is returned as is, for the caller's check
    to accept or refuse. ``prefer_ema``: a checkpoint holding both weights and ``model_ema.*`` gives
    the EMA weights (better for inference).
    """
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    if "input_blocks.0.0.weight" in state_dict:
        state_dict = {LDM_UNET_PREFIX + k: v for k, v in state_dict.items()}
    if not any(k.startswith(LDM_UNET_PREFIX) for k in state_dict):
        return dict(state_dict)
    converted = convert_ldm_unet_checkpoint(state_dict, dict(unet_config), extract_ema=prefer_ema)
    return {k: v for k, v in converted.items() if v is not None}


def convert_vae_state_dict(state_dict: dict[str, torch.Tensor], vae_config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """VAE keys in any layout -> diffusers ``AutoencoderKL`` keys.

    LDM layout (``encoder.down.*``, optionally under ``first_stage_model.`` or ``vae.``) goes through
    diffusers' converter (1x1 attention convs become linears); diffusers layout under those prefixes
    is unwrapped, and its legacy attention names (``query``/``key``/``value``/``proj_attn``) renamed.
    """
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    for prefix in (*LDM_VAE_PREFIXES, ""):
        inner = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        if "encoder.down.0.block.0.conv1.weight" in inner:
            return convert_ldm_vae_checkpoint(inner, dict(vae_config))
        if "encoder.down_blocks.0.resnets.0.conv1.weight" in inner:
            return {_rename_legacy_vae_attention(k): v for k, v in inner.items()}
    return dict(state_dict)


def _rename_legacy_vae_attention(key: str) -> str:
    head, sep, tail = key.partition("mid_block.attentions.0.")
    name, dot, rest = tail.partition(".")
    return f"{head}{sep}{_LEGACY_VAE_ATTENTION[name]}{dot}{rest}" if sep and name in _LEGACY_VAE_ATTENTION else key


@lru_cache(maxsize=8)
def _meta_shapes(kind: str, config_json: str) -> dict[str, torch.Size]:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    cls = {"unet": UNet2DConditionModel, "vae": AutoencoderKL}[kind]
    with torch.device("meta"):
        model = cls(**json.loads(config_json))
    return {k: v.shape for k, v in model.state_dict().items()}


def unet_shapes(unet_config: dict[str, Any]) -> dict[str, torch.Size]:
    """Key -> shape of ``UNet2DConditionModel(**unet_config)`` (built on meta, cached)."""
    return _meta_shapes("unet", json.dumps(unet_config, sort_keys=True))


def vae_shapes(vae_config: dict[str, Any]) -> dict[str, torch.Size]:
    """Key -> shape of ``AutoencoderKL(**vae_config)`` (built on meta, cached)."""
    return _meta_shapes("vae", json.dumps(vae_config, sort_keys=True))


def load_unet_state_dict(path: str | Path, unet_config: dict[str, Any], prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    """SD-1.5 UNet weights in diffusers ``UNet2DConditionModel`` layout, checked against ``unet_config``.

    path: a single-file checkpoint (``.safetensors``/``.ckpt``), a bare LDM or diffusers UNet file,
    a diffusers pipeline folder or its ``unet`` folder. Refuses SDXL/SD-2 files and files of other
    models with a :class:`WeightsError`; extra keys are kept for the caller's load report.
    """
    state_dict, source = read_weights(path, "unet")
    _refuse_foreign_family(state_dict, source)
    converted = convert_unet_state_dict(state_dict, unet_config, prefer_ema=prefer_ema)
    check_state_dict(unet_shapes(unet_config), converted, "unet", source)
    return converted


def load_vae_state_dict(path: str | Path, vae_config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """SD VAE weights in diffusers ``AutoencoderKL`` layout, checked against ``vae_config``.

    path: an SD-1.5 single file (``first_stage_model.*``), an LDM VAE file (ComfyUI ``models/vae``),
    a diffusers-layout VAE file, a diffusers pipeline folder or its ``vae`` folder.
    """
    state_dict, source = read_weights(path, "vae")
    _refuse_foreign_family(state_dict, source)
    converted = convert_vae_state_dict(state_dict, vae_config)
    check_state_dict(vae_shapes(vae_config), converted, "vae", source)
    return converted

