"""Tiny random-weight files in every real on-disk format our loaders read.

Each ``write_*`` builds the model from an :class:`EMOConfig` (normally ``tiny_config()``) with the
real diffusers/transformers class, gives every parameter a distinct random value (so a key mapped
to the wrong place shows), writes it in the original format, and returns the source state dict(s)
in the layout our loaders return, for comparison. The diffusers -> LDM key mappings here are the
inverse of diffusers' own converters (tests check the round trip at full SD-1.5 size too).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from emo_models.config import EMOConfig

LDM_UNET_PREFIX = "model.diffusion_model."
LDM_VAE_PREFIX = "first_stage_model."
_RESNET_TO_LDM = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
                  "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}
_VAE_ATTENTION_TO_LDM = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Give every parameter (norm scales and biases too) a distinct seeded random value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * std)
    return module.eval()


def state_dict_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Detached, cloned ``module.state_dict()``."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def tiny_unet(config: EMOConfig, seed: int = 0):
    """A random ``UNet2DConditionModel(**config.unet)``."""
    from diffusers import UNet2DConditionModel

    return randomize(UNet2DConditionModel(**config.unet), seed)


def tiny_vae(config: EMOConfig, seed: int = 1):
    """A random ``AutoencoderKL(**config.vae)``."""
    from diffusers import AutoencoderKL

    return randomize(AutoencoderKL(**config.vae), seed)


def tiny_wav2vec2(config: EMOConfig, seed: int = 2):
    """A random transformers ``Wav2Vec2Model(Wav2Vec2Config(**config.audio_encoder))``."""
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    return randomize(Wav2Vec2Model(Wav2Vec2Config(**config.audio_encoder)), seed)


def save_weights(path: str | Path, state_dict: dict[str, torch.Tensor], wrap: bool = False) -> Path:
    """``.safetensors`` via safetensors, anything else via ``torch.save`` (``wrap``: as
    ``{"state_dict": ..., "global_step": 0}`` like LDM ``.ckpt`` files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in state_dict.items()}
    if path.suffix == ".safetensors":
        save_file(tensors, str(path))
    else:
        torch.save({"state_dict": tensors, "global_step": 0} if wrap else tensors, path)
    return path


def _unet_key_to_ldm(key: str, unet_config: dict) -> str:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    if key in top:
        return top[key]
    per = int(unet_config["layers_per_block"]) + 1
    m = re.match(r"(down_blocks|up_blocks|mid_block)\.(?:(\d+)\.)?(resnets|attentions|downsamplers|upsamplers)\.(\d+)\.(.+)", key)
    if m is None:
        raise KeyError(f"no LDM name for UNet key {key}")
    block, i, kind, j, rest = m.group(1), int(m.group(2) or 0), m.group(3), int(m.group(4)), m.group(5)
    if kind == "resnets":
        first, _, tail = rest.partition(".")
        rest = f"{_RESNET_TO_LDM.get(first, first)}.{tail}"
    part = {"resnets": 0, "attentions": 1}.get(kind)
    if block == "mid_block":
        return f"middle_block.{2 * j if kind == 'resnets' else 1}.{rest}"
    if block == "down_blocks":
        if kind == "downsamplers":
            return f"input_blocks.{1 + i * per + per - 1}.0.op.{rest.removeprefix('conv.')}"
        return f"input_blocks.{1 + i * per + j}.{part}.{rest}"
    if kind == "upsamplers":
        has_attention = "CrossAttn" in unet_config["up_block_types"][i]
        return f"output_blocks.{i * per + per - 1}.{2 if has_attention else 1}.{rest}"
    return f"output_blocks.{i * per + j}.{part}.{rest}"


def unet_to_ldm(state_dict: dict[str, torch.Tensor], unet_config: dict) -> dict[str, torch.Tensor]:
    """diffusers UNet keys -> original LDM keys (``input_blocks.*``, no ``model.diffusion_model.``)."""
    return {_unet_key_to_ldm(k, unet_config): v for k, v in state_dict.items()}


def _vae_key_to_ldm(key: str, n_up: int) -> str:
    key = re.sub(r"^(encoder|decoder)\.conv_norm_out\.", r"\1.norm_out.", key)
    key = re.sub(r"^encoder\.down_blocks\.(\d+)\.resnets\.", r"encoder.down.\1.block.", key)
    key = re.sub(r"^encoder\.down_blocks\.(\d+)\.downsamplers\.0\.", r"encoder.down.\1.downsample.", key)
    key = re.sub(r"^decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.",
                 lambda m: f"decoder.up.{n_up - 1 - int(m.group(1))}.{'block' if m.group(2) == 'resnets' else 'upsample'}.",
                 key)
    key = key.replace(".upsample.0.", ".upsample.").replace("conv_shortcut", "nin_shortcut")
    key = re.sub(r"\.mid_block\.resnets\.(\d+)\.", lambda m: f".mid.block_{int(m.group(1)) + 1}.", key)
    m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)\.(weight|bias)$", key)
    if m:
        key = f"{m.group(1)}.mid.attn_1.{_VAE_ATTENTION_TO_LDM[m.group(2)]}.{m.group(3)}"
    return key


def vae_to_ldm(state_dict: dict[str, torch.Tensor], vae_config: dict) -> dict[str, torch.Tensor]:
    """diffusers ``AutoencoderKL`` keys -> LDM VAE keys; attention linears become 1x1 convs."""
    n_up = len(vae_config["up_block_types"])
    converted = {}
    for key, value in state_dict.items():
        attention = ".mid_block.attentions.0.to_" in key and key.endswith(".weight")
        converted[_vae_key_to_ldm(key, n_up)] = value[:, :, None, None] if attention else value
    return converted


