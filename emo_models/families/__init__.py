"""Open model families whose public releases load into our model, and how each is recognised.

Each family has a module here with its config and inference preset (``echomimic.py``, ``hallo.py``) and a loader
module in ``emo_models.weights`` with ``is_release(path) -> bool`` (a release folder as users download
it), ``looks_like(state_dict) -> bool`` (a weights file in the family's layout), ``load(path, device,
dtype, variant=None) -> (EMOPipeline, reports)`` (strict: every key used, every weight of ours given;
dtype None keeps the files' precisions) and ``VARIANTS`` (weight sets a release may hold, first the
default). Adding a family is one line of :data:`FAMILIES`; ``load_pipeline``, ``inspect`` and
``convert --from NAME`` read this table.
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
    """name: as in ``convert --from NAME``; title: for messages; layout: the files a release holds;
    module: its loader module (imported on first use); marker: a file (relative path) every release
    folder holds, how model lists find releases without importing the loader."""

    name: str
    title: str
    layout: str
    module: str
    marker: str

    def code(self) -> ModuleType:
        """The family's loader module."""
        return importlib.import_module(self.module)

    @property
    def variants(self) -> tuple[str, ...]:
        """Weight sets a release may hold (empty: one)."""
        return tuple(getattr(self.code(), "VARIANTS", ()))

    def is_release(self, path: str | Path) -> bool:
        return bool(self.code().is_release(path))

    def looks_like(self, state_dict: Mapping[str, torch.Tensor]) -> bool:
        return bool(self.code().looks_like(state_dict))

    def load(self, path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | None = torch.float32,
             variant: str | None = None):
        """(EMOPipeline, one LoadReport per component) from a release folder."""
        if variant is not None and variant not in self.variants:
            raise ValueError(f"variant: {variant!r}; a {self.title} release has "
                             f"{', '.join(self.variants) or 'no variants'}")
        options = {"variant": variant} if variant is not None else {}
        return self.code().load(path, device=device, dtype=dtype, **options)


FAMILIES: dict[str, Family] = {
    "echomimic": Family("echomimic", "EchoMimic (antgroup/echomimic)",
                        "denoising_unet.pth, reference_unet.pth, face_locator.pth, motion_module.pth (or the "
                        "*_acc.pth pair), sd-image-variations-diffusers/unet/config.json, sd-vae-ft-mse/, "
                        "audio_processor/whisper_tiny.pt", "emo_models.weights.echomimic", "reference_unet.pth"),
    "hallo": Family("hallo", "Hallo (fudan-generative-vision/hallo)",
                    "hallo/net.pth, motion_module/mm_sd_v15_v2.ckpt, stable-diffusion-v1-5/unet/config.json, "
                    "sd-vae-ft-mse/, wav2vec/wav2vec2-base-960h/ (face_analysis/models/ for real photos)",
                    "emo_models.weights.hallo", "hallo/net.pth"),
}


def release_family(path: str | Path) -> Family | None:
    """The family whose release ``path`` is, else None."""
    return next((f for f in FAMILIES.values() if f.is_release(path)), None)


def weights_family(state_dict: Mapping[str, torch.Tensor]) -> Family | None:
    """The family whose weights-file layout ``state_dict`` has, else None."""
    return next((f for f in FAMILIES.values() if f.looks_like(state_dict)), None)


def get_family(name: str) -> Family:
    """A family by name; the error lists the known ones."""
    if name not in FAMILIES:
        raise ValueError(f"--from: unknown family {name!r}; choose one of {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]
