"""Rebuild, at test time, the release the hallo-reference tool made for a committed parity fixture.

The tool (``shared/tools/hallo-reference/make_random_release.py``) fills every tensor from its own
generator, seeded by ``sha256(f"{seed}/{file}/{name}")``: weights (2-d and up) N(0,1)·gain/√fan_in,
Group/LayerNorm weights 1 + 0.1·N and biases 0.1·N, other 1-d tensors 0.05·N, wav2vec2's weight-norm
magnitude √(out/k)·(1 + 0.1·N); gains 1 except ``face_locator.*`` 1.7 and the VAE's
``decoder.conv_out`` 0.5 / ``encoder.conv_out`` 8; buffers (positional encodings) keep their values.
So the fixture commits only the config files, ``harness.json`` and Hallo's outputs (tens of KB to
hundreds), and the weights (several MB) are regenerated bit for bit from its seed: a test of the
regenerated net.pth against the tool's rule is the check that nothing drifted.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from emo_models.config import EMOConfig
from emo_models.families.hallo import hallo_config
from emo_models.temporal import sinusoidal_positions

CONFIG_FILES = ("stable-diffusion-v1-5/unet/config.json", "sd-vae-ft-mse/config.json",
                "wav2vec/wav2vec2-base-960h/config.json", "wav2vec/wav2vec2-base-960h/preprocessor_config.json",
                "wav2vec/wav2vec2-base-960h/feature_extractor_config.json", "harness.json")
NET_GAINS = {"face_locator.": 1.7}
VAE_GAINS = {"decoder.conv_out.weight": 0.5, "encoder.conv_out.weight": 8.0}
STORED = {"fp16": torch.float16, "fp32": torch.float32}


def tensor_seed(seed: int, namespace: str, name: str) -> int:
    """The tool's per-tensor seed."""
    digest = hashlib.sha256(f"{seed}/{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def tool_value(seed: int, namespace: str, name: str, shape: tuple[int, ...], norm: bool,
               gains: dict[str, float], magnitude_of: int | None = None) -> torch.Tensor:
    """One tensor as the tool fills it (float32). magnitude_of: output channels of a weight-norm pair."""
    r = torch.randn(shape, generator=torch.Generator().manual_seed(tensor_seed(seed, namespace, name)))
    if magnitude_of is not None:
        return (magnitude_of / shape[-1]) ** 0.5 * (1.0 + 0.1 * r)
    if len(shape) >= 2:
        fan_in = 1
        for s in shape[1:]:
            fan_in *= s
        gain = next((g for k, g in gains.items() if name == k or (k.endswith(".") and name.startswith(k))), 1.0)
        return r * (gain / fan_in ** 0.5)
    if norm:
        return 1.0 + 0.1 * r if name.endswith("weight") else 0.1 * r
    return 0.05 * r


def norm_parameters(module: nn.Module, prefix: str = "") -> set[str]:
    """Names of the Group/LayerNorm parameters of ``module`` (with ``prefix``)."""
    return {f"{prefix}{m}.{p}" if m else f"{prefix}{p}" for m, mod in module.named_modules()
            if isinstance(mod, (nn.GroupNorm, nn.LayerNorm)) for p, _ in mod.named_parameters(recurse=False)}


def fill_module(module: nn.Module, seed: int, namespace: str, gains: dict[str, float] | None = None) -> nn.Module:
    """Fill every parameter of ``module`` in place as the tool does."""
    norms = norm_parameters(module)
    with torch.no_grad():
        for name, p in module.named_parameters():
            magnitude = None
            if "parametrizations.weight.original0" in name:
                magnitude = module.get_parameter(name.replace("original0", "original1")).shape[0]
            p.copy_(tool_value(seed, namespace, name, tuple(p.shape), name in norms, gains or {}, magnitude))
    return module


