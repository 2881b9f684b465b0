"""Hallo (fudan-generative-vision/hallo, MIT) as options of our model: its config and the constants of
its released inference (scripts/inference.py, configs/inference/default.yaml). Its files load through
weights/hallo.py, the family's entry in :data:`emo_models.families.FAMILIES`.

What differs from EMO: the UNets' cross-attention reads 4 identity tokens (a face-recognition
embedding through ``imageproj``) and audio goes through region-weighted audio modules after each
attention layer; motion frames are the ReferenceNet's attention inputs and the temporal modules after
layers without attention never run (the released inference leaves the denoiser in training mode);
the ReferenceNet reads every guidance branch's inputs in one alternating batch and hands its features
over rounded through float16; DDIM with linear betas, v-prediction, zero-SNR, trailing spacing; 16 new
+ 2 motion frames per clip at 25 fps, 40 steps, guidance 3.5.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..audio_modules import RegionMasks
from ..config import EMOConfig
from ..preset import GenerationPreset

# scripts/inference.py: DDIM from noise_scheduler_kwargs plus the zero-SNR switches; set_alpha_to_one default
SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
    steps_offset=1, set_alpha_to_one=True, prediction_type="v_prediction", rescale_betas_zero_snr=True,
    timestep_spacing="trailing")
TEMPORAL_HEADS = 8  # motion_module_kwargs.num_attention_heads
VAE_SCALING = 0.18215  # Hallo multiplies latents by this constant whatever the VAE config says
FPS, FRAMES_PER_CLIP, MOTION_FRAMES, STEPS, GUIDANCE = 25.0, 16, 2, 40, 3.5
# configs/inference/default.yaml + scripts/inference.py: one scale, the unconditional branch without
# reference, audio, face locator and identity (imageproj(0)); first clip continues the portrait repeated;
# frames = ceil(seconds x fps); audio padded with silence to whole clips; face box grown 1.2x
PRESET = GenerationPreset(steps=STEPS, scheduler="ddim", guidance=GUIDANCE, uncond_drops=("reference", "audio", "face"),
                          first_clip_motion="reference", frame_rounding="ceil", speed=0.0, face_expand=1.2,
                          detect_face=True, audio_padding="clips")
def hallo_config(unet: dict[str, Any], vae: dict[str, Any], audio_encoder: dict[str, Any],
                 shapes: Mapping[str, tuple[int, ...]], positions_dtype: torch.dtype) -> EMOConfig:
    """Our config for a Hallo release of any size.

    unet, vae: the release's UNet and VAE config.json arguments; audio_encoder: wav2vec2 config fields;
    shapes: net.pth's tensor shapes under our component names (``audio_projection.proj1.weight``...);
    positions_dtype: the dtype net.pth stores the motion modules' positional encodings in.
    Raises KeyError naming a tensor the shapes lack.
    """
    audio_key = next((k for k in shapes if k.startswith("audio_modules.") and k.endswith("attn2_0.to_k.weight")),
                     "audio_modules.*.attn2_0.to_k.weight")
    proj1, proj3 = shapes["audio_projection.proj1.weight"], shapes["audio_projection.proj3.weight"]
    audio_dim, identity = shapes[audio_key][1], shapes["identity_projection.proj.weight"]
    blocks = sorted((k for k in shapes if k.startswith("face_locator.blocks.") and k.endswith(".weight")),
                    key=lambda k: int(k.split(".")[2]))
    locator = [shapes["face_locator.conv_in.weight"]] + [shapes[k] for k in blocks]
    positions = next((v for k, v in shapes.items() if k.endswith("pos_encoder.pe")), None)
    if positions is None:
        raise KeyError("temporal.*.pos_encoder.pe")
    window = proj1[1] // (audio_encoder["num_hidden_layers"] * audio_encoder["hidden_size"])
    size = unet["sample_size"] * 2 ** (len(vae["block_out_channels"]) - 1)
    return EMOConfig(
        name="hallo", unet=dict(unet), vae={**vae, "scaling_factor": VAE_SCALING},
        audio_encoder={k: tuple(v) if isinstance(v, list) else v for k, v in audio_encoder.items()}, scheduler=dict(SCHEDULER), width=size, height=size, fps=FPS,
        audio_sample_rate=16000, frames_per_clip=FRAMES_PER_CLIP, motion_frames=MOTION_FRAMES,
        audio_window=(window - 1) // 2, audio_tokens=proj3[0] // audio_dim, audio_hidden=proj1[0],
        audio_attention_dim=audio_dim, temporal_heads=TEMPORAL_HEADS, temporal_max_frames=positions[1],
        face_locator_in=locator[0][1], face_locator_channels=tuple(s[0] for s in locator[::2]),
        identity_tokens=identity[0] // unet["cross_attention_dim"], identity_dim=identity[1], audio_modules=True,
        motion_features="attention_input", reference_pairing="alternating", reference_feature_dtype="float16",
        reference_net_conv_out=False, temporal_positions=str(positions_dtype).removeprefix("torch."),
        generation=PRESET,
    )


@dataclass(frozen=True)
class FaceConditions:
    """Hallo's per-portrait face inputs. embedding: (1, 512) identity embedding (unnormalised ArcFace,
    zeros when no face); locator: (1, 1, H, W) face-box mask for the face locator; regions: the audio
    modules' full/face/lip masks per depth; found: whether a face was detected."""

    embedding: torch.Tensor
    locator: torch.Tensor
    regions: RegionMasks
    found: bool


