"""``describe(path)``: what a weights file or folder is, what it holds, and how it fits our config.

Safetensors files are read header-only and expected layouts are built on the meta device, so
describing a 4 GB checkpoint costs little memory. Used by ``python -m emo_models inspect``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from ..config import CONFIGS, EMOConfig
from ..families import FAMILIES, release_family
from . import animatediff, echomimic, native, sd15, wav2vec2, whisper
from .safe_load import WeightsError, compare_keys, read_state_dict, short_list

SD15_PARTS = {"unet": sd15.LDM_UNET_PREFIX, "vae": "first_stage_model.", "text encoder": "cond_stage_model.",
              "EMA weights": "model_ema."}
DIFFUSERS_CLASSES = {"UNet2DConditionModel": "unet", "AutoencoderKL": "vae", "MotionAdapter": "motion_adapter"}

Shapes = Mapping[str, torch.Size | tuple[int, ...]]


def _params(state_dict: Mapping[str, torch.Tensor]) -> str:
    dtypes = sorted({str(t.dtype).removeprefix("torch.") for t in state_dict.values()})
    return f"{len(state_dict):,} tensors, {sum(t.numel() for t in state_dict.values()):,} parameters ({', '.join(dtypes)})"


def compare_lines(label: str, expected: Shapes, state_dict: Mapping[str, torch.Tensor],
                  extra_name: str = "unexpected", indent: str = "  ") -> list[str]:
    """Lines saying how ``state_dict`` differs from ``expected`` (key -> shape), lists truncated."""
    matched, missing, unexpected, wrong = compare_keys(expected, state_dict)
    lines = [f"{indent}{label}: {len(matched)}/{len(expected)} keys match, {len(missing)} missing, "
             f"{len(unexpected)} {extra_name}, {len(wrong)} with other shapes"]
    details = [("missing", missing), (extra_name, unexpected),
               ("other shapes", [f"{k} {tuple(a)} vs {tuple(b)}" for k, a, b in wrong])]
    return lines + [f"{indent}  {name}: {short_list(keys, 4)}" for name, keys in details if keys]


def _fit(config: EMOConfig | None, layout: Callable[[EMOConfig], tuple[Shapes, Mapping[str, torch.Tensor]]]):
    """``(config, expected shapes, converted state dict)`` for the given config, else for the preset
    (full, tiny, ...) whose layout the file matches best (ties: the first preset, full)."""
    candidates = [config] if config is not None else [make() for make in CONFIGS.values()]
    best = max(enumerate(candidates), key=lambda ic: (len(compare_keys(*layout(ic[1]))[0]), -ic[0]))[1]
    return (best, *layout(best))


def _unet_lines(state_dict, config) -> list[str]:
    cfg, expected, converted = _fit(config, lambda c: (sd15.unet_shapes(c.unet),
                                                       sd15.convert_unet_state_dict(state_dict, c.unet)))
    return compare_lines(f"unet vs the {cfg.name} config", expected, converted)


def _vae_lines(state_dict, config) -> list[str]:
    cfg, expected, converted = _fit(config, lambda c: (sd15.vae_shapes(c.vae), sd15.convert_vae_state_dict(state_dict, c.vae)))
    return compare_lines(f"vae vs the {cfg.name} config", expected, converted)


def _motion_lines(state_dict, config) -> list[str]:
    modules = animatediff.convert_motion_adapter_state_dict(state_dict)
    modules = {k: v for k, v in modules.items() if ".motion_modules." in k and ".pos_encoder." not in k}
    pe = [t.shape[1] for k, t in state_dict.items() if k.endswith("pos_encoder.pe")]
    count = len({k.split(".temporal_transformer.")[0] for k in modules})
    head = f"  {count} motion modules" + (f", positional encoding for {pe[0]} frames" if pe else "")
    cfg, expected, _ = _fit(config, lambda c: (animatediff.motion_module_shapes(c.unet, with_pos_encoder=False), modules))
    return [head, *compare_lines(f"vs the {cfg.name} config", expected, modules)]


def _wav2vec2_shapes(config) -> dict[str, torch.Size]:
    from transformers import Wav2Vec2Model

    return _meta_shapes(lambda: Wav2Vec2Model(config))


def _wav2vec2_lines(path: Path) -> list[str]:
    config, state_dict, _ = wav2vec2.read_wav2vec2(path)
    window = 2 * EMOConfig().audio_window + 1
    features = (f"  EMO audio features per frame: {window} x {config.num_hidden_layers} x {config.hidden_size} "
                f"(window x layers x width) = {window * config.num_hidden_layers * config.hidden_size} projection inputs")
    return [f"  {wav2vec2.wav2vec2_variant(config)}", features, f"  {_params(state_dict)}",
            *compare_lines("vs transformers Wav2Vec2Model", _wav2vec2_shapes(config), state_dict)]


def _meta_shapes(build: Callable[[], torch.nn.Module]) -> dict[str, torch.Size]:
    """Key -> shape of the module ``build`` makes, built without allocating weights."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        return {k: v.shape for k, v in build().state_dict().items()}


