"""Our native EMO checkpoint: a folder with ``config.json`` and one ``<component>.safetensors`` each.

Like a diffusers model folder, the model is rebuilt from ``config.json`` (:class:`EMOConfig`) and
each component's weights load from its own file, so a user can swap one (say the VAE) by hand.
Writing is atomic (:func:`~emo_models.atomic_output.atomic_folder`): a failed or cancelled save leaves
the previous folder exactly as it was; an existing folder is written into only with ``force``, and then
only the checkpoint's own files are replaced.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..atomic_output import atomic_folder, check_output_folder
from ..config import EMOConfig
from .safe_load import WeightsError, read_state_dict

COMPONENTS = ("backbone", "reference_net", "temporal", "audio_projection", "face_locator", "speed_encoder",
              "vae", "audio_encoder")
OPTIONAL_COMPONENTS = ("identity_projection", "audio_modules")  # present when the config has them
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
FORMAT = "emo-native-1"


def _plain_tensors(name: str, component: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A component's tensors as safetensors writes them: on the CPU, contiguous, no two sharing storage.
    Only tensors that are not are copied (views, transposes, GPU tensors); the rest are written from where
    they are, so saving a model never holds a second copy of it (a full-size ``init`` peaked at 19.6 GB
    when every tensor was cloned first)."""
    state_dict = component.state_dict() if isinstance(component, torch.nn.Module) else component
    tensors, storages = {}, set()
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{name}: {key} is a {type(value).__name__}; a component holds only tensors")
        if value.is_meta:
            raise WeightsError(f"{name}: {key} is on the meta device (never loaded); load weights before saving")
        value = value.detach()
        storage = value.untyped_storage()
        if value.device.type != "cpu" or not value.is_contiguous() or storage.data_ptr() in storages \
                or value.nbytes != storage.nbytes():
            value = value.cpu().clone(memory_format=torch.contiguous_format)
        storages.add(value.untyped_storage().data_ptr())
        tensors[key] = value
    return tensors


def is_checkpoint_file(name: str) -> bool:
    """True for the names a native checkpoint consists of (config, metadata, one file per component)."""
    return name in (CONFIG_FILE, METADATA_FILE) or name in {f"{c}.safetensors" for c in COMPONENTS + OPTIONAL_COMPONENTS}


def check_checkpoint_output(folder: str | Path, force: bool = False, option: str = "out") -> Path:
    """Refuse, before any heavy work, a checkpoint folder :func:`save_checkpoint` must not write (a file,
    an unwritable place, a non-empty folder without ``force``); see :func:`~emo_models.atomic_output.check_output_folder`."""
    return check_output_folder(folder, force=force, option=option)


def save_checkpoint(folder: str | Path, config: EMOConfig,
                    components: Mapping[str, torch.nn.Module | Mapping[str, torch.Tensor]],
                    metadata: Mapping[str, Any] | None = None, force: bool = False, option: str = "out") -> Path:
    """Write an EMO checkpoint folder atomically; return its path (errors name the folder as ``option``).

    components: name (one of :data:`COMPONENTS`) -> module or state dict; tensors keep their dtype.
    metadata: JSON-ready notes (training step, sources) written to ``metadata.json``. Files go into
    a temporary sibling folder first and move to ``folder`` once all are complete. A folder that
    exists and is not empty is refused unless ``force``; with it, the checkpoint's files (config,
    metadata, component files, also stale ones not written now) are replaced and nothing else in the
    folder is touched (a training run's ``checkpoint-N/`` beside them stays).
    """
    folder = Path(folder)
    unknown = sorted(set(components) - set(COMPONENTS + OPTIONAL_COMPONENTS))
    if unknown:
        raise WeightsError(f"{folder}: unknown components {unknown}; expected names from "
                           f"{list(COMPONENTS + OPTIONAL_COMPONENTS)}")
    check_checkpoint_output(folder, force=force, option=option)
    tensors = {name: _plain_tensors(name, module) for name, module in components.items()}
    tensors = {name: state_dict for name, state_dict in tensors.items() if state_dict}  # parameterless parts
    with atomic_folder(folder, force=force, option=option, owned=is_checkpoint_file) as staging:
        config.save(staging / CONFIG_FILE)
        for name, state_dict in tensors.items():
            save_file(state_dict, str(staging / f"{name}.safetensors"), metadata={"format": "pt", "emo": FORMAT})
        if metadata is not None:
            (staging / METADATA_FILE).write_text(json.dumps(dict(metadata), indent=2, default=str) + "\n")
    return folder


