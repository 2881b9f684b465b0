"""Hallo's public release (fudan-generative-vision/hallo, MIT) loaded into our model, strictly.

A release as users download it (Hallo's ``pretrained_models/``), in ``models/emo/<name>/`` or given
by path::

    hallo/net.pth                         reference_unet. denoising_unet. face_locator. imageproj. audioproj.
    stable-diffusion-v1-5/unet/config.json  the UNets' sizes (the weights there are not read: net.pth
                                          holds both UNets and the fine-tuned motion modules)
    sd-vae-ft-mse/                        the VAE (diffusers folder)
    wav2vec/wav2vec2-base-960h/           wav2vec2 (transformers folder)
    face_analysis/models/                 face detection, recognition, landmarks (for real photos)
    motion_module/, audio_separator/      not read (give separated vocals)

Every size comes from those config files and net.pth's tensor shapes, so a release of any width
loads. ``net.pth`` is read with ``torch.load(weights_only=True)`` (memory-mapped) and must fit
exactly: every key used, every weight of ours given, except EMO's speed layers, which Hallo does not
have (new, at zero: speed has no effect until trained).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import EMOConfig
from ..temporal import is_speed_parameter
from .safe_load import LoadReport, WeightsError, read_state_dict, short_list

NET = "hallo/net.pth"
UNET_CONFIG = "stable-diffusion-v1-5/unet/config.json"
VAE = "sd-vae-ft-mse"
WAV2VEC = "wav2vec/wav2vec2-base-960h"
FACE_ANALYSIS = "face_analysis/models"
NET_PARTS = {"reference_unet.": "reference_net", "face_locator.": "face_locator",
             "imageproj.": "identity_projection", "audioproj.": "audio_projection"}


@dataclass(frozen=True)
class HalloRelease:
    """A Hallo release folder; the paths of the files it must hold."""

    root: Path

    @classmethod
    def find(cls, path: str | Path) -> HalloRelease:
        """The release a path points into: its folder, or its ``hallo/net.pth``."""
        path = Path(path)
        if path.is_file() and path.name == "net.pth":
            path = path.parent.parent
        return cls(path)

    @property
    def net(self) -> Path:
        return self.root / NET

    def require(self) -> HalloRelease:
        """Check every file we read is there; the error names each missing file and its folder."""
        needed = {NET: "Hallo's net.pth", UNET_CONFIG: "the SD-1.5 UNet config",
                  f"{VAE}/config.json": "the sd-vae-ft-mse VAE", f"{WAV2VEC}/config.json": "wav2vec2-base-960h"}
        missing = [f"{self.root / rel} ({what}; put it in {(self.root / rel).parent})"
                   for rel, what in needed.items() if not (self.root / rel).is_file()]
        if missing:
            raise WeightsError(f"{self.root}: not a complete Hallo release, missing {'; '.join(missing)}. "
                               "Download Hallo's pretrained_models (README: Hallo) into this folder")
        return self


def is_release(path: str | Path) -> bool:
    """True for a folder holding ``hallo/net.pth`` (a Hallo release), or that file itself."""
    path = Path(path)
    return (path / NET).is_file() or (path.is_file() and path.name == "net.pth" and path.parent.name == "hallo")


def looks_like(state_dict: Mapping[str, torch.Tensor]) -> bool:
    """True for a state dict in net.pth's layout (``denoising_unet.`` with audio modules + ``imageproj.``)."""
    return (any(k.startswith("denoising_unet.") and ".audio_modules." in k for k in state_dict)
            and any(k.startswith("imageproj.") for k in state_dict))


def split_net(state_dict: Mapping[str, torch.Tensor], source: str) -> dict[str, dict[str, torch.Tensor]]:
    """net.pth keys -> our components: reference_unet -> reference_net; denoising_unet -> backbone,
    temporal (``motion_modules``) and audio_modules; face_locator; imageproj -> identity_projection;
    audioproj -> audio_projection. A key under any other prefix is refused by name."""
    parts: dict[str, dict[str, torch.Tensor]] = {}
    foreign = []
    for key, value in state_dict.items():
        if key.startswith("denoising_unet."):
            inner = key.removeprefix("denoising_unet.")
            part = ("temporal" if ".motion_modules." in inner else
                    "audio_modules" if ".audio_modules." in inner else "backbone")
        else:
            prefix = next((p for p in NET_PARTS if key.startswith(p)), None)
            if prefix is None:
                foreign.append(key)
                continue
            part, inner = NET_PARTS[prefix], key.removeprefix(prefix)
        parts.setdefault(part, {})[inner] = value
    if foreign:
        raise WeightsError(f"{source}: {len(foreign)} keys outside Hallo's net.pth layout: {short_list(foreign)}; "
                           f"expected only {', '.join(['denoising_unet.', *NET_PARTS])}")
    return parts


