"""Tiny random-weight Hallo releases in Hallo's own on-disk layout (``pretrained_models/``).

``write_hallo_release`` writes ``hallo/net.pth`` (one ``torch.save``d state dict with exactly the key
layout of Hallo's ``Net``: tests check that layout against tests/data/hallo_net_keys.txt at full
size), the SD-1.5-style UNet ``config.json``, a diffusers VAE folder and a transformers wav2vec2
folder saved as ``Wav2Vec2ForCTC`` does (``wav2vec2.`` prefix, weight-norm ``weight_g``/``weight_v``,
an ``lm_head``). Like the real release it has no SD-1.5 UNet weights or motion-module file that our
loader would need (net.pth overrides both).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from emo_models.config import EMOConfig, tiny_config
from emo_models.families.hallo import hallo_config
from emo_models.temporal import sinusoidal_positions

TINY_UNET = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1,
                 block_out_channels=(32, 32, 64, 64),
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 cross_attention_dim=32, attention_head_dim=8, norm_num_groups=32)
FACE_LOCATOR = [(16, 3, 3, 3), (16, 16, 3, 3), (32, 16, 3, 3), (32, 32, 3, 3), (64, 32, 3, 3), (64, 64, 3, 3),
                (128, 64, 3, 3)]  # Hallo's FaceLocator(conditioning_embedding_channels=C0) defaults


def tiny_hallo_config(positions_dtype: torch.dtype = torch.float16) -> EMOConfig:
    """A Hallo-shaped config small enough for tests: 4 UNet levels (32/32/64/64, so some audio modules
    are narrower than their block, as in Hallo), audio and identity width 32, a 2-layer wav2vec2."""
    base = tiny_config()
    width, audio = 32, base.audio_encoder
    shapes = {"audio_projection.proj1.weight": (32, 5 * audio["num_hidden_layers"] * audio["hidden_size"]),
              "audio_projection.proj3.weight": (32 * width, 32),
              "audio_modules.down_blocks.0.audio_modules.0.transformer_blocks.0.attn2_0.to_k.weight": (32, width),
              "identity_projection.proj.weight": (4 * TINY_UNET["cross_attention_dim"], 512),
              "face_locator.conv_in.weight": FACE_LOCATOR[0],
              **{f"face_locator.blocks.{i}.weight": s for i, s in enumerate(FACE_LOCATOR[1:])},
              "temporal.mid_block.motion_modules.0.temporal_transformer.transformer_blocks.0."
              "attention_blocks.0.pos_encoder.pe": (1, 32, 64)}
    return hallo_config(dict(TINY_UNET), dict(base.vae, scaling_factor=0.18215), dict(audio), shapes, positions_dtype)


def hallo_net(config: EMOConfig, seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """A random net.pth state dict with Hallo's key layout for ``config`` (positional encodings: the sinusoid)."""
    from emo_models.weights.hallo import net_shapes

    generator = torch.Generator().manual_seed(seed)
    net = {}
    for key, shape in net_shapes(config).items():
        if key.endswith("pos_encoder.pe"):
            net[key] = sinusoidal_positions(shape[1], shape[2]).to(dtype)
        else:
            net[key] = (torch.randn(shape, generator=generator) * 0.1).to(dtype)
    return net


def write_hallo_release(folder: str | Path, config: EMOConfig | None = None, seed: int = 0,
                        dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """Write a release at ``folder``; returns net.pth's state dict."""
    from diffusers import AutoencoderKL
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    from tests.weight_files import randomize

    folder = Path(folder)
    config = config or tiny_hallo_config(dtype)
    net = hallo_net(config, seed, dtype)
    (folder / "hallo").mkdir(parents=True, exist_ok=True)
    torch.save(net, folder / "hallo" / "net.pth")
    unet_dir = folder / "stable-diffusion-v1-5" / "unet"
    unet_dir.mkdir(parents=True, exist_ok=True)
    (unet_dir / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel", **config.unet}))
    vae_dir = folder / "sd-vae-ft-mse"
    vae_config = {k: v for k, v in config.vae.items() if k != "scaling_factor"}
    randomize(AutoencoderKL(**vae_config), seed + 1).save_pretrained(vae_dir)
    wav2vec_dir = folder / "wav2vec" / "wav2vec2-base-960h"
    wav2vec = randomize(Wav2Vec2ForCTC(Wav2Vec2Config(**config.audio_encoder, vocab_size=32)), seed + 2)
    wav2vec_dir.mkdir(parents=True, exist_ok=True)
    wav2vec.config.to_json_file(wav2vec_dir / "config.json")
    tensors = {k.replace("parametrizations.weight.original0", "weight_g").replace("parametrizations.weight.original1",
                                                                                     "weight_v"): v.contiguous()
               for k, v in wav2vec.state_dict().items()}
    save_file(tensors, str(wav2vec_dir / "model.safetensors"))
    return net