def load_checkpoint(folder: str | Path, components: Iterable[str] | None = None
                    ) -> tuple[EMOConfig, dict[str, dict[str, torch.Tensor]]]:
    """Read an EMO checkpoint folder: ``(config, {component: state dict})``.

    Components absent from the folder are absent from the dict; ``components`` limits which are
    read. Refuses a missing folder, a missing or invalid ``config.json``, a corrupt component file
    and files that are not EMO components, each with a :class:`WeightsError` naming the path.
    """
    folder = Path(folder)
    expected = f"expected an EMO checkpoint folder ({CONFIG_FILE} + <component>.safetensors, ComfyUI models/emo/<name>/)"
    if not folder.is_dir():
        raise WeightsError(f"{folder}: {'is a file' if folder.exists() else 'no such folder'}; {expected}")
    if not (folder / CONFIG_FILE).is_file():
        raise WeightsError(f"{folder}: no {CONFIG_FILE}; {expected}")
    config = read_config(folder / CONFIG_FILE)
    files = {p.stem: p for p in sorted(folder.glob("*.safetensors"))}
    known = COMPONENTS + OPTIONAL_COMPONENTS
    foreign = sorted(set(files) - set(known))
    if foreign:
        raise WeightsError(f"{folder}: files {[files[n].name for n in foreign]} are not EMO components; "
                           f"expected names from {list(known)}")
    wanted = set(known if components is None else components)
    return config, {name: read_state_dict(path) for name, path in files.items() if name in wanted}


def config_components(config: EMOConfig | None) -> tuple[str, ...]:
    """The components a checkpoint of ``config`` may hold: :data:`COMPONENTS` plus the optional ones it
    uses (None, a config that cannot be read: :data:`COMPONENTS`)."""
    if config is None:
        return COMPONENTS
    optional = {"identity_projection": bool(config.identity_tokens), "audio_modules": config.audio_modules}
    return COMPONENTS + tuple(name for name in OPTIONAL_COMPONENTS if optional[name])


def read_config(path: str | Path) -> EMOConfig:
    """An EMO checkpoint's ``config.json``, checked field by field and part by part (the UNet, VAE and
    wav2vec2 arguments must build); a :class:`WeightsError` names the file and the field at fault."""
    try:
        config = EMOConfig.load(path)
    except (ValueError, TypeError) as err:
        raise WeightsError(str(err)) from None
    from .sd15 import unet_shapes, vae_shapes

    for field, build in (("unet", unet_shapes), ("vae", vae_shapes), ("audio_encoder", _wav2vec2_config)):
        try:
            build(getattr(config, field))
        except Exception as err:  # any constructor error means the field does not describe that part
            part = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "audio_encoder": "Wav2Vec2Config"}[field]
            raise WeightsError(f"{path}: field {field!r} does not describe a {part} ({type(err).__name__}: {err}); "
                               "fix config.json or copy it from the checkpoint it came from") from None
    return config


def _wav2vec2_config(arguments: dict):
    from transformers import Wav2Vec2Config

    config = Wav2Vec2Config(**arguments)
    if config.hidden_size % config.num_attention_heads:
        raise ValueError(f"hidden_size {config.hidden_size} is not a multiple of num_attention_heads "
                         f"{config.num_attention_heads}")
    return config


def read_metadata(folder: str | Path) -> dict[str, Any]:
    """The ``metadata.json`` of an EMO checkpoint folder, or ``{}`` when it has none."""
    path = Path(folder) / METADATA_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise WeightsError(f"{path}: cannot be read as JSON ({err}); fix it or delete it (it only holds notes)") \
            from None
    if not isinstance(data, dict):
        raise WeightsError(f"{path}: holds a JSON {type(data).__name__}, not an object; fix it or delete it")
    return data
