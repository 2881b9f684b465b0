"""MDX-Net vocal models (UVR's ``.onnx`` files, e.g. Hallo's ``Kim_Vocal_2.onnx``) run with onnxruntime.

An MDX-Net model maps a stereo spectrogram segment to the spectrogram of one stem. Its input and
output are ``(batch, 4, dim_f, dim_t)`` float32: ``[L.real, L.imag, R.real, R.imag]`` over the first
``dim_f`` bins of a Hann STFT (``n_fft``, hop 1024, centred, reflect-padded) of ``dim_t`` frames at
44.1 kHz. Each segment covers ``hop * (dim_t - 1)`` samples; segments overlap by :data:`OVERLAP`,
are Hann-weighted and averaged, and the first and last ``n_fft / 2`` samples of each are padding.
The lowest 3 bins are zeroed before the model. Vocals are ``compensate * stem`` of a vocal model and
``mix - compensate * stem`` of an instrumental one, so that, as in UVR, the other stem is the rest of the mix.

Which ``n_fft``, ``dim_f``, ``dim_t`` and ``compensate`` a file needs is not stored in it: UVR keys
them by the MD5 of the file's last 10,000 KiB (:func:`uvr_hash`) in ``model_data.json``. We read that
file when it sits beside the model (Hallo's release ships ``audio_separator/mdx_model_data.json``),
else :data:`KNOWN_MODELS`, and check the result against the ONNX graph's input shape.

onnxruntime is an optional dependency (``pip install onnxruntime``, or ``onnxruntime-gpu``), imported
only here; it runs UVR's files as they are, without the audio-separator package, whose pinned
dependencies are what breaks Hallo installs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import librosa
import numpy as np

from ..media_audio import resample

MODEL_RATE = 44100
HOP = 1024
OVERLAP = 0.25  # of a segment; audio-separator's default
ZEROED_BINS = 3
HASH_BYTES = 10000 * 1024
DATA_FILES = ("mdx_model_data.json", "model_data.json")


@dataclass(frozen=True)
class MDXParams:
    """What an MDX-Net file needs: STFT size, bins and frames per segment, the other stem's gain."""

    n_fft: int
    dim_f: int
    dim_t: int
    compensate: float
    primary_stem: str  # "Vocals" or "Instrumental": what the model outputs

    @classmethod
    def from_uvr(cls, entry: dict) -> MDXParams:
        """From a UVR ``model_data.json`` entry (``mdx_dim_t_set`` is log2 of dim_t)."""
        return cls(n_fft=int(entry["mdx_n_fft_scale_set"]), dim_f=int(entry["mdx_dim_f_set"]),
                   dim_t=2 ** int(entry["mdx_dim_t_set"]), compensate=float(entry["compensate"]),
                   primary_stem=str(entry["primary_stem"]))


# UVR's parameters of the vocal models Hallo and UVR users have, by UVR hash (see uvr_hash).
KNOWN_MODELS = {
    "970b3f9492014d18fefeedfe4773cb42": ("Kim_Vocal_2", MDXParams(7680, 3072, 256, 1.009, "Vocals")),
    "77d07b2667ddf05b9e3175941b4454a0": ("UVR-MDX-NET-Voc_FT", MDXParams(7680, 3072, 256, 1.021, "Vocals")),
}


