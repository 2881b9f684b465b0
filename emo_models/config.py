"""One config object per model size: ``full`` (SD-1.5, the paper), ``tiny`` (tests) and ``demo``.

An :class:`EMOConfig` is plain data: it round-trips through ``config.json`` in a native EMO checkpoint
folder, and every module of the model is built from it alone.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .preset import GenerationPreset

SD15_UNET: dict[str, Any] = dict(
    sample_size=64,
    in_channels=4,
    out_channels=4,
    layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=768,
    attention_head_dim=8,
    norm_num_groups=32,
)

SD15_VAE: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)

WAV2VEC2_BASE: dict[str, Any] = dict(
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    feat_extract_norm="group",
    do_stable_layer_norm=False,
)

SD15_SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
)

MOTION_FEATURES = ("layer_output", "attention_input")
PRECISIONS = ("float32", "float16", "bfloat16")
REFERENCE_PAIRINGS = ("branch", "alternating")


@dataclass
class EMOConfig:
    """Everything needed to build an EMO model.

    unet: ``UNet2DConditionModel`` kwargs shared by the backbone and the ReferenceNet.
    vae: ``AutoencoderKL`` kwargs. audio_encoder: ``Wav2Vec2Config`` kwargs.
    frames_per_clip (f), motion_frames (n), audio_window (m): the paper's clip geometry; with ``fps``,
    ``width`` and ``height`` also the defaults generation uses. generation: the rest of the sampling
    defaults the checkpoint was trained for (:class:`~emo_models.preset.GenerationPreset`).

    Family options (EchoMimic and Hallo set them; EMO keeps the defaults): audio_encoder_type "wav2vec2" |
    "whisper" (then ``audio_encoder`` holds ``WhisperConfig`` kwargs); audio_projection "mlp" (EMO's
    AudioProjection) | "none" (raw window tokens); audio_attention_scale multiplies audio-attention's
    output; reference_net_attn2 / reference_net_conv_out: False builds the ReferenceNet without its
    cross-attention (attn2, norm2) or without conv_norm_out/conv_out; reference_feature_dtype
    "float16" rounds the ReferenceNet's features through float16 as EchoMimic's and Hallo's code do;
    temporal_positions: the precision a checkpoint stored the temporal positional encoding in (its model
    ran with those rounded values: ``float16`` for EchoMimic's fp16 releases and Hallo's net.pth).
    identity_tokens: > 0 adds an identity projection (a face-recognition embedding of ``identity_dim``
    -> that many tokens) read by both UNets' cross-attention; audio then goes through audio modules.
    audio_modules: audio-attention as separate blocks after each attention layer, weighted by
    full/face/lip region masks (Hallo), instead of the backbone's own cross-attention.
    audio_attention_dim: width of the audio tokens (default: the UNet's cross-attention width).
    motion_features: ``layer_output`` (the ReferenceNet layer's output at every temporal site) or
    ``attention_input`` (its first self-attention's input; temporal modules at layers without
    attention do not run, as in Hallo's released inference).
    reference_pairing: ``branch`` (each guidance branch's ReferenceNet run reads its own identity
    tokens, each frame its own branch's reference) or ``alternating`` (Hallo's batching: ReferenceNet
    input p reads branch p mod v's identity tokens, backbone frame row i reads reference i mod v).
    """

    name: str = "full"
    unet: dict[str, Any] = field(default_factory=lambda: dict(SD15_UNET))
    vae: dict[str, Any] = field(default_factory=lambda: dict(SD15_VAE))
    audio_encoder: dict[str, Any] = field(default_factory=lambda: dict(WAV2VEC2_BASE))
    scheduler: dict[str, Any] = field(default_factory=lambda: dict(SD15_SCHEDULER))
    width: int = 512
    height: int = 512
    fps: float = 30.0
    audio_sample_rate: int = 16000
    frames_per_clip: int = 12
    motion_frames: int = 4
    audio_window: int = 2
    audio_tokens: int = 32
    audio_hidden: int = 512
    temporal_heads: int = 8
    temporal_max_frames: int = 32
    speed_buckets: int = 16
    speed_max: float = 2.0
    speed_tokens: int = 4
    speed_dim: int = 320
    face_locator_channels: tuple[int, ...] = (16, 32, 64, 128)
    face_locator_in: int = 1
    generation: GenerationPreset = field(default_factory=GenerationPreset)
    # model-family options; the defaults are EMO's, so existing checkpoints load unchanged
    audio_encoder_type: str = "wav2vec2"
    audio_projection: str = "mlp"
    audio_attention_scale: float = 1.0
    reference_net_attn2: bool = True
    reference_net_conv_out: bool = True
    reference_feature_dtype: str = ""
    temporal_positions: str = "float32"
    identity_tokens: int = 0
    identity_dim: int = 512
    audio_modules: bool = False
    audio_attention_dim: int | None = None
    motion_features: str = "layer_output"
    reference_pairing: str = "branch"

    def __post_init__(self):
        for name, allowed in (("motion_features", MOTION_FEATURES), ("reference_pairing", REFERENCE_PAIRINGS),
                              ("temporal_positions", PRECISIONS), ("reference_feature_dtype", ("", *PRECISIONS))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"config: {name}={getattr(self, name)!r}; choose one of {list(allowed)}")
        if self.identity_tokens and not self.audio_modules:
            raise ValueError("config: identity_tokens need audio_modules=True (the UNets' cross-attention then "
                             "reads identity tokens, so audio needs its own modules)")

    @property
    def vae_scale(self) -> int:
        """Pixels per latent cell (8 for SD VAEs)."""
        return 2 ** (len(self.vae["block_out_channels"]) - 1)

    @property
    def audio_layers(self) -> int:
        """L: hidden states per audio frame (wav2vec2: its layers; whisper: embedding + blocks)."""
        if self.audio_encoder_type == "whisper":
            return int(self.audio_encoder["encoder_layers"]) + 1
        return int(self.audio_encoder["num_hidden_layers"])

    @property
    def audio_channels(self) -> int:
        """C: the audio encoder's hidden size."""
        if self.audio_encoder_type == "whisper":
            return int(self.audio_encoder["d_model"])
        return int(self.audio_encoder["hidden_size"])

    @property
    def audio_window_frames(self) -> int:
        """W: audio frames per video frame's window (wav2vec2: 2m+1 video frames; whisper: 2(2m+1) at 50 Hz)."""
        frames = 2 * self.audio_window + 1
        return 2 * frames if self.audio_encoder_type == "whisper" else frames

    @property
    def audio_token_count(self) -> int:
        """K: audio tokens per frame that audio-attention reads."""
        return self.audio_window_frames * self.audio_layers if self.audio_projection == "none" else self.audio_tokens

    @property
    def cross_attention_dim(self) -> int:
        """Width of the UNets' cross-attention context (audio tokens for EMO, identity tokens for Hallo)."""
        return int(self.unet["cross_attention_dim"])

    @property
    def audio_token_dim(self) -> int:
        """D: width of the audio tokens the audio-attention reads."""
        return int(self.audio_attention_dim or self.cross_attention_dim)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> EMOConfig:
        """Inverse of :meth:`to_dict`; refuses (ValueError naming ``source`` and the field) unknown or
        missing fields and values of the wrong type or sign."""
        if not isinstance(data, dict):
            raise ValueError(f"{source}: holds a JSON {type(data).__name__}; expected an object with the model's "
                             "fields (write one with `python -m emo_models init`)")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown fields {unknown}; expected only {sorted(known)}")
        missing = [name for name in REQUIRED_FIELDS if name not in data]
        if missing:
            raise ValueError(f"{source}: missing fields {missing}; an EMO config.json describes the model's "
                             "parts (write one with `python -m emo_models init`, or copy the checkpoint's own)")
        for name, value in data.items():
            if name != "generation":  # GenerationPreset checks its own fields
                _check_field(source, name, value)
        data = dict(data)
        for key in ("unet", "vae", "audio_encoder"):
            data[key] = {k: tuple(v) if isinstance(v, list) else v for k, v in data[key].items()}
        if "face_locator_channels" in data:
            data["face_locator_channels"] = tuple(data["face_locator_channels"])
        try:
            data["generation"] = GenerationPreset.from_dict(data.get("generation", {}))
        except ValueError as err:
            raise ValueError(f"{source}: {err}; fix config.json or copy it from the checkpoint it came from") from None
        return cls(**data)

    def save(self, path: str | Path) -> None:
        """Write ``config.json``."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> EMOConfig:
        """Read a ``config.json`` written by :meth:`save`; errors name the file (and the field)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: cannot be read as JSON ({err}); expected an EMO config.json") from err
        return cls.from_dict(data, source=str(path))


REQUIRED_FIELDS = ("unet", "vae", "audio_encoder")  # the architecture; the other fields have defaults
_PARTS = {"unet": "UNet2DConditionModel", "vae": "AutoencoderKL", "audio_encoder": "Wav2Vec2Config",
          "scheduler": "scheduler config"}
_AT_LEAST_ZERO = ("motion_frames", "audio_window", "identity_tokens")


def _check_field(source: str, name: str, value: Any) -> None:
    """Refuse a config field whose JSON value has the wrong type or sign, naming the field."""
    def refuse(expected: str):
        raise ValueError(f"{source}: field {name!r} is {json.dumps(value)[:60]} ({type(value).__name__}); "
                         f"expected {expected}; fix config.json or copy it from the checkpoint it came from")

    kind = {f.name: f.type for f in dataclasses.fields(EMOConfig)}[name]
    least = 0 if name in _AT_LEAST_ZERO else 1
    if name in _PARTS:
        if not isinstance(value, dict):
            refuse(f"an object of {_PARTS[name]} arguments")
    elif kind == "str":
        if not isinstance(value, str):
            refuse("a string")
    elif kind == "int | None" and value is None:
        return
    elif kind in ("int", "int | None"):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            refuse(f"a whole number >= {least}" + (" or null" if kind == "int | None" else ""))
    elif kind == "float":
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            refuse("a positive number")
    elif kind == "bool":
        if not isinstance(value, bool):
            refuse("true or false")
    elif not (isinstance(value, list) and value
              and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)):
        refuse("a list of positive whole numbers")


_PRESET_NAMES = ("CONFIGS", "demo_config", "full_config", "get_config", "tiny_config")


def __getattr__(name: str) -> Any:
    """The named presets (full, tiny, demo) live in :mod:`emo_models.config_presets`, which builds
    EMOConfigs; they are read from there on first use, so either module may be imported first."""
    if name in _PRESET_NAMES:
        from . import config_presets

        return getattr(config_presets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
