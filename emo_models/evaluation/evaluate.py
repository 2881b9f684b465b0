"""EMO's Table 1 over paired videos: FID, FVD, Sync-C/Sync-D, F-SIM and E-FID in one report.

Videos are decoded one pair at a time; only their features are kept, so long test sets fit in memory.
Set-level figures (FID, FVD, E-FID) are Fréchet distances between all generated and all reference
features; per-video figures use that video's features only (FVD per video needs >= 2 clips each).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .frechet import frechet_distance_of_features
from .videos import Video, load_video
from .weights import WEIGHT_FILES, find_weights, missing_message, sha256

METRICS = ("fid", "fvd", "sync", "fsim", "efid")
SET_METRICS = ("fid", "fvd", "efid")  # Fréchet distances between feature sets


def parse_metrics(text: str) -> tuple[str, ...]:
    """``"fid,sync"`` -> ("fid", "sync"); unknown names are refused, naming the known ones."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ValueError(f"--metrics: {', '.join(unknown) or repr(text)} not known; choose from {','.join(METRICS)}")
    return names


def _build(metric: str, path: Path, device, frame_step: int):
    """The metric object for a weights file, or a skip message when a library it needs is missing."""
    from . import metrics

    if metric == "fid":
        return metrics.FIDFeatures(path, device, frame_step)
    if metric == "fvd":
        return metrics.FVDFeatures(path, device)
    if metric == "sync":
        return metrics.SyncScores(path, device)
    if metric == "efid":
        from .expression import mediapipe_problem

        return mediapipe_problem() or metrics.ExpressionFeatures(path, frame_step)
    try:
        return metrics.FaceSimilarity(path, frame_step)
    except (FileNotFoundError, ImportError) as err:  # the detector beside it, or onnxruntime, missing
        return f"fsim: skipped, {err}"


def prepare_metrics(names: Sequence[str], folders: Sequence[Path], device="cpu", frame_step: int = 1):
    """Build the metric objects whose weights are placed: ``({metric: object}, {metric: skip message}, weights)``."""
    ready, skipped, weights = {}, {}, {}
    for metric in names:
        path = find_weights(metric, folders)
        if path is None:
            skipped[metric] = missing_message(metric, folders)
            continue
        built = _build(metric, path, device, frame_step)
        if isinstance(built, str):
            skipped[metric] = built
            continue
        ready[metric] = built
        weights[metric] = dict(file=str(path), sha256=sha256(path), source=WEIGHT_FILES[metric].source)
    return ready, skipped, weights


def _frechet_or_none(a: list[np.ndarray], b: list[np.ndarray]) -> float | None:
    a, b = [x for x in a if len(x)], [x for x in b if len(x)]
    if not a or not b or sum(map(len, a)) < 2 or sum(map(len, b)) < 2:
        return None
    return frechet_distance_of_features(np.concatenate(a), np.concatenate(b))


def _sync_of(metric, video: Video, fallback_audio: np.ndarray | None) -> dict:
    audio = video.audio if video.audio is not None else fallback_audio
    if audio is None:
        return {"note": "no audio track here or in the paired video"}
    try:
        return metric(video, audio)
    except ValueError as err:
        return {"note": str(err)}


def evaluate(pairs: Sequence[tuple[str, Path, Path]], ready: dict, skipped: dict | None = None,
             weights: dict | None = None, on_pair: Callable[[int, int, str], None] | None = None) -> dict:
    """Run the prepared metrics over (name, generated, reference) pairs -> report dict (JSON-ready).

    Report: ``aggregate`` {fid, fvd, sync_c, sync_d, sync_c_reference, sync_d_reference, fsim, efid},
    ``per_video`` {name: figures}, ``protocol`` per metric, ``weights`` (file, sha256), ``skipped``.
    """
    started = time.time()
    features = {m: ([], []) for m in SET_METRICS if m in ready}
    per_video = {}
    for index, (name, gen_path, ref_path) in enumerate(pairs):
        generated, reference = load_video(gen_path, name), load_video(ref_path, name)
        row = dict(generated=str(gen_path), reference=str(ref_path), frames=len(generated.frames),
                   reference_frames=len(reference.frames), fps=generated.fps)
        for metric, (gen_list, ref_list) in features.items():
            gen_list.append(ready[metric](generated))
            ref_list.append(ready[metric](reference))
            row[metric] = _frechet_or_none(gen_list[-1:], ref_list[-1:])
        if "sync" in ready:
            row["sync"] = _sync_of(ready["sync"], generated, reference.audio)
            row["sync_reference"] = _sync_of(ready["sync"], reference, None)
        if "fsim" in ready:
            row.update(ready["fsim"](reference.frames[0], generated))
        per_video[name] = row
        if on_pair is not None:
            on_pair(index + 1, len(pairs), name)

    aggregate = {m: _frechet_or_none(*features[m]) for m in features}
    if "sync" in ready:
        for key, suffix in (("sync", ""), ("sync_reference", "_reference")):
            for score in ("sync_c", "sync_d"):
                values = [r[key][score] for r in per_video.values() if score in r[key]]
                aggregate[score + suffix] = float(np.mean(values)) if values else None
    if "fsim" in ready:
        values = [r["fsim"] for r in per_video.values() if r["fsim"] is not None]
        aggregate["fsim"] = float(np.mean(values)) if values else None
    return dict(format="emo_models evaluate report v1", pairs=len(pairs), aggregate=aggregate,
                per_video=per_video, protocol={m: ready[m].protocol for m in ready},
                weights=weights or {}, skipped=skipped or {}, seconds=round(time.time() - started, 1))
