"""EchoMimic's release as users download it (antgroup/echomimic ``pretrained_weights/``) → our components.

Layout (the ``_acc`` pair replaces ``denoising_unet.pth``/``motion_module.pth`` for the 6-step variant)::

    denoising_unet.pth   plain state dict: the denoiser's 2-D UNet (attn2 reads 384-d audio), possibly
                         with motion modules, which then win over motion_module.pth (EchoMimic's order)
    reference_unet.pth   ReferenceNet: no attn2/norm2/conv_norm_out/conv_out
    face_locator.pth     1-channel face locator    motion_module.pth   AnimateDiff-layout motion modules
    sd-image-variations-diffusers/unet/config.json   the UNets' sizes
    sd-vae-ft-mse/       diffusers VAE folder      audio_processor/whisper_tiny.pt   openai Whisper

``.pth`` files load with ``torch.load(weights_only=True)`` only. Every file is checked strictly: a
missing or unexpected key is an error naming the file (speed layers, which EchoMimic lacks, stay
zero-initialised: speed has no effect). Sizes come from the release's own files. The motion modules'
``pos_encoder.pe`` buffers must be AnimateDiff's sinusoid at the precision they are stored in, which
the config records (``temporal_positions``: EchoMimic adds them as loaded, so an fp16 file's rounding
counts, and a converted native folder keeps it). The family registry (emo_models/families) calls
:func:`is_release`, :func:`looks_like` and :func:`load`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..families.echomimic import echomimic_config
from .animatediff import convert_motion_adapter_state_dict
from .safe_load import LoadReport, WeightsError, check_state_dict, read_state_dict
from .whisper import read_whisper

BASE_UNET = "sd-image-variations-diffusers/unet/config.json"
FILES = ("denoising_unet.pth", "reference_unet.pth", "face_locator.pth", "motion_module.pth",
         BASE_UNET, "sd-vae-ft-mse/config.json", "audio_processor/whisper_tiny.pt")


@dataclass(frozen=True)
class EchoMimicRelease:
    """Paths of one EchoMimic release (standard or ``_acc`` weights)."""

    folder: Path
    acc: bool = False

    def path(self, name: str) -> Path:
        """A release file; ``denoising_unet``/``motion_module`` resolve to their ``_acc`` twins when acc."""
        if self.acc and name in ("denoising_unet.pth", "motion_module.pth"):
            name = name.replace(".pth", "_acc.pth")
        return self.folder / name


def is_echomimic_release(folder: str | Path) -> bool:
    """True when ``folder`` holds EchoMimic's ``denoising_unet.pth`` and ``reference_unet.pth``."""
    folder = Path(folder)
    return folder.is_dir() and any((folder / n).is_file() for n in ("denoising_unet.pth", "denoising_unet_acc.pth")) \
        and (folder / "reference_unet.pth").is_file()


def find_release(folder: str | Path, acc: bool = False) -> EchoMimicRelease:
    """The release in ``folder``; a missing file is an error naming it and the folder."""
    release = EchoMimicRelease(Path(folder), acc)
    missing = [str(release.path(n).relative_to(release.folder)) for n in FILES if not release.path(n).is_file()]
    if missing:
        raise WeightsError(f"{folder}: EchoMimic release lacks {missing}; put EchoMimic's pretrained_weights files "
                           f"({', '.join(FILES)}) in this folder (ComfyUI models/emo/<name>/)")
    return release


def describe_echomimic_file(state_dict: dict[str, torch.Tensor]) -> str | None:
    """Name an EchoMimic file from its keys (so a loader expecting another model can say what it got)."""
    keys = set(state_dict)
    if "encoder.positional_embedding" in keys:
        return "an openai Whisper checkpoint (EchoMimic's audio_processor/whisper_tiny.pt)"
    if {"conv_in.weight", "blocks.5.weight", "conv_out.weight"} <= keys and state_dict["conv_in.weight"].shape[1] == 1:
        return "EchoMimic's face_locator.pth"
    to_k = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight"
    if "conv_in.weight" in keys and "time_embedding.linear_1.weight" in keys:
        if to_k in keys and state_dict[to_k].shape[-1] == 384:
            return "EchoMimic's denoising_unet.pth (audio cross-attention, 384-d)"
        if "conv_out.weight" not in keys and not any(".attn2." in k for k in keys):
            return "EchoMimic's reference_unet.pth (a ReferenceNet without cross-attention)"
    return None


def _strict(expected, state_dict, component: str, source: Path, allow_missing=None) -> LoadReport:
    report = check_state_dict(expected, state_dict, component, str(source), allow_missing)
    if report.unexpected:
        raise WeightsError(f"{source}: {len(report.unexpected)} keys that EchoMimic's {component} does not have: "
                           f"{report.unexpected[:4]}; the file is not EchoMimic's {source.name}")
    return report