def write_sd15_single_file(path: str | Path, config: EMOConfig, seed: int = 0, ema: bool = False) -> dict:
    """An original SD-1.5 single-file checkpoint (``.safetensors``, or ``.ckpt`` with a ``state_dict``
    nesting) holding ``model.diffusion_model.*``, ``first_stage_model.*`` and a stand-in text encoder.
    ``ema``: also ``model_ema.*`` weights (returned as the UNet). Returns diffusers-layout
    ``{"unet": ..., "vae": ...}``."""
    unet, vae = state_dict_copy(tiny_unet(config, seed)), state_dict_copy(tiny_vae(config, seed + 1))
    checkpoint = {LDM_UNET_PREFIX + k: v for k, v in unet_to_ldm(unet, config.unet).items()}
    checkpoint.update({LDM_VAE_PREFIX + k: v for k, v in vae_to_ldm(vae, config.vae).items()})
    checkpoint["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = torch.randn(16, 8)
    checkpoint["alphas_cumprod"] = torch.linspace(1, 0, 1000)
    if ema:
        unet = {k: v + 1 for k, v in unet.items()}
        for key, value in unet_to_ldm(unet, config.unet).items():
            checkpoint["model_ema." + ("diffusion_model" + key).replace(".", "")] = value
        checkpoint["model_ema.decay"] = torch.tensor(0.9999)
    save_weights(path, checkpoint, wrap=True)
    return {"unet": unet, "vae": vae}


def write_vae_single_file(path: str | Path, config: EMOConfig, layout: str = "ldm", seed: int = 1) -> dict:
    """A standalone VAE file: ``layout="ldm"`` as in ComfyUI ``models/vae``
    (``vae-ft-mse-840000-ema-pruned``), or ``"diffusers"``. Returns the diffusers-layout state dict."""
    vae = state_dict_copy(tiny_vae(config, seed))
    save_weights(path, vae_to_ldm(vae, config.vae) if layout == "ldm" else vae)
    return vae


def write_diffusers_unet_folder(folder: str | Path, config: EMOConfig, seed: int = 0,
                                safe_serialization: bool = True) -> dict:
    """A diffusers UNet folder (``config.json`` + ``diffusion_pytorch_model.safetensors``/``.bin``)."""
    unet = tiny_unet(config, seed)
    unet.save_pretrained(folder, safe_serialization=safe_serialization)
    return state_dict_copy(unet)


def write_diffusers_pipeline_folder(folder: str | Path, config: EMOConfig, seed: int = 0) -> dict:
    """A diffusers SD pipeline folder with ``model_index.json``, ``unet/`` and ``vae/``.
    Returns ``{"unet": ..., "vae": ...}``."""
    folder = Path(folder)
    unet = write_diffusers_unet_folder(folder / "unet", config, seed)
    vae = tiny_vae(config, seed + 1)
    vae.save_pretrained(folder / "vae")
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "vae": ["diffusers", "AutoencoderKL"]}
    (folder / "model_index.json").write_text(json.dumps(index))
    return {"unet": unet, "vae": state_dict_copy(vae)}


def motion_module_tensors(config: EMOConfig, seed: int = 3) -> dict[str, torch.Tensor]:
    """Random tensors with the key set and shapes of ``mm_sd_v15_v2.ckpt`` for ``config``'s UNet."""
    from emo_models.weights.animatediff import motion_module_shapes

    generator = torch.Generator().manual_seed(seed)
    shapes = motion_module_shapes(config.unet, max_frames=config.temporal_max_frames)
    return {k: torch.randn(shape, generator=generator) * 0.05 for k, shape in shapes.items()}


def write_animatediff_motion_module(path: str | Path, config: EMOConfig, fmt: str = "ckpt", seed: int = 3) -> dict:
    """An AnimateDiff v2 motion-module file (``fmt``: "ckpt", a plain pickled state dict, or
    "safetensors"). Returns everything written, ``pos_encoder.pe`` buffers included."""
    if fmt not in ("ckpt", "safetensors"):
        raise ValueError(f"fmt: {fmt!r}; expected 'ckpt' or 'safetensors'")
    tensors = motion_module_tensors(config, seed)
    save_weights(Path(path).with_suffix(f".{fmt}"), tensors)
    return tensors


def write_wav2vec2_folder(folder: str | Path, config: EMOConfig, seed: int = 2) -> dict:
    """A transformers folder (``config.json`` + ``model.safetensors``). Returns the state dict."""
    model = tiny_wav2vec2(config, seed)
    model.save_pretrained(folder)
    return state_dict_copy(model)


def write_wav2vec2_single_file(path: str | Path, config: EMOConfig, prefix: str = "", seed: int = 2,
                               legacy_weight_norm: bool = False) -> dict:
    """One wav2vec2 file as ComfyUI keeps under ``models/audio_encoders`` (transformers key names,
    ``prefix`` e.g. ``"wav2vec2."``; ``legacy_weight_norm``: ``weight_g``/``weight_v`` names).
    Returns the model's state dict (current transformers names, no prefix)."""
    state_dict = state_dict_copy(tiny_wav2vec2(config, seed))
    legacy = {"parametrizations.weight.original0": "weight_g", "parametrizations.weight.original1": "weight_v"}
    written = {}
    for key, value in state_dict.items():
        for new, old in legacy.items():
            key = key.replace(new, old) if legacy_weight_norm else key
        written[prefix + key] = value
    save_weights(path, written)
    return state_dict