def _whisper_lines(state_dict: Mapping[str, torch.Tensor], indent: str = "  ") -> list[str]:
    """Which Whisper encoder a file holds, and how its keys fit transformers' ``WhisperEncoder``."""
    from ..whisper_audio import build_whisper_encoder

    encoder = whisper.encoder_state_dict(dict(state_dict))
    config = whisper.whisper_encoder_config(encoder)
    return [f"{indent}{whisper.whisper_variant(config)}",
            *compare_lines("encoder vs transformers WhisperEncoder", _meta_shapes(lambda: build_whisper_encoder(config)),
                           encoder, indent=indent)]


def _file_kind(state_dict: Mapping[str, torch.Tensor]) -> str:
    keys = list(state_dict)
    echomimic_file = echomimic.describe_echomimic_file(dict(state_dict))
    if echomimic_file:
        return echomimic_file
    if whisper.looks_like_whisper(dict(state_dict)):
        return "Whisper encoder file (transformers keys)"
    if any(".motion_modules." in k for k in keys):
        return "AnimateDiff motion module"
    if any(k.startswith(sd15.LDM_UNET_PREFIX) for k in keys):
        family = sd15.foreign_family(dict(state_dict))
        return f"single-file checkpoint: {family}, not SD-1.5" if family else "SD-1.5 single-file checkpoint"
    if "feature_projection.projection.weight" in wav2vec2.normalize_wav2vec2_keys(dict(state_dict)):
        return "wav2vec2 file"
    if "input_blocks.0.0.weight" in state_dict:
        return "LDM UNet state dict"
    if "conv_in.weight" in state_dict and "time_embedding.linear_1.weight" in state_dict:
        return "diffusers UNet file"
    vae_keys = {k.split(".", 1)[1] if k.startswith(sd15.LDM_VAE_PREFIXES) else k for k in keys}
    if "encoder.down.0.block.0.conv1.weight" in vae_keys:
        return "LDM VAE (ComfyUI models/vae layout)"
    if "encoder.down_blocks.0.resnets.0.conv1.weight" in vae_keys:
        return "diffusers VAE file"
    return "unknown"


def _prefix_counts(state_dict: Mapping[str, torch.Tensor]) -> str:
    prefixes: dict[str, int] = {}
    for key in state_dict:
        prefixes[key.split(".")[0]] = prefixes.get(key.split(".")[0], 0) + 1
    return short_list([f"{p} ({n})" for p, n in prefixes.items()], 8)