def uvr_hash(path: str | Path) -> str:
    """UVR's model key: MD5 of the file's last 10,000 KiB (of the whole file when it is smaller)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - HASH_BYTES))
        return hashlib.md5(f.read()).hexdigest()


def model_params(path: Path) -> MDXParams:
    """The parameters of an MDX-Net file: from a UVR ``model_data.json`` beside it, else the built-in
    table; an unknown file is a ValueError saying what to put beside it."""
    key = uvr_hash(path)
    for name in DATA_FILES:
        data_file = path.parent / name
        if data_file.is_file():
            try:
                table = json.loads(data_file.read_text())
            except (OSError, ValueError) as err:
                raise ValueError(f"vocal separation: cannot read {data_file} ({err}); fix or remove it") from None
            if isinstance(table, dict) and isinstance(table.get(key), dict) and "mdx_dim_f_set" in table[key]:
                return MDXParams.from_uvr(table[key])
    if key in KNOWN_MODELS:
        return KNOWN_MODELS[key][1]
    known = ", ".join(f"{name}.onnx" for name, _ in KNOWN_MODELS.values())
    raise ValueError(f"vocal separation: {path.name} (UVR hash {key}) is not an MDX-Net model we know ({known}); "
                     f"put UVR's mdx_model_data.json beside it (Hallo's audio_separator/ folder has one)")


def _session(path: Path):
    try:
        import onnxruntime
    except ImportError:
        raise ValueError(f"vocal separation with {path.name} needs onnxruntime: pip install onnxruntime "
                         "(or onnxruntime-gpu); or use the built-in separation") from None
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                 if p in onnxruntime.get_available_providers()]
    try:
        return onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types for unreadable graphs
        raise ValueError(f"vocal separation: {path} is not a readable ONNX model ({str(err)[:200]}); put an "
                         "MDX-Net .onnx such as Kim_Vocal_2.onnx in models/audio_separation") from None


def _check_layout(path: Path, session, params: MDXParams) -> tuple[str, str]:
    """The graph's input/output names, after checking its input is (batch, 4, dim_f, dim_t)."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = list(inputs[0].shape) if inputs else []
    expected = [4, params.dim_f, params.dim_t]
    fixed = [d if isinstance(d, int) else None for d in shape[1:]]
    if len(inputs) != 1 or len(outputs) != 1 or len(shape) != 4 or any(
            d is not None and d != e for d, e in zip(fixed, expected)):
        raise ValueError(f"vocal separation: {path.name} takes {[i.shape for i in inputs]}, not an MDX-Net "
                         f"spectrogram (batch, {', '.join(map(str, expected))}); is it the file its name says?")
    return inputs[0].name, outputs[0].name


class MDXNetSeparator:
    """An MDX-Net ``.onnx`` file as a :class:`~emo_models.vocals.VocalSeparator` (any rate, mono or stereo)."""

    def __init__(self, path: str | Path):
        path = Path(path)
        self.params = model_params(path)
        self.session = _session(path)
        self.input_name, self.output_name = _check_layout(path, self.session, self.params)
        self.description = f"MDX-Net {path.name}"

    def _segment(self, wave: np.ndarray) -> np.ndarray:
        """(2, hop*(dim_t-1)) -> the model's stem, same shape."""
        p = self.params
        spec = librosa.stft(wave, n_fft=p.n_fft, hop_length=HOP, center=True, pad_mode="reflect")[:, : p.dim_f]
        spec[:, :ZEROED_BINS] = 0
        x = np.stack([spec.real, spec.imag], axis=1).reshape(1, 4, p.dim_f, p.dim_t).astype(np.float32)
        y = self.session.run([self.output_name], {self.input_name: x})[0]
        y = np.asarray(y, np.float32).reshape(2, 2, p.dim_f, p.dim_t)
        full = np.zeros((2, p.n_fft // 2 + 1, p.dim_t), np.complex64)
        full[:, : p.dim_f] = y[:, 0] + 1j * y[:, 1]
        return librosa.istft(full, n_fft=p.n_fft, hop_length=HOP, center=True, length=wave.shape[-1])

    def stem(self, mix: np.ndarray) -> np.ndarray:
        """The model's own stem of a stereo mix at 44.1 kHz: (2, n) -> (2, n)."""
        p = self.params
        size = HOP * (p.dim_t - 1)
        trim = p.n_fft // 2
        step = max(1, int((1 - OVERLAP) * size))
        n = mix.shape[-1]
        padded = np.pad(mix, ((0, 0), (trim, trim + size)))
        out = np.zeros_like(padded)
        weight = np.zeros(padded.shape[-1], np.float32)
        window = np.hanning(size).astype(np.float32)
        for start in range(0, n + 2 * trim, step):
            segment = padded[:, start:start + size]
            out[:, start:start + size] += self._segment(segment) * window
            weight[start:start + size] += window
        return out[:, trim:trim + n] / np.maximum(weight[trim:trim + n], 1e-8)

    def vocals(self, mix: np.ndarray, sample_rate: int) -> np.ndarray:
        """mix (C, n) at any rate -> vocals (C, n): stereo at 44.1 kHz for the model, then back."""
        channels, n = mix.shape
        stereo = mix if channels == 2 else np.repeat(mix.mean(axis=0, keepdims=True), 2, axis=0)
        stereo = resample(np.ascontiguousarray(stereo, np.float32), sample_rate, MODEL_RATE)
        stem = self.params.compensate * self.stem(stereo)
        if self.params.primary_stem.lower() != "vocals":
            stem = stereo - stem
        stem = resample(np.ascontiguousarray(stem, np.float32), MODEL_RATE, sample_rate)
        stem = np.pad(stem, ((0, 0), (0, max(0, n - stem.shape[-1]))))[:, :n]
        return stem if channels == 2 else np.repeat(stem.mean(axis=0, keepdims=True), channels, axis=0)