def face_conditions(config: EMOConfig, image: torch.Tensor, analysis=None, face_box=None, lip_box=None,
                    embedding=None) -> FaceConditions:
    """image: (1, 3, H, W) in [0, 1] at the model's size -> :class:`FaceConditions`.

    With ``analysis`` (an :class:`emo_models.face_analysis.FaceAnalysis` on the release's
    ``face_analysis/models``): the largest face's box grown by the preset's ``face_expand`` (1.2), lip box
    grown 2.0 and embedding, as Hallo's ImageProcessor; no face -> the whole image and a zero embedding
    (Hallo's fallback, with a warning). Boxes given here (pixels of ``image``) win over detection;
    ``embedding`` (512,) likewise (default: the detected face's, or zeros without ``analysis``).
    """
    from ..face_analysis import NoFaceError
    from ..region_masks import face_region, region_masks

    height, width = image.shape[-2:]
    whole = (0.0, 0.0, float(width), float(height))
    found = False
    if analysis is not None and (face_box is None or lip_box is None or embedding is None):
        try:
            inputs = analysis.face_inputs(image[0], face_expand=config.generation.face_expand, lip_expand=2.0)
            face_box, lip_box = face_box or inputs.face_box, lip_box or inputs.lip_box
            embedding = inputs.embedding if embedding is None else embedding
            found = True
        except NoFaceError:
            warnings.warn("portrait: no face detected; using the whole image as the face region and a zero "
                          "identity embedding, as Hallo does", stacklevel=2)
    elif face_box is None or lip_box is None:
        raise ValueError("portrait: Hallo needs a face box and a lip box; give the face-analysis files "
                         "(face_analysis/models/ in the release: scrfd_10g_bnkps.onnx, glintr100.onnx) or both boxes")
    face_box, lip_box = face_box or whole, lip_box or whole
    vector = torch.zeros(1, config.identity_dim) if embedding is None else \
        torch.as_tensor(np.asarray(embedding, dtype=np.float32)).reshape(1, config.identity_dim)
    depths = len(config.unet["block_out_channels"])
    return FaceConditions(embedding=vector, locator=face_region(face_box, height, width, channels=1),
                          regions=region_masks(face_box, lip_box, height, width, depths, config.vae_scale),
                          found=found)


def portrait_conditions(pipeline, image: torch.Tensor) -> FaceConditions:
    """:func:`face_conditions` with the face-analysis files found beside the release
    (``pipeline.face_analysis_folders``, set by the loader); a missing file is an error naming it and
    every folder searched."""
    from ..face_analysis import FaceAnalysis

    analysis = FaceAnalysis.from_folder(list(pipeline.face_analysis_folders))
    try:
        return face_conditions(pipeline.config, image, analysis)
    finally:
        analysis.close()
