"""EchoMimic (antgroup/echomimic, Apache-2.0) as options of our model: its config, sampling presets
and face mask. Its weights load through weights/echomimic.py.

What differs from EMO: Whisper-tiny audio (embedding + 4 blocks, 10 frames at 50 Hz around each video
frame → 50 tokens × 384) read raw by the backbone's attn2, whose output is × 3; a ReferenceNet without
attn2/norm2/output layers whose features are rounded through float16; a 1-channel face locator
(16, 32, 96, 256) fed the face box dilated by 0.1; no motion frames and no speed: long videos are
denoised in overlapping context windows (the render path's ``context_windows`` sampler); DDIM
v-prediction, zero-SNR, trailing. ``face_mask`` is EchoMimic's own integer rule, for parity checks;
generation builds the mask through face_region with ``face_expand`` 1.2.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from ..config import EMOConfig
from ..preset import GenerationPreset

SCHEDULER: dict[str, Any] = dict(  # configs/inference/inference_v2.yaml (set_alpha_to_one: diffusers' default)
    num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="linear", clip_sample=False,
    steps_offset=1, prediction_type="v_prediction", rescale_betas_zero_snr=True, timestep_spacing="trailing",
)
UNET_KEYS = ("sample_size", "in_channels", "out_channels", "layers_per_block", "block_out_channels",
             "down_block_types", "up_block_types", "cross_attention_dim", "attention_head_dim", "norm_num_groups",
             "norm_eps", "act_fn", "flip_sin_to_cos", "freq_shift", "downsample_padding", "mid_block_scale_factor")
VAE_KEYS = ("in_channels", "out_channels", "latent_channels", "block_out_channels", "down_block_types",
            "up_block_types", "layers_per_block", "norm_num_groups", "sample_size", "scaling_factor", "act_fn")


FPS, CONTEXT_FRAMES, FACE_DILATION, SEED = 24.0, 12, 0.1, 420  # infer_audio2vid.py's defaults
# How EchoMimic samples: stored with the checkpoint as config.json "generation" (preset.py). Two passes,
# the unconditional one without reference keys/values, audio or face-locator residual; the whole video
# denoised in windows of 12 frames overlapping by 3, moved 2 frames per step; noise clamped to +-1.5.
GENERATION = GenerationPreset(
    steps=30, scheduler="ddim", guidance=2.5, uncond_drops=("reference", "audio", "face"), first_clip_motion="zeros",
    frame_rounding="whisper", speed=0.0, face_expand=1 + 2 * FACE_DILATION, sampler="context_windows",
    context_overlap=3, context_shift=2, noise_clamp=1.5)
GENERATION_ACC = replace(GENERATION, steps=6, guidance=1.0)  # the *_acc.pth weights (infer_audio2vid_acc.py)


def echomimic_config(unet: dict[str, Any], vae: dict[str, Any], whisper: dict[str, Any], *,
                     audio_dim: int = 384, face_locator_channels: tuple[int, ...] = (16, 32, 96, 256),
                     temporal_heads: int = 8, temporal_max_frames: int = 32, acc: bool = False,
                     temporal_positions: str = "float32") -> EMOConfig:
    """An EMOConfig for an EchoMimic release of any size.

    unet: the base UNet's config.json (sd-image-variations-diffusers/unet); vae: sd-vae-ft-mse's;
    whisper: ``WhisperConfig`` kwargs; audio_dim: width of the denoiser's attn2 keys (384); acc: the
    accelerated weights' preset (6 steps, no guidance); temporal_positions: the precision the
    release stored its positional encodings in (fp16 releases: ``float16``).
    """
    unet = {k: tuple(v) if isinstance(v, list) else v for k, v in unet.items() if k in UNET_KEYS}
    vae = {k: tuple(v) if isinstance(v, list) else v for k, v in vae.items() if k in VAE_KEYS}
    vae.setdefault("scaling_factor", 0.18215)
    size = int(unet.get("sample_size", 64)) * 2 ** (len(vae["block_out_channels"]) - 1)
    return EMOConfig(
        name="echomimic", unet={**unet, "cross_attention_dim": audio_dim}, vae=vae, audio_encoder=dict(whisper),
        scheduler=dict(SCHEDULER), width=size, height=size, fps=FPS, audio_sample_rate=16000,
        frames_per_clip=CONTEXT_FRAMES, motion_frames=0, audio_window=2, temporal_heads=temporal_heads,
        temporal_max_frames=temporal_max_frames, face_locator_channels=tuple(face_locator_channels),
        face_locator_in=1, audio_encoder_type="whisper", audio_projection="none", audio_attention_scale=3.0,
        reference_net_attn2=False, reference_net_conv_out=False, reference_feature_dtype="float16",
        temporal_positions=temporal_positions, generation=GENERATION_ACC if acc else GENERATION,
    )


def face_mask(box: tuple[int, int, int, int], height: int, width: int, dilation: float = FACE_DILATION) -> torch.Tensor:
    """EchoMimic's face-locator input: the pixel box (x0, y0, x1, y1) grown by ``dilation`` of its
    height/width on each side (int-truncated), as a (1, 1, height, width) mask in {0, 1}."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"face box {box}: empty; give x0 < x1 and y0 < y1 in pixels")
    pad_y, pad_x = int((y1 - y0) * dilation), int((x1 - x0) * dilation)
    mask = torch.zeros(1, 1, height, width)
    mask[..., max(0, y0 - pad_y):max(0, y1 + pad_y), max(0, x0 - pad_x):max(0, x1 + pad_x)] = 1.0
    return mask
