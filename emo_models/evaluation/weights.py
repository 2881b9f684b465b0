"""Where metric networks' weights live, which files they are, and how they load.

Users place the standard files in ``models/emo_metrics/`` (ComfyUI's models folder, or
``$EMO_MODELS_DIR/emo_metrics``, or any folder given with ``--weights``). Nothing downloads: a
missing file is reported with its name and the folders searched. Files are read only as tensors
(safetensors, or ``torch.load(weights_only=True)`` through :func:`emo_models.weights.read_state_dict`);
no pickled code or TorchScript runs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..weights.safe_load import load_component, read_state_dict

METRICS_FOLDER = "emo_metrics"


@dataclass(frozen=True)
class MetricWeights:
    """The weight file one metric reads: accepted file names (first = the usual one) and its source."""

    metric: str
    names: tuple[str, ...]
    source: str


WEIGHT_FILES = {
    "fid": MetricWeights("fid", ("pt_inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.safetensors"),
                         "pytorch-fid's FID Inception (TF 2015-12-05 graph), a plain state dict"),
    "fvd": MetricWeights("fvd", ("i3d_pretrained_400.pt", "i3d_pretrained_400.safetensors"),
                         "I3D Kinetics-400 (TF-Hub i3d-kinetics-400 converted for pytorch-i3d, as VideoGPT ships it)"),
    "sync": MetricWeights("sync", ("syncnet_v2.model", "syncnet_v2.safetensors"),
                          "SyncNet v2 (joonson/syncnet_python), a plain state dict"),
    "fsim": MetricWeights("fsim", ("glintr100.onnx",), "InsightFace ArcFace R100 (antelopev2 / Hallo's face_analysis)"),
    "efid": MetricWeights("efid", ("face_landmarker_v2_with_blendshapes.task",),
                          "MediaPipe Face Landmarker with blendshapes (Hallo's face_analysis/models)"),
}


def default_folders() -> list[Path]:
    """``$EMO_MODELS_DIR/emo_metrics`` when set, and ``./models/emo_metrics``."""
    folders = []
    if os.environ.get("EMO_MODELS_DIR"):
        folders.append(Path(os.environ["EMO_MODELS_DIR"]) / METRICS_FOLDER)
    folders.append(Path.cwd() / "models" / METRICS_FOLDER)
    return folders


def search_folders(extra: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """Folders searched for metric weights: ``extra`` (``--weights``) first, then the defaults."""
    seen, folders = set(), []
    for folder in [Path(f) for f in extra] + default_folders():
        key = folder.resolve()
        if key not in seen:
            seen.add(key)
            folders.append(folder)
    return folders


def find_weights(metric: str, folders: Sequence[Path]) -> Path | None:
    """The first accepted file for ``metric`` in ``folders`` (folder order, then name order), or None."""
    for folder in folders:
        for name in WEIGHT_FILES[metric].names:
            if (folder / name).is_file():
                return folder / name
    return None


def missing_message(metric: str, folders: Sequence[Path]) -> str:
    """Why ``metric`` is skipped: the file to place and where."""
    spec = WEIGHT_FILES[metric]
    where = ", ".join(str(f) for f in folders)
    return (f"{metric}: skipped, no {spec.names[0]} ({spec.source}) found; put it in one of: {where} "
            f"(or pass its folder with --weights)")


def sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_metric_net(path: str | os.PathLike, build: Callable[[dict[str, torch.Tensor]], torch.nn.Module],
                    component: str) -> torch.nn.Module:
    """Read a state dict (tensors only), build the module that fits it, load it strictly, eval mode.

    build: state dict -> module (it reads the widths from the tensors' shapes). BatchNorm's
    ``num_batches_tracked`` may be absent (files saved by old torch versions).
    """
    state_dict = read_state_dict(path)
    module = build(state_dict)
    load_component(module, state_dict, component, str(path), allow_missing=lambda k: k.endswith("num_batches_tracked"))
    return module.eval().requires_grad_(False)


def published_sizes(state_dict: dict[str, torch.Tensor], net: str, file: str, stem: tuple[str, int],
                    head: str) -> tuple[float, int]:
    """``(width, head outputs)`` of a state dict: ``stem`` = (key of the first layer, its published
    output channels), ``head`` = key of the last layer; a file without them is refused, naming ``file``."""
    first, last = state_dict.get(stem[0]), state_dict.get(head)
    if first is None or last is None:
        raise ValueError(f"{net}: the file lacks {stem[0]} / {head}; expected the state dict {file}")
    return first.shape[0] / stem[1], int(last.shape[0])


def channels(count: int, width: float) -> int:
    """A layer's channel count at ``width`` times the published size (at least 1)."""
    return max(1, round(count * width))
