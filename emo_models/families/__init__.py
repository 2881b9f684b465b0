"""Open model families whose public releases load into our model, and how each is recognised.

Each family has a module here holding its config and inference constants (``hallo.py``) and a
loader module in ``emo_models.weights`` with three functions:
``is_release(path) -> bool`` (a release folder, or its main weights file), ``looks_like(state_dict) -> bool``
(a weights file in the family's layout) and ``load(path, device, dtype) -> (EMOPipeline, reports)``
(strict: every key used, every weight of ours given). Adding a family is one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import torch


@dataclass(frozen=True)
class Family:
    """name: as in ``convert --from NAME``; title: for messages; layout: the files a release holds."""

    name: str
    title: str
    layout: str
    module: str

    def code(self) -> ModuleType:
        """The family's loader module (imported on first use)."""
        return importlib.import_module(self.module)

    def is_release(self, path: str | Path) -> bool:
        return bool(self.code().is_release(path))

    def looks_like(self, state_dict: Mapping[str, torch.Tensor]) -> bool:
        return bool(self.code().looks_like(state_dict))

    def load(self, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32):
        """(EMOPipeline, one LoadReport per component) from a release folder."""
        return self.code().load(path, device=device, dtype=dtype)


FAMILIES: dict[str, Family] = {
    "hallo": Family("hallo", "Hallo (fudan-generative-vision/hallo)",
                    "hallo/net.pth, stable-diffusion-v1-5/unet/config.json, sd-vae-ft-mse/, "
                    "wav2vec/wav2vec2-base-960h/ (face_analysis/models/ for real photos)",
                    "emo_models.weights.hallo"),
}


def release_family(path: str | Path) -> Family | None:
    """The family whose release ``path`` is (a folder or its main weights file), else None."""
    return next((f for f in FAMILIES.values() if f.is_release(path)), None)


def weights_family(state_dict: Mapping[str, torch.Tensor]) -> Family | None:
    """The family whose weights-file layout ``state_dict`` has, else None."""
    return next((f for f in FAMILIES.values() if f.looks_like(state_dict)), None)


def get_family(name: str) -> Family:
    """A family by name; the error lists the known ones."""
    if name not in FAMILIES:
        raise ValueError(f"family: unknown {name!r}; choose one of {sorted(FAMILIES)}")
    return FAMILIES[name]