def _describe_file(path: Path, config: EMOConfig | None) -> tuple[str, list[str]]:
    state_dict = read_state_dict(path, device="meta", mmap=True)
    hallo = FAMILIES["hallo"]
    if hallo.looks_like(state_dict):  # one file of a release that loads only as the whole folder
        return (f"{hallo.title} weights", [f"  {_params(state_dict)}", f"  top-level prefixes: {_prefix_counts(state_dict)}",
                                          f"  they load as a whole release folder: {hallo.layout}"])
    kind = _file_kind(state_dict)
    lines = [f"  {_params(state_dict)}"]
    if kind.startswith(("SD-1.5", "single-file")):
        for part, prefix in SD15_PARTS.items():
            inner = {k: v for k, v in state_dict.items() if k.startswith(prefix)}
            if inner:
                lines.append(f"  {part} ({prefix}*): {_params(inner)}")
        if kind.startswith("SD-1.5"):
            lines += _unet_lines(state_dict, config) + _vae_lines(state_dict, config)
    elif kind.endswith("UNet state dict") or kind == "diffusers UNet file":
        lines += _unet_lines(state_dict, config)
    elif "VAE" in kind:
        lines += _vae_lines(state_dict, config)
    elif kind == "AnimateDiff motion module":
        lines += _motion_lines(state_dict, config)
    elif kind == "wav2vec2 file":
        lines = _wav2vec2_lines(path)
    elif "Whisper" in kind:
        lines += _whisper_lines(state_dict)
    else:
        lines.append(f"  top-level prefixes: {_prefix_counts(state_dict)}")
        lines.append(f"  first keys: {short_list(list(state_dict), 4)}")
    return kind, lines


def _describe_native(path: Path) -> list[str]:
    try:
        config = native.read_config(path / native.CONFIG_FILE)
        lines = [f"  config: {config.name} ({config.width}x{config.height}, f={config.frames_per_clip}, "
                 f"n={config.motion_frames}, m={config.audio_window})"]
    except WeightsError as err:  # still list the parts: the user needs to see what the folder holds
        config, lines = None, [f"  config.json is broken, the checkpoint will not load: {err}"]
    files = {p.stem: p for p in sorted(path.glob("*.safetensors"))}
    for name in native.config_components(config):
        if name not in files:
            raw = name == "audio_projection" and config is not None and config.audio_projection == "none"
            lines.append(f"  {name}: " + ("none (this config reads the audio features raw)" if raw else "absent"))
            continue
        try:
            state_dict = read_state_dict(files[name], device="meta")
        except WeightsError as err:
            lines.append(f"  {name}: unreadable: {err}")
            continue
        lines.append(f"  {name}: {_params(state_dict)}")
        if config is not None:
            lines += _component_lines(name, config, state_dict)
    lines += [f"  not a component: {p.name}" for n, p in files.items() if n not in native.config_components(config)]
    try:
        metadata = native.read_metadata(path)
    except WeightsError as err:
        metadata, lines = {}, [*lines, f"  {err}"]
    if metadata:
        lines.append(f"  metadata: {short_list([f'{k}={v}' for k, v in metadata.items()], 6)}")
    return lines


def _component_lines(name: str, config: EMOConfig, state_dict) -> list[str]:
    """How one native component's keys compare with the layout ``config`` builds."""
    if name == "backbone":
        return compare_lines("vs stock UNet", sd15.unet_shapes(config.unet), state_dict, "extra (EMO layers)", "    ")
    if name == "reference_net":
        from ..reference_net import build_reference_net

        dropped = [part for part, kept in (("cross-attention", config.reference_net_attn2),
                                           ("output layers", config.reference_net_conv_out)) if not kept]
        label = "vs stock UNet" + (f" without {' and '.join(dropped)} (as the config builds it)" if dropped else "")
        return compare_lines(label, _meta_shapes(lambda: build_reference_net(config)), state_dict, indent="    ")
    if name == "temporal":
        shapes = animatediff.motion_module_shapes(config.unet, with_pos_encoder=False)
        return compare_lines("vs AnimateDiff layout", shapes, state_dict, "extra (EMO layers)", "    ")
    if name == "vae":
        return compare_lines("vs AutoencoderKL", sd15.vae_shapes(config.vae), state_dict, indent="    ")
    if name == "audio_encoder":
        if config.audio_encoder_type == "whisper":
            return _whisper_lines(state_dict, indent="    ")
        from transformers import Wav2Vec2Config

        wav2vec2_config = Wav2Vec2Config(**config.audio_encoder)
        return [f"    {wav2vec2.wav2vec2_variant(wav2vec2_config)}",
                *compare_lines("vs Wav2Vec2Model", _wav2vec2_shapes(wav2vec2_config), state_dict, indent="    ")]
    return []


