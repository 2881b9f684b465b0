"""Isolate Vocals: a song in, its vocals (for Audio Features) and its accompaniment out.

The model should hear the singer, not the band; the video keeps the original mix (connect the song
itself, not these outputs, to CreateVideo).
"""

from __future__ import annotations

import os

import torch

from . import comfy_bridge
from .boundary import audio_to_waveform

BUILTIN_LABEL = "built-in (no weights)"


def separation_models() -> dict[str, str]:
    """Choice label -> file: MDX-Net models in models/audio_separation, and the audio_separator/ folder
    of a Hallo release kept in models/emo/<name>/."""
    from emo_models.vocals import find_separation_models

    choices = {}
    for root in comfy_bridge.model_roots("audio_separation"):
        for path in find_separation_models([root]):
            choices.setdefault(f"audio_separation/{os.path.relpath(path, root)}".replace(os.sep, "/"), str(path))
    for root in comfy_bridge.model_roots("emo"):
        releases = sorted(e.path for e in os.scandir(root) if e.is_dir()) if os.path.isdir(root) else []
        for folder in releases:
            for path in find_separation_models([os.path.join(folder, "audio_separator")]):
                choices.setdefault(f"emo/{os.path.relpath(path, root)}".replace(os.sep, "/"), str(path))
    return choices


class IsolateVocals:
    """Vocals and accompaniment of a song, same channels, length and sample rate (vocals + accompaniment = song)."""

    CATEGORY = "EMO"
    RETURN_TYPES = ("AUDIO", "AUDIO")
    RETURN_NAMES = ("vocals", "accompaniment")
    OUTPUT_TOOLTIPS = ("The voice alone: connect it to Audio Features.",
                       "Everything else (drums, bass, chords).")
    FUNCTION = "isolate"
    DESCRIPTION = __doc__

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "audio": ("AUDIO", {"tooltip": "A song (or speech over music), mono or stereo, any sample rate."}),
            "method": ([BUILTIN_LABEL, *separation_models()], {"default": BUILTIN_LABEL, "tooltip": "built-in: "
                       "no weights, median-filter masks (good on steady accompaniment); or an MDX-Net .onnx "
                       "(e.g. Kim_Vocal_2.onnx) from models/audio_separation or a Hallo release's "
                       "audio_separator/ folder in models/emo; needs onnxruntime."}),
        }}

    def isolate(self, audio, method):
        from emo_models.pipeline import GenerationCancelled
        from emo_models.vocals import BUILTIN, isolate_vocals

        waveform, rate = audio_to_waveform(audio, "audio")
        if method == BUILTIN_LABEL:
            chosen = BUILTIN
        else:
            models = separation_models()
            if method not in models:
                raise ValueError(f"method: {method!r} is not in models/audio_separation or a models/emo/<name>/"
                                 f"audio_separator folder; put the .onnx there and refresh, or pick {BUILTIN_LABEL}")
            chosen = models[method]
        batch, samples = waveform.shape[0], waveform.shape[-1]
        bar = comfy_bridge.progress_bar(batch * samples)
        vocals, rest = [], []
        for i in range(batch):
            def on_progress(done, total, i=i):
                bar.update_absolute(i * samples + done, batch * samples)

            try:
                result = isolate_vocals(waveform[i], rate, chosen, name="audio" if batch == 1 else f"audio[{i}]",
                                        on_progress=on_progress, should_stop=comfy_bridge.processing_interrupted)
            except GenerationCancelled:
                comfy_bridge.throw_exception_if_processing_interrupted()
                raise
            vocals.append(torch.from_numpy(result.vocals))
            rest.append(torch.from_numpy(result.accompaniment))
        device = comfy_bridge.intermediate_device()
        return ({"waveform": torch.stack(vocals).to(device), "sample_rate": rate},
                {"waveform": torch.stack(rest).to(device), "sample_rate": rate})
