"""Our native EMO checkpoint: a folder with ``config.json`` and one ``<component>.safetensors`` each.

Like a diffusers model folder, the model is rebuilt from ``config.json`` (:class:`EMOConfig`) and
each component's weights load from its own file, so a user can swap one (say the VAE) by hand.
Writing is atomic: a failed or cancelled save leaves the previous folder exactly as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..config import EMOConfig
from .safe_load import WeightsError, read_state_dict

COMPONENTS = ("backbone", "reference_net", "temporal", "audio_projection", "face_locator", "speed_encoder",
              "vae", "audio_encoder")
OPTIONAL_COMPONENTS = ("identity_projection", "audio_modules")  # present when the config has them
CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
FORMAT = "emo-native-1"


def _plain_tensors(name: str, component: torch.nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Contiguous CPU copies of a component's tensors (so shared or strided storage saves fine)."""
    state_dict = component.state_dict() if isinstance(component, torch.nn.Module) else component
    tensors = {}
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{name}: {key} is a {type(value).__name__}; a component holds only tensors")
        if value.is_meta:
            raise WeightsError(f"{name}: {key} is on the meta device (never loaded); load weights before saving")
        tensors[key] = value.detach().cpu().clone(memory_format=torch.contiguous_format)
    return tensors


def save_checkpoint(folder: str | Path, config: EMOConfig,
                    components: Mapping[str, torch.nn.Module | Mapping[str, torch.Tensor]],
                    metadata: Mapping[str, Any] | None = None) -> Path:
    """Write an EMO checkpoint folder atomically; return its path.

    components: name (one of :data:`COMPONENTS`) -> module or state dict; tensors keep their dtype.
    metadata: JSON-ready notes (training step, sources) written to ``metadata.json``. Files go into
    a temporary sibling folder first; an existing checkpoint at ``folder`` is replaced only once the
    new one is complete. A folder that is not an EMO checkpoint is never replaced.
    """
    folder = Path(folder)
    unknown = sorted(set(components) - set(COMPONENTS + OPTIONAL_COMPONENTS))
    if unknown:
        raise WeightsError(f"{folder}: unknown components {unknown}; expected names from "
                           f"{list(COMPONENTS + OPTIONAL_COMPONENTS)}")
    if folder.exists() and not (folder.is_dir() and ((folder / CONFIG_FILE).is_file() or not any(folder.iterdir()))):
        raise WeightsError(f"{folder}: exists and is not an EMO checkpoint folder; refusing to replace it")
    tensors = {name: _plain_tensors(name, module) for name, module in components.items()}
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        config.save(staging / CONFIG_FILE)
        for name, state_dict in tensors.items():
            save_file(state_dict, str(staging / f"{name}.safetensors"), metadata={"format": "pt", "emo": FORMAT})
        if metadata is not None:
            (staging / METADATA_FILE).write_text(json.dumps(dict(metadata), indent=2, default=str) + "\n")
        _replace_folder(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _replace_folder(new: Path, target: Path) -> None:
    """Move ``new`` to ``target``; an old ``target`` is set aside first and restored if the move fails."""
    if not target.exists():
        os.replace(new, target)
        return
    old = new.with_suffix(".old")
    os.replace(target, old)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


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
    try:
        config = EMOConfig.load(folder / CONFIG_FILE)
    except (ValueError, TypeError) as err:
        raise WeightsError(f"{folder / CONFIG_FILE}: not an EMO config ({err})") from err
    files = {p.stem: p for p in sorted(folder.glob("*.safetensors"))}
    known = COMPONENTS + OPTIONAL_COMPONENTS
    foreign = sorted(set(files) - set(known))
    if foreign:
        raise WeightsError(f"{folder}: files {[files[n].name for n in foreign]} are not EMO components; "
                           f"expected names from {list(known)}")
    wanted = set(known if components is None else components)
    return config, {name: read_state_dict(path) for name, path in files.items() if name in wanted}


def config_components(config: EMOConfig) -> tuple[str, ...]:
    """The components a checkpoint of ``config`` holds: :data:`COMPONENTS` plus the optional ones it uses."""
    optional = {"identity_projection": bool(config.identity_tokens), "audio_modules": config.audio_modules}
    return COMPONENTS + tuple(name for name in OPTIONAL_COMPONENTS if optional[name])


def read_metadata(folder: str | Path) -> dict[str, Any]:
    """The ``metadata.json`` of an EMO checkpoint folder, or ``{}`` when it has none."""
    path = Path(folder) / METADATA_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