def spec_config(spec: dict) -> EMOConfig:
    """Our config for the tool's spec (its sizes), as the loader would derive it from the files."""
    unet = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["unet_config"].items() if not k.startswith("_")}
    vae = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["vae_config"].items() if not k.startswith("_")}
    w2v, proj = spec["wav2vec_config"], spec["audio_proj_kwargs"]
    audio = {k: w2v[k] for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")}
    audio.update(conv_dim=tuple(w2v["conv_dim"]), conv_kernel=tuple(w2v["conv_kernel"]),
                 conv_stride=tuple(w2v["conv_stride"]), num_conv_pos_embeddings=w2v["num_conv_pos_embeddings"],
                 num_conv_pos_embedding_groups=w2v["num_conv_pos_embedding_groups"],
                 feat_extract_norm=w2v["feat_extract_norm"], do_stable_layer_norm=w2v["do_stable_layer_norm"])
    locator = (16, 32, 64, 128)  # FaceLocator's default block_out_channels
    shapes = {"audio_projection.proj1.weight": (proj["intermediate_dim"], proj["seq_len"] * proj["blocks"] * proj["channels"]),
              "audio_projection.proj3.weight": (proj["context_tokens"] * proj["output_dim"], proj["intermediate_dim"]),
              "audio_modules.x.attn2_0.to_k.weight": (0, spec["unet_additional_kwargs"]["audio_attention_dim"]),
              "identity_projection.proj.weight": (spec["image_proj_kwargs"]["clip_extra_context_tokens"]
                                                  * unet["cross_attention_dim"], spec["image_proj_kwargs"]["clip_embeddings_dim"]),
              "face_locator.conv_in.weight": (locator[0], 3, 3, 3),
              **{f"face_locator.blocks.{2 * i + j}.weight": ((c_in, c_out)[j], c_in, 3, 3)
                 for i, (c_in, c_out) in enumerate(zip(locator, locator[1:])) for j in (0, 1)},
              "temporal.x.pos_encoder.pe": (1, spec["unet_additional_kwargs"]["motion_module_kwargs"]
                                            ["temporal_position_encoding_max_len"], 0)}
    return hallo_config(unet, vae, audio, shapes, torch.float16)


def tool_net(config: EMOConfig, seed: int, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """net.pth of the tool's release: our layout's keys (weights.hallo.net_shapes) filled by its rule."""
    from accelerate import init_empty_weights

    from emo_models.model import EMOModel
    from emo_models.weights.hallo import NET_PARTS, net_shapes

    with init_empty_weights():
        model = EMOModel(config)
    prefixes = {"backbone": "denoising_unet.", "temporal": "denoising_unet.", "audio_modules": "denoising_unet.",
                **{part: prefix for prefix, part in NET_PARTS.items()}}
    norms = set().union(*(norm_parameters(getattr(model, part), prefix) for part, prefix in prefixes.items()))
    net = {}
    for key, shape in net_shapes(config).items():
        if key.endswith("pos_encoder.pe"):
            net[key] = sinusoidal_positions(shape[1], shape[2]).to(dtype)
        else:
            net[key] = tool_value(seed, "hallo/net.pth", key, shape, key in norms, NET_GAINS).to(dtype)
    return net


def write_tool_release(fixture: str | Path, folder: str | Path) -> Path:
    """The release of a committed fixture (its config files + harness.json) rebuilt at ``folder``:
    hallo/net.pth, the VAE and wav2vec2 weights as the tool wrote them. Returns ``folder``."""
    from diffusers import AutoencoderKL
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    fixture, folder = Path(fixture), Path(folder)
    for rel in CONFIG_FILES:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(fixture / rel, folder / rel)
    harness = json.loads((fixture / "harness.json").read_text())
    seed, dtype, spec = harness["seed"], STORED[harness["storage_dtype"]], harness["spec"]
    (folder / "hallo").mkdir(parents=True, exist_ok=True)
    torch.save(tool_net(spec_config(spec), seed, dtype), folder / "hallo" / "net.pth")
    vae = fill_module(AutoencoderKL.from_config(AutoencoderKL.load_config(folder / "sd-vae-ft-mse")), seed,
                      "sd-vae-ft-mse", VAE_GAINS)
    save_file({k: v.to(dtype).contiguous() for k, v in vae.state_dict().items()},
              str(folder / "sd-vae-ft-mse" / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    w2v = {k: v for k, v in spec["wav2vec_config"].items() if k != "model_type"}
    wav2vec = fill_module(Wav2Vec2ForCTC(Wav2Vec2Config(**w2v)), seed, "wav2vec/wav2vec2-base-960h")
    tensors = {k.replace("parametrizations.weight.original0", "weight_g")
               .replace("parametrizations.weight.original1", "weight_v"): v.to(dtype).contiguous()
               for k, v in wav2vec.state_dict().items()}
    save_file(tensors, str(folder / "wav2vec" / "wav2vec2-base-960h" / "model.safetensors"), metadata={"format": "pt"})
    return folder


def weights_digest(path: str | Path) -> str:
    """sha256 over a weights file's keys, dtypes, shapes and bytes in key order (independent of the
    container's own bytes, which torch.save does not keep stable)."""
    from emo_models.weights.safe_load import read_state_dict

    digest = hashlib.sha256()
    for key, value in sorted(read_state_dict(path).items()):
        digest.update(f"{key}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.contiguous().view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()
