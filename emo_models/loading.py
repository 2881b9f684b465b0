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

from .audio import build_audio_encoder, settle_audio_encoder
from .config import EMOConfig
from .families import get_family, release_family
from .model import EMOModel
from .pipeline import EMOPipeline
from .residency import release_pages
from .temporal import is_speed_parameter
from .weights.native import CONFIG_FILE, config_components, load_checkpoint, read_metadata, save_checkpoint
from .weights.safe_load import LoadReport, WeightsError, load_component
from .weights.sanity import UNTRAINED, CheckpointReport, check_finite, untrained_after_init, untrained_parts

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
        audio_encoder = build_audio_encoder(config)
    return EMOPipeline(model, vae, audio_encoder, config)


def components_of(pipeline: EMOPipeline) -> dict[str, torch.nn.Module]:
    """Component name (as in ``weights.native.config_components``) -> module."""
    parts = {name: getattr(pipeline.model, name) for name in MODEL_PARTS if getattr(pipeline.model, name) is not None}
    return {**parts, "vae": pipeline.vae, "audio_encoder": pipeline.audio_encoder}


def load_pipeline(folder: str | Path, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> tuple[EMOPipeline, list[LoadReport]]:
    """A native EMO checkpoint folder, or a release of an open family as its users download it
    (Hallo's: weights/hallo.py) -> (pipeline on ``device``/``dtype``, one report per component).

    Every component must be present and complete; a missing file or key is an error naming it, and so
    are NaN or infinite weights (in the file, or made by the cast to ``dtype``). :func:`checkpoint_report`
    turns the reports into what a load prints. A release of an open family as its users download it
    (EchoMimic's ``pretrained_weights``: see :mod:`emo_models.families`) loads too, with its default weights.
    """
    if not (Path(folder) / CONFIG_FILE).is_file():
        family = release_family(folder)
        if family is not None:
            return family.load(folder, device=device, dtype=dtype)
    config, state_dicts = load_checkpoint(folder)
    try:
        pipeline = build_pipeline(config, empty=True)
    except Exception as err:  # a config whose fields are each valid but do not fit together
        raise WeightsError(f"{Path(folder) / 'config.json'}: the EMO model cannot be built from it "
                           f"({type(err).__name__}: {err}); fix config.json or copy the checkpoint's own") from None
    parts = components_of(pipeline)
    absent = [name for name, module in parts.items() if name not in state_dicts and module.state_dict()]
    if absent:
        raise WeightsError(f"{folder}: components {absent} missing; an EMO checkpoint holds "
                           f"{list(config_components(config))} (write one with `python -m emo_models init`)")
    extra = sorted(set(state_dicts) - set(parts))
    if extra:
        raise WeightsError(f"{folder}: components {extra} are not part of this config's model "
                           f"({list(config_components(config))}); config.json and the files disagree")
    reports = [load_component(module, state_dicts[name], name, str(Path(folder) / f"{name}.safetensors"))
               for name, module in parts.items() if module.state_dict()]
    meta = [n for n, p in pipeline.model.named_parameters() if p.is_meta]
    if meta:
        raise WeightsError(f"{folder}: parameters never loaded: {meta[:5]}")
    settle_audio_encoder(pipeline.audio_encoder, config)
    pipeline.to(device=device, dtype=dtype)
    parts = components_of(pipeline)  # each part's pages, read by the check, handed back (mapped again in use)
    check_finite({name: module.state_dict() for name, module in parts.items()}, str(folder), dtype=dtype,
                 after_component=lambda name: release_pages(parts[name]))
    return pipeline, reports


def checkpoint_report(folder: str | Path, pipeline: EMOPipeline, reports: list[LoadReport],
                      family: str | None = None) -> CheckpointReport:
    """What loading ``folder`` gave: family (default: the open family whose release it is, else a native
    checkpoint), config, dtype, per-component key reports and the parts that were never trained (from
    ``metadata.json`` and the still-zero output layers). An open family's release, or a folder converted
    from one, has no speed layers: their zeros are a note (speed has no effect), not an untrained part."""
    released = None if (Path(folder) / CONFIG_FILE).is_file() else release_family(folder)
    try:
        metadata, notes = read_metadata(folder), []
    except WeightsError as err:
        metadata, notes = {}, [f"{err}; cannot tell from it which parts were trained"]
    origin = released.title if released else metadata.get("converted_from")
    if family is None:
        family = f"{released.title} release" if released else \
            f"EMO native checkpoint (converted from {origin})" if origin else "EMO native checkpoint"
    states = {name: module.state_dict() for name, module in components_of(pipeline).items()}
    untrained = untrained_parts(metadata, states)
    if origin and "speed" in untrained and UNTRAINED not in metadata:
        del untrained["speed"]
        notes.append(f"speed: {origin}'s weights have no speed layers; they are zero, so speed has no effect")
    config = pipeline.config
    return CheckpointReport(source=str(folder), family=family, dtype=str(pipeline.dtype).removeprefix("torch."),
                            config=f"{config.name} ({config.width}x{config.height}, {config.fps:g} fps)",
                            components=list(reports), untrained=untrained, notes=notes)


def assembly_report(pipeline: EMOPipeline, reports: list[LoadReport], sources: dict[str, object]) -> CheckpointReport:
    """What :func:`assemble` gave: the parts loaded from ``sources`` (base, vae, motion_module,
    audio_encoder) and, loudly, the parts left at their random initialisation."""
    config, given = pipeline.config, {k: v for k, v in sources.items() if v}
    return CheckpointReport(
        source=", ".join(f"{k}={v}" for k, v in given.items()) or "nothing (all random)",
        family="assembled from parts", dtype=str(pipeline.dtype).removeprefix("torch."),
        config=f"{config.name} ({config.width}x{config.height}, {config.fps:g} fps)", components=list(reports),
        untrained={part: "random initialisation (no weights given for it)" for part in untrained_after_init(given)})


def save_pipeline(pipeline: EMOPipeline, folder: str | Path, metadata: dict | None = None,
                  force: bool = False, option: str = "out") -> Path:
    """Write the pipeline as a native EMO checkpoint folder (atomically; an existing non-empty folder
    only with ``force``, replacing just the checkpoint's files, see :func:`save_checkpoint`)."""
    return save_checkpoint(folder, pipeline.config, components_of(pipeline), metadata, force=force, option=option)


def convert_release(family: str, source: str | Path, out: str | Path,
                    variant: str | None = None) -> tuple[Path, list[LoadReport]]:
    """Write a family's release (e.g. EchoMimic's ``pretrained_weights/``) as a native EMO checkpoint folder
    whose config.json carries the family's generation preset. Tensors keep the precision the release
    stores them in; the folder is written atomically. variant: a weight set of the release (None: default)."""
    found = get_family(family)
    if not found.is_release(source):
        raise WeightsError(f"{source}: not a {found.title} release; expected {found.layout}")
    pipeline, reports = found.load(source, dtype=None, variant=variant)
    metadata = {"converted_from": family, "variant": variant, "source": str(Path(source).resolve())}
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