def _diffusers_model_lines(folder: Path, subfolder: str, config: EMOConfig | None) -> list[str]:
    state_dict, source = sd15.read_weights(folder, subfolder, device="meta")
    lines = [f"  {subfolder} ({Path(source).name}): {_params(state_dict)}"]
    if subfolder == "unet":
        return lines + _unet_lines(state_dict, config)
    if subfolder == "vae":
        return lines + _vae_lines(state_dict, config)
    return lines + _motion_lines(state_dict, config)


def _describe_folder(path: Path, config: EMOConfig | None) -> tuple[str, list[str]]:
    components = [c for c in native.COMPONENTS if (path / f"{c}.safetensors").is_file()]
    try:
        data = json.loads((path / "config.json").read_text())
    except FileNotFoundError:
        data = {}
    except (OSError, ValueError) as err:
        if components:
            return "native EMO checkpoint", _describe_native(path)
        names = sorted(p.name for p in path.iterdir())
        return "folder with an unreadable config.json", [f"  config.json: {err}", f"  files: {short_list(names, 8)}"]
    data = data if isinstance(data, dict) else {}
    foreign = "_class_name" in data or "model_type" in data
    if not foreign and ({"unet", "vae", "audio_encoder"} & set(data) or components):
        return "native EMO checkpoint", _describe_native(path)
    family = release_family(path)
    if family is not None and hasattr(family.code(), "describe"):  # a loader may describe its release itself
        return f"{family.title} release", family.code().describe(path)
    if echomimic.is_echomimic_release(path):
        present = [name for name in echomimic.FILES if (path / name).is_file()]
        missing = [name for name in echomimic.FILES if name not in present]
        acc = [p.name for p in sorted(path.glob("*_acc.pth"))]
        return "EchoMimic release (pretrained_weights layout)", [
            f"  files: {short_list(present, 8)}", *([f"  missing: {', '.join(missing)}"] if missing else []),
            *([f"  accelerated weights: {', '.join(acc)}"] if acc else [])]
    if (path / "model_index.json").is_file():
        present = sorted(p.name for p in path.iterdir() if p.is_dir())
        lines = [f"  subfolders: {', '.join(present)}"]
        for sub in ("unet", "vae"):
            if (path / sub).is_dir():
                lines += _diffusers_model_lines(path, sub, config)
        return "diffusers pipeline folder", lines
    if data.get("_class_name") in DIFFUSERS_CLASSES:
        sub = DIFFUSERS_CLASSES[data["_class_name"]]
        return f"diffusers {data['_class_name']} folder", _diffusers_model_lines(path, sub, config)
    if data.get("model_type") == "wav2vec2":
        return "wav2vec2 folder (transformers)", _wav2vec2_lines(path)
    names = sorted(p.name for p in path.iterdir())
    return "unknown folder", [f"  files: {short_list(names, 8)}"]


def describe(path: str | Path, config: EMOConfig | None = None) -> str:
    """A few lines saying what ``path`` is, what it holds, and how its keys fit the expected layout.

    Kinds: native EMO checkpoint, SD-1.5 single file (SDXL/SD-2 named as such), diffusers pipeline or
    model folder, LDM or diffusers UNet/VAE file, AnimateDiff motion module, wav2vec2 folder or file,
    unknown. ``config``: compare against it; default: the preset (full or tiny) that fits best.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: no such file or folder")
    kind, lines = _describe_folder(path, config) if path.is_dir() else _describe_file(path, config)
    return "\n".join([f"{path}: {kind}", *lines])