def read_release(folder: str | Path, acc: bool = False):
    """``(EMOConfig, {component: state dict}, release)``; sizes from the release's own config files."""
    release = find_release(folder, acc)
    whisper_config, whisper = read_whisper(release.path("audio_processor/whisper_tiny.pt"))
    denoiser = read_state_dict(release.path("denoising_unet.pth"))
    motion = read_state_dict(release.path("motion_module.pth"))
    face = read_state_dict(release.path("face_locator.pth"))
    to_k = denoiser.get("down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight")
    if to_k is None:
        raise WeightsError(f"{release.path('denoising_unet.pth')}: no attn2 weights "
                           f"({describe_echomimic_file(denoiser) or 'not an EchoMimic denoiser'})")
    merged = convert_motion_adapter_state_dict({**motion, **denoiser})
    positions = {k: v for k, v in merged.items() if k.endswith(".pos_encoder.pe")}
    pe = next(iter(positions.values()), None)
    face_channels = tuple(int(face[f"blocks.{i}.weight"].shape[0]) for i in range(1, 6, 2))
    config = echomimic_config(
        json.loads(release.path(BASE_UNET).read_text()),
        json.loads(release.path("sd-vae-ft-mse/config.json").read_text()), whisper_config,
        audio_dim=int(to_k.shape[-1]), face_locator_channels=(int(face["conv_in.weight"].shape[0]), *face_channels),
        temporal_max_frames=int(pe.shape[1]) if pe is not None else 32, acc=acc,
        temporal_positions=str(pe.dtype).removeprefix("torch.") if pe is not None else "float32")
    _check_positions(positions, config, release.path("motion_module.pth"))
    temporal = {k: v for k, v in merged.items() if ".motion_modules." in k and ".pos_encoder." not in k}
    return config, {
        "backbone": {k: v for k, v in denoiser.items() if ".motion_modules." not in k},
        "temporal": temporal,
        "reference_net": read_state_dict(release.path("reference_unet.pth")),
        "face_locator": face,
        "audio_encoder": whisper,
    }, release


def _check_positions(positions: dict[str, torch.Tensor], config, source: Path) -> None:
    """The stored ``pos_encoder.pe`` buffers must be AnimateDiff's sinusoid at their stored precision, which
    our temporal modules compute (``config.temporal_positions``); anything else is refused, naming the key."""
    from ..temporal import sinusoidal_positions

    for key, pe in positions.items():
        expected = sinusoidal_positions(pe.shape[1], pe.shape[2]).to(getattr(torch, config.temporal_positions))
        if pe.dtype != expected.dtype or not torch.equal(pe, expected):
            raise WeightsError(f"{source}: {key} is not AnimateDiff's sinusoidal positional encoding at "
                               f"{config.temporal_positions}; the file is not EchoMimic's motion module")


def load_echomimic(folder: str | Path, acc: bool = False, device: str | torch.device = "cpu",
                   dtype: torch.dtype = torch.float32):
    """An EchoMimic release folder -> ``(EMOPipeline, one LoadReport per component)``."""
    from ..loading import build_pipeline, components_of
    from ..speed import SpeedEncoder
    from ..temporal import TemporalModules, is_speed_parameter
    from .sd15 import load_vae_state_dict

    config, state_dicts, release = read_release(folder, acc)
    pipeline = build_pipeline(config, empty=True)  # no random init of what the files replace
    pipeline.model.temporal = TemporalModules(config)  # its speed layers are not in the files
    pipeline.model.speed_encoder = SpeedEncoder(config)
    parts = components_of(pipeline)
    reports = []
    for name, state_dict in state_dicts.items():
        source = release.path({"backbone": "denoising_unet.pth", "temporal": "motion_module.pth",
                               "reference_net": "reference_unet.pth", "face_locator": "face_locator.pth",
                               "audio_encoder": "audio_processor/whisper_tiny.pt"}[name])
        module = parts[name]
        reports.append(_strict(module.state_dict(), state_dict, name, source,
                               allow_missing=is_speed_parameter if name == "temporal" else None))
        module.load_state_dict(state_dict, strict=False, assign=name != "temporal")
    vae = release.path("sd-vae-ft-mse/config.json").parent
    vae_state = load_vae_state_dict(vae, config.vae)
    reports.append(_strict(parts["vae"].state_dict(), vae_state, "vae", vae))
    parts["vae"].load_state_dict(vae_state, assign=True)
    never_loaded = [n for part in parts.values() for n, p in part.named_parameters() if p.is_meta]
    if never_loaded:
        raise WeightsError(f"{folder}: parameters never loaded: {never_loaded[:5]}")
    pipeline.audio_encoder.float()  # file dtype (often fp16) -> float32, as every audio encoder starts
    pipeline.to(device=device, dtype=dtype)
    return pipeline, reports


# ---- the family interface (emo_models.families) --------------------------------------------------
def is_release(path: str | Path) -> bool:
    """An EchoMimic ``pretrained_weights`` folder (standard or ``_acc`` weights)."""
    return is_echomimic_release(path)


def looks_like(state_dict: dict[str, torch.Tensor]) -> bool:
    """A weights file of EchoMimic's (one of its .pth files, or its openai Whisper checkpoint)."""
    return describe_echomimic_file(dict(state_dict)) is not None


VARIANTS = ("standard", "acc")  # acc: denoising_unet_acc.pth + motion_module_acc.pth, 6 steps at cfg 1


def load(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = torch.float32,
         variant: str | None = None):
    """(EMOPipeline, reports) of a release folder; ``variant`` None: the standard weights when present, else
    the ``_acc`` pair; dtype None keeps the files' precisions (for conversion)."""
    if variant not in (None, *VARIANTS):
        raise ValueError(f"variant: {variant!r}; EchoMimic releases have {', '.join(VARIANTS)}")
    acc = variant == "acc" if variant else not (Path(path) / "denoising_unet.pth").is_file()
    return load_echomimic(path, acc=acc, device=device, dtype=dtype)
