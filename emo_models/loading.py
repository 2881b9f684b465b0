"""Assemble an :class:`EMOPipeline` from weights: a native EMO checkpoint, or parts users already have.

``load_pipeline(folder)``: our native checkpoint (``config.json`` + one safetensors per component).
``assemble(config, base=…, vae=…, motion_module=…, audio_encoder=…)``: SD-1.5 (single file or diffusers
folder) into both the backbone and the ReferenceNet, its VAE (or a separate one), AnimateDiff motion
modules into the temporal modules, wav2vec2 into the audio encoder; EMO's new layers stay as
initialised. ``save_pipeline`` writes the native format. Every load returns one report per component.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
from diffusers import AutoencoderKL

from .audio import build_wav2vec2
from .config import EMOConfig
from .families import hallo as hallo_family
from .model import EMOModel
from .pipeline import EMOPipeline
from .temporal import is_speed_parameter
from .weights.native import CONFIG_FILE, config_components, load_checkpoint, save_checkpoint
from .weights.safe_load import LoadReport, WeightsError, load_component

MODEL_PARTS = ("backbone", "reference_net", "temporal", "audio_projection", "face_locator", "speed_encoder",
               "identity_projection", "audio_modules")


def build_pipeline(config: EMOConfig, empty: bool = False) -> EMOPipeline:
    """A pipeline of the configured size; random weights, or unallocated (meta) ones when ``empty``."""
    if empty:
        from accelerate import init_empty_weights

        context = init_empty_weights()
    else:
        context = nullcontext()
    with context:
        model = EMOModel(config)
        vae = AutoencoderKL(**config.vae)
        audio_encoder = build_wav2vec2(config)
    return EMOPipeline(model, vae, audio_encoder, config)


def components_of(pipeline: EMOPipeline) -> dict[str, torch.nn.Module]:
    """Component name (as in ``weights.native.config_components``) -> module."""
    parts = {name: getattr(pipeline.model, name) for name in MODEL_PARTS if getattr(pipeline.model, name) is not None}
    return {**parts, "vae": pipeline.vae, "audio_encoder": pipeline.audio_encoder}


def load_pipeline(folder: str | Path, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> tuple[EMOPipeline, list[LoadReport]]:
    """A native EMO checkpoint folder, or a release of an open family as its users download it
    (Hallo's: weights/hallo.py) -> (pipeline on ``device``/``dtype``, one report per component).

    Every component must be present and complete; a missing file or key is an error naming it.
    """
    if not (Path(folder) / CONFIG_FILE).is_file() and hallo_family.is_release(folder):
        from .weights import hallo

        return hallo.load(folder, device=device, dtype=dtype)
    config, state_dicts = load_checkpoint(folder)
    expected = config_components(config)
    absent = [name for name in expected if name not in state_dicts]
    if absent:
        raise WeightsError(f"{folder}: components {absent} missing; an EMO checkpoint holds "
                           f"{list(expected)} (write one with `python -m emo_models init`)")
    extra = sorted(set(state_dicts) - set(expected))
    if extra:
        raise WeightsError(f"{folder}: components {extra} are not part of this config's model "
                           f"({list(expected)}); config.json and the files disagree")
    pipeline = build_pipeline(config, empty=True)
    reports = [load_component(module, state_dicts[name], name, str(Path(folder) / f"{name}.safetensors"))
               for name, module in components_of(pipeline).items()]
    meta = [n for n, p in pipeline.model.named_parameters() if p.is_meta]
    if meta:
        raise WeightsError(f"{folder}: parameters never loaded: {meta[:5]}")
    pipeline.to(device=device, dtype=dtype)
    return pipeline, reports


def save_pipeline(pipeline: EMOPipeline, folder: str | Path, metadata: dict | None = None) -> Path:
    """Write the pipeline as a native EMO checkpoint folder (atomically)."""
    return save_checkpoint(folder, pipeline.config, components_of(pipeline), metadata)


def convert_release(family: str, source: str | Path, out: str | Path) -> tuple[Path, list[LoadReport]]:
    """Write a family's release (e.g. Hallo's ``pretrained_models/``) as a native EMO checkpoint folder.

    Tensors keep the precision the release stores them in; the folder is written atomically.
    """
    if family != "hallo":
        raise ValueError(f"family: unknown {family!r}; choose one of ['hallo']")
    if not hallo_family.is_release(source):
        raise WeightsError(f"{source}: not a {hallo_family.TITLE} release; expected {hallo_family.LAYOUT}")
    from .weights import hallo

    pipeline, reports = hallo.load(source, dtype=None)
    metadata = {"converted_from": family, "source": str(Path(source).resolve())}
    return save_pipeline(pipeline, out, metadata), reports


def assemble(config: EMOConfig, base: str | Path | None = None, vae: str | Path | None = None,
             motion_module: str | Path | None = None,
             audio_encoder: str | Path | None = None) -> tuple[EMOPipeline, list[LoadReport]]:
    """Build a pipeline from parts; what is not given keeps its random initialisation.

    base: SD-1.5 single file or diffusers folder (UNet -> backbone + ReferenceNet; its VAE unless ``vae``);
    vae: a VAE file or folder; motion_module: AnimateDiff ``mm_sd_v15_v2`` (.ckpt/.safetensors);
    audio_encoder: a wav2vec2 transformers folder or single .safetensors.
    """
    from .weights.animatediff import load_motion_module_state_dict
    from .weights.sd15 import load_unet_state_dict, load_vae_state_dict
    from .weights.wav2vec2 import load_wav2vec2

    reports: list[LoadReport] = []
    if audio_encoder is not None:
        wav2vec2 = load_wav2vec2(audio_encoder)
        ours = config.audio_encoder
        if (wav2vec2.config.hidden_size == ours["hidden_size"]
                and wav2vec2.config.num_attention_heads != ours["num_attention_heads"]):
            # a single file does not record its head count (hidden/64 is assumed); keep the config's
            wav2vec2 = load_wav2vec2(audio_encoder, {"num_attention_heads": ours["num_attention_heads"]})
        config = EMOConfig.from_dict({**config.to_dict(), "audio_encoder": wav2vec2_config_fields(wav2vec2.config)})
        reports.append(LoadReport("audio_encoder", loaded=len(wav2vec2.state_dict())))
    pipeline = build_pipeline(config)
    if audio_encoder is not None:
        pipeline.audio_encoder = wav2vec2
    if base is not None:
        unet = load_unet_state_dict(base, config.unet)
        reports.append(load_component(pipeline.model.backbone, unet, "backbone", str(base)))
        reports.append(load_component(pipeline.model.reference_net, unet, "reference_net", str(base)))
        if vae is None:
            reports.append(load_component(pipeline.vae, load_vae_state_dict(base, config.vae), "vae", str(base)))
    if vae is not None:
        reports.append(load_component(pipeline.vae, load_vae_state_dict(vae, config.vae), "vae", str(vae)))
    if motion_module is not None:
        temporal = load_motion_module_state_dict(motion_module, config.unet)
        reports.append(load_component(pipeline.model.temporal, temporal, "temporal", str(motion_module),
                                      allow_missing=is_speed_parameter))
    return pipeline, reports


def wav2vec2_config_fields(c) -> dict:
    """The fields of a ``Wav2Vec2Config`` that an EMOConfig keeps (its ``audio_encoder``)."""
    keys = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "conv_dim",
            "conv_kernel", "conv_stride", "conv_bias", "num_conv_pos_embeddings", "num_conv_pos_embedding_groups",
            "feat_extract_norm", "do_stable_layer_norm", "layer_norm_eps", "hidden_act", "feat_extract_activation")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in c.to_dict().items() if k in keys}
