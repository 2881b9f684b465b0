"""The bundled demo model: a small EMO model trained on procedural talking faces, shipped as package data.

This is the one place its paths come from. ``python -m emo_models demo`` (:mod:`emo_models.cli_generate`)
animates the bundled sample, ``assets/demo_portrait.png`` and ``assets/demo_audio.wav`` (a procedural
face and voice held out of training), or your own files, through the same path as ``generate``; its
sampling defaults are the checkpoint's preset (``assets/demo_model/config.json`` -> ``generation``).
``train-demo`` (:mod:`.recipe`) retrains the bundled checkpoint with one command.
"""

from __future__ import annotations

from pathlib import Path

ASSETS = Path(__file__).resolve().parent / "assets"
DEMO_MODEL = ASSETS / "demo_model"
DEMO_PORTRAIT = ASSETS / "demo_portrait.png"
DEMO_AUDIO = ASSETS / "demo_audio.wav"


def load_demo_pipeline(checkpoint: str | Path = DEMO_MODEL):
    """The demo checkpoint as an fp32 CPU :class:`~emo_models.pipeline.EMOPipeline` (fp16 files are widened)."""
    import torch

    from ..loading import load_pipeline

    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise FileNotFoundError(f"demo model: no checkpoint at {checkpoint}; it ships in {DEMO_MODEL} "
                                f"(or retrain it: python -m emo_models train-demo --out runs/demo)")
    pipeline, _ = load_pipeline(checkpoint, device="cpu", dtype=torch.float32)
    return pipeline
