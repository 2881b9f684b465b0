"""The named model sizes: ``full`` (the paper's: SD-1.5 at 512x512), ``tiny`` (tests) and ``demo`` (the
bundled demo model). :func:`get_config` is the one lookup by name every command and node uses;
``emo_models.config`` re-exports all of them.
"""

from __future__ import annotations

from .config import SD15_SCHEDULER, EMOConfig
from .preset import GenerationPreset


def full_config() -> EMOConfig:
    """The paper's model: SD-1.5 UNets and VAE, wav2vec2-base, f=12, n=4, m=2, 512x512 at 30 fps."""
    return EMOConfig()


def tiny_config() -> EMOConfig:
    """A model that builds and runs a clip in seconds on CPU, for tests. 64x64 pixels, 8x8 latents."""
    return EMOConfig(
        name="tiny",
        unet=dict(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=32,
        ),
        vae=dict(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(8, 16, 16, 16),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=64,
            scaling_factor=0.18215,
        ),
        audio_encoder=dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(16,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
            feat_extract_norm="group",
            do_stable_layer_norm=False,
        ),
        width=64,
        height=64,
        fps=25.0,
        frames_per_clip=4,
        motion_frames=2,
        audio_window=2,
        audio_tokens=4,
        audio_hidden=32,
        temporal_heads=2,
        speed_buckets=8,
        speed_tokens=2,
        speed_dim=32,
        face_locator_channels=(8, 16, 16, 16),
    )


def demo_config() -> EMOConfig:
    """The bundled demo model: trained on procedural faces in 30 minutes on 2 CPU cores, shipped <= 25 MB.

    64x64 pixels, a 3-level VAE (4x: 16x16x4 latents), two-level UNets (64, 128), a small random-init
    wav2vec2 (frozen: its conv features still carry the speech envelope), f=8 new + n=2 motion frames.
    The VAE's ``scaling_factor`` is replaced by the measured one when its autoencoder is trained.
    v-prediction: trained from scratch, it learns to rebuild the reference far sooner than epsilon.
    """
    return EMOConfig(
        name="demo",
        unet=dict(
            sample_size=16,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(64, 128),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=64,
            attention_head_dim=4,
            norm_num_groups=32,
        ),
        vae=dict(
            in_channels=3,
            out_channels=3,
            latent_channels=4,
            block_out_channels=(16, 32, 64),
            down_block_types=("DownEncoderBlock2D",) * 3,
            up_block_types=("UpDecoderBlock2D",) * 3,
            layers_per_block=1,
            norm_num_groups=8,
            sample_size=64,
            scaling_factor=1.0,
        ),
        audio_encoder=dict(
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=128,
            conv_dim=(64,) * 7,
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=4,
            feat_extract_norm="group",
            do_stable_layer_norm=False,
        ),
        width=64,
        height=64,
        fps=25.0,
        frames_per_clip=8,
        motion_frames=2,
        audio_window=2,
        audio_tokens=4,
        audio_hidden=128,
        temporal_heads=4,
        temporal_max_frames=24,
        speed_buckets=8,
        speed_tokens=2,
        speed_dim=64,
        face_locator_channels=(16, 32, 64),
        scheduler=dict(SD15_SCHEDULER, prediction_type="v_prediction"),
        # sampled as it was trained: 10 DDIM steps (the lips follow the audio from 10 on), audio guidance 2
        # over the reference-only branch, the first clip continuing the reference; its drawn faces, which
        # Haar cascades cannot see, always sit in the training data's typical face box
        generation=GenerationPreset(steps=10, guidance=2.0, guidance_reference=1.0,
                                    face_box=(0.25, 0.171875, 0.75, 0.75), detect_face=False),
    )


CONFIGS = {"full": full_config, "tiny": tiny_config, "demo": demo_config}


def get_config(name: str) -> EMOConfig:
    """A named preset (``full``, ``tiny``, ``demo``)."""
    if name not in CONFIGS:
        raise ValueError(f"config: unknown preset {name!r}; choose one of {sorted(CONFIGS)}")
    return CONFIGS[name]()