def net_shapes(config: EMOConfig) -> dict[str, tuple[int, ...]]:
    """Key -> shape of Hallo's net.pth for a model of ``config`` (built on the meta device): the inverse
    of :func:`split_net`, with the motion modules' stored positional encodings."""
    from accelerate import init_empty_weights

    from ..model import EMOModel

    with init_empty_weights():
        model = EMOModel(config)
    prefixes = {"backbone": "denoising_unet.", "temporal": "denoising_unet.", "audio_modules": "denoising_unet.",
                **{part: prefix for prefix, part in NET_PARTS.items()}}
    shapes = {}
    for part, prefix in prefixes.items():
        for key, value in getattr(model, part).state_dict().items():
            if is_speed_parameter(key):
                continue
            shapes[prefix + key] = tuple(value.shape)
    for name, _, channels in model.temporal.sites:
        for block in (0, 1):
            key = f"denoising_unet.{name}.temporal_transformer.transformer_blocks.0.attention_blocks.{block}.pos_encoder.pe"
            shapes[key] = (1, config.temporal_max_frames, channels)
    return shapes


def _config_file(path: Path, cls) -> dict:
    """The constructor arguments of ``cls`` that a diffusers config.json gives (lists as tuples)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise WeightsError(f"{path}: cannot read as JSON ({err}); expected a diffusers config.json") from err
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in accepted}


def release_config(release: HalloRelease, parts: Mapping[str, Mapping[str, torch.Tensor]],
                   audio_encoder: dict) -> EMOConfig:
    """Our config for a release: its UNet and VAE config files, net.pth's shapes (``parts``:
    :func:`split_net`'s output), the wav2vec2 config fields, Hallo's inference constants."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from ..families.hallo import hallo_config

    shapes = {f"{part}.{k}": tuple(v.shape) for part, sd in parts.items() for k, v in sd.items()}
    positions = next((v.dtype for k, v in parts.get("temporal", {}).items() if k.endswith("pos_encoder.pe")), None)
    try:
        return hallo_config(_config_file(release.root / UNET_CONFIG, UNet2DConditionModel),
                            _config_file(release.root / VAE / "config.json", AutoencoderKL), audio_encoder,
                            shapes, positions)
    except KeyError as err:
        raise WeightsError(f"{release.net}: lacks {err}; not a complete Hallo net.pth") from None


