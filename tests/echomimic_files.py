"""Random-weight EchoMimic releases on disk, in its ``pretrained_weights`` layout, for loader tests.

``write_echomimic_release`` builds our model from an EchoMimic config, gives every tensor a distinct
seeded value and writes it back in EchoMimic's own file formats (plain ``torch.save`` state dicts
with its key names, openai's ``{"dims", "model_state_dict"}`` for Whisper, diffusers folders), so the
loader under test reads exactly what a user's download holds. The key lists EchoMimic's own classes
build (tests/data/echo_*_keys.txt) say which names each file has.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from emo_models.config import EMOConfig
from emo_models.families.echomimic import echomimic_config

DATA = Path(__file__).parent / "data"
_WHISPER_TO_OPENAI = {"self_attn.q_proj": "attn.query", "self_attn.k_proj": "attn.key", "self_attn.v_proj": "attn.value",
                      "self_attn.out_proj": "attn.out", "self_attn_layer_norm": "attn_ln", "fc1": "mlp.0", "fc2": "mlp.2",
                      "final_layer_norm": "mlp_ln"}


def key_list(name: str) -> dict[str, tuple[int, ...]]:
    """An EchoMimic key list: ``denoising_unet``, ``reference_unet`` or ``face_locator`` -> key -> shape."""
    rows = (line.split("\t") for line in (DATA / f"echo_{name}_keys.txt").read_text().splitlines() if line)
    return {key: tuple(int(x) for x in shape.strip("()").split(",") if x.strip()) for key, shape in rows}


def small_echomimic_config(layers_per_block: int = 2) -> EMOConfig:
    """An EchoMimic config with the full key layout (4 levels, 2 layers per block, the same shortcut convs) at small widths."""
    unet = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=layers_per_block,
                block_out_channels=[32, 64, 96, 96], cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
                down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
                up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3)
    vae = dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[32, 32, 32, 32],
               down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
               layers_per_block=1, norm_num_groups=32, sample_size=64)
    whisper = dict(d_model=384, num_mel_bins=80, encoder_layers=1, encoder_attention_heads=6, encoder_ffn_dim=64,
                   max_source_positions=1500)
    return echomimic_config(unet, vae, whisper)


def _randomize(state_dict: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=generator) * 0.05 for k, v in state_dict.items()}


def openai_whisper_state_dict(encoder: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers ``WhisperEncoder`` keys -> openai checkpoint keys, plus a stand-in decoder."""
    out = {"decoder.token_embedding.weight": torch.zeros(8, 384), "decoder.ln.weight": torch.ones(384)}
    for key, value in encoder.items():
        if key.startswith("layers."):
            index, rest = key.removeprefix("layers.").split(".", 1)
            module, param = rest.rsplit(".", 1)
            out[f"encoder.blocks.{index}.{_WHISPER_TO_OPENAI[module]}.{param}"] = value
        elif key == "embed_positions.weight":
            out["encoder.positional_embedding"] = value
        elif key.startswith("layer_norm."):
            out["encoder.ln_post." + key.removeprefix("layer_norm.")] = value
        else:
            out["encoder." + key] = value
    return out


def write_echomimic_release(folder: Path, config: EMOConfig | None = None, seed: int = 0,
                            motion_in_denoiser: bool = False) -> dict[str, dict[str, torch.Tensor]]:
    """Write an EchoMimic release; returns the state dicts written per file name."""
    from emo_models.loading import build_pipeline

    config = config or small_echomimic_config()
    pipeline = build_pipeline(config)
    model = pipeline.model
    backbone = _randomize(model.backbone.state_dict(), seed)
    motion = _randomize({k: v for k, v in model.temporal.state_dict().items()
                         if ".speed_" not in k}, seed + 1)
    motion.update({name.replace(".positions", ".pos_encoder.pe"): buffer.clone()
                   for name, buffer in model.temporal.named_buffers() if name.endswith(".positions")})
    files = {
        "denoising_unet.pth": {**backbone, **(_randomize(motion, seed + 2) if motion_in_denoiser else {})},
        "motion_module.pth": motion,
        "reference_unet.pth": _randomize(model.reference_net.state_dict(), seed + 3),
        "face_locator.pth": _randomize(model.face_locator.state_dict(), seed + 4),
    }
    if motion_in_denoiser:  # positional encodings stay buffers: the same values in both files
        files["denoising_unet.pth"].update({k: v for k, v in motion.items() if k.endswith(".pe")})
    folder.mkdir(parents=True, exist_ok=True)
    for name, state_dict in files.items():
        torch.save(state_dict, folder / name)
    encoder = _randomize(pipeline.audio_encoder.state_dict(), seed + 5)
    encoder["embed_positions.weight"] = pipeline.audio_encoder.state_dict()["embed_positions.weight"]
    (folder / "audio_processor").mkdir(exist_ok=True)
    dims = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6, "n_audio_layer": 1}
    torch.save({"dims": dims, "model_state_dict": openai_whisper_state_dict(encoder)},
               folder / "audio_processor" / "whisper_tiny.pt")
    files["whisper"] = encoder
    (folder / "sd-image-variations-diffusers" / "unet").mkdir(parents=True, exist_ok=True)
    unet_config = {"_class_name": "UNet2DConditionModel", **config.unet, "cross_attention_dim": 768}
    (folder / "sd-image-variations-diffusers" / "unet" / "config.json").write_text(json.dumps(unet_config))
    vae_folder = folder / "sd-vae-ft-mse"
    vae_folder.mkdir(exist_ok=True)
    (vae_folder / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKL", **config.vae}))
    files["vae"] = _randomize(pipeline.vae.state_dict(), seed + 6)
    save_file(files["vae"], str(vae_folder / "diffusion_pytorch_model.safetensors"))
    return files