def check_positions(temporal: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Drop the stored positional encodings after checking they are AnimateDiff's sinusoid (we compute it)."""
    from ..temporal import sinusoidal_positions

    kept = {}
    for key, value in temporal.items():
        if not key.endswith("pos_encoder.pe"):
            kept[key] = value
            continue
        expected = sinusoidal_positions(value.shape[1], value.shape[2]).to(value.dtype).float()
        if not torch.allclose(value.float(), expected, atol=2 * torch.finfo(value.dtype).eps):
            raise WeightsError(f"{source}: {key} is not the sinusoidal encoding of its size; Hallo's motion modules "
                               "store an unchanged one (is the file damaged?)")
    return kept


def read_hallo(path: str | Path) -> tuple[EMOConfig, dict[str, dict[str, torch.Tensor]], HalloRelease]:
    """A release -> (our config, component state dicts from net.pth, the release). Nothing is built."""
    from ..loading import wav2vec2_config_fields
    from .wav2vec2 import read_wav2vec2

    release = HalloRelease.find(path).require()
    source = str(release.net)
    state_dict = read_state_dict(release.net, mmap=True)
    if not looks_like(state_dict):
        raise WeightsError(f"{source}: not Hallo's net.pth (first keys: {short_list(list(state_dict), 4)}); "
                           "expected reference_unet./denoising_unet.(with audio_modules)/imageproj./audioproj. keys")
    parts = split_net(state_dict, source)
    wav2vec_config, _, _ = read_wav2vec2(release.root / WAV2VEC)
    config = release_config(release, parts, wav2vec2_config_fields(wav2vec_config))
    parts["temporal"] = check_positions(parts.get("temporal", {}), source)
    return config, parts, release


def load(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
    """A Hallo release -> (EMOPipeline on ``device``/``dtype``, one report per component).

    Strict: any net.pth key we do not use, or any weight of ours it lacks (other than the speed
    layers, new at zero), is an error naming them. wav2vec2 and the VAE come from their folders.
    """
    from ..loading import build_pipeline, components_of
    from ..speed import SpeedEncoder
    from ..temporal import new_speed_layers_
    from .safe_load import load_component
    from .sd15 import load_vae_state_dict
    from .wav2vec2 import load_wav2vec2

    config, parts, release = read_hallo(path)
    pipeline = build_pipeline(config, empty=True)
    model = pipeline.model
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # the new speed layers are the same for every load
        new_speed_layers_(model.temporal)
        model.speed_encoder = SpeedEncoder(config)
    reports = []
    components = components_of(pipeline)
    for name in ("backbone", "reference_net", "temporal", "audio_modules", "audio_projection", "face_locator",
                 "identity_projection"):
        allow = is_speed_parameter if name == "temporal" else None
        report = load_component(components[name], parts.pop(name, {}), name, f"{release.net} ({name})", allow)
        if report.unexpected:
            raise WeightsError(f"{release.net}: {len(report.unexpected)} {name} weights have no place in the model: "
                               f"{short_list(report.unexpected)}")
        new_speed = [k for k in report.missing if is_speed_parameter(k)]
        report.missing = [k for k in report.missing if not is_speed_parameter(k)]
        reports.append(report)
    reports.append(LoadReport(f"speed layers (speed_encoder + {len(new_speed)} in temporal)",
                              missing=["new: Hallo has none; their output starts at zero"]))
    vae = load_component(pipeline.vae, load_vae_state_dict(release.root / VAE, config.vae), "vae", str(release.root / VAE))
    if vae.unexpected:
        raise WeightsError(f"{release.root / VAE}: {vae}")
    reports.append(vae)
    pipeline.audio_encoder = load_wav2vec2(release.root / WAV2VEC)
    reports.append(LoadReport("audio_encoder", loaded=len(pipeline.audio_encoder.state_dict())))
    meta = [n for n, p in model.named_parameters() if p.is_meta]
    if meta:
        raise WeightsError(f"{release.net}: weights never loaded: {short_list(meta)}")
    pipeline.to(device=device, dtype=dtype)
    pipeline.face_analysis_folders = [release.root / FACE_ANALYSIS, release.root]
    return pipeline, reports


def describe(path: str | Path) -> list[str]:
    """Lines for ``inspect``: which release files are there, and how net.pth fits the layout its
    config files imply."""
    from .inspect import compare_lines

    release = HalloRelease.find(path)
    lines = [f"  {rel}: {'present' if (release.root / rel).exists() else 'MISSING'}" for rel in (NET, UNET_CONFIG, VAE, WAV2VEC)]
    lines.append(f"  {FACE_ANALYSIS}: {'present' if (release.root / FACE_ANALYSIS).is_dir() else 'absent'} "
                 "(needed only to find faces in real photos)")
    try:
        config, _, _ = read_hallo(path)
    except WeightsError as err:
        return [*lines, f"  cannot be loaded: {err}"]
    net = read_state_dict(release.net, mmap=True)
    return [*lines, f"  net.pth: {len(net)} tensors, {sum(t.numel() for t in net.values()):,} parameters "
                    f"({', '.join(sorted({str(t.dtype).removeprefix('torch.') for t in net.values()}))})", f"  config: {config.width}x{config.height}, UNet {list(config.unet['block_out_channels'])}, "
                    f"identity tokens {config.identity_tokens}, audio width {config.audio_token_dim}",
            *compare_lines("net.pth vs Hallo's layout for these configs", net_shapes(config), net)]
