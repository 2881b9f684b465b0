#!/usr/bin/env python
"""Write an EchoMimic release folder (its ``pretrained_weights/`` layout) filled with seeded random weights.

A check tool for ``bench/echomimic_reference.py`` and ``bench/parity_echomimic.py``; not part of the
product. Run it in the EchoMimic venv (``bench/echomimic_setup.sh``)::

    echomimic_release.py OUT_DIR --echomimic /tmp/echo-src --seed S (--tiny | --full)
                         [--dtype fp32|fp16] [--acc] [--denoiser-with-motion]

The models are built with EchoMimic's own classes the way ``infer_audio2vid.py`` builds them
(``UNet2DConditionModel.from_pretrained`` for the ReferenceNet, ``EchoUNet3DConditionModel.
from_pretrained_2d`` with ``configs/inference/inference_v2.yaml``'s ``unet_additional_kwargs``,
``FaceLocator(320, 1, (16, 32, 96, 256))``, openai Whisper from ``{"dims", "model_state_dict"}``),
then every parameter is overwritten from a generator seeded by sha256(seed/file/name), so nothing
depends on build order and every layer EchoMimic zero-initialises (motion-module ``proj_out``,
``FaceLocator.conv_out``) is nonzero. Buffers (temporal ``pe``, Whisper's positional embedding)
keep their deterministic values.

Written (as EchoMimic's README's ``pretrained_weights/``)::

    denoising_unet.pth          the 2-D UNet tensors of the denoiser (attn2 reads 384-d audio);
                                with --denoiser-with-motion also its motion modules (other values
                                than motion_module.pth: EchoMimic's load order makes these win)
    reference_unet.pth          ReferenceNet: no attn2/norm2/conv_norm_out/conv_out
    face_locator.pth            1-channel FaceLocator
    motion_module.pth           motion-module tensors (with pos_encoder.pe buffers)
    denoising_unet_acc.pth, motion_module_acc.pth   with --acc, other values, same layout
    sd-image-variations-diffusers/unet/{config.json,diffusion_pytorch_model.safetensors}
    sd-vae-ft-mse/{config.json,diffusion_pytorch_model.safetensors}
    audio_processor/whisper_tiny.pt   {"dims": ModelDimensions, "model_state_dict": ...}
    harness.json                sizes used, read by echomimic_reference.py

``--full`` uses the real sizes (SD-1.5 / sd-image-variations UNet, sd-vae-ft-mse, whisper tiny).
``--tiny``: 128x128 images, UNet channels 32/32/64/64 with 1 layer per block (4 levels, every module
type), VAE 32/32/32/32, Whisper with EchoMimic's hard-coded width 384 but 1 encoder layer, no
decoder layers and an 8-token vocabulary.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from echomimic_reference import import_echomimic  # noqa: E402

SD_IMAGE_VARIATIONS_UNET = {
    "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.8.0", "act_fn": "silu",
    "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False,
    "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
SD_VAE_FT_MSE = {
    "_class_name": "AutoencoderKL", "_diffusers_version": "0.4.2", "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
    "sample_size": 256, "up_block_types": ["UpDecoderBlock2D"] * 4,
}
WHISPER_TINY_DIMS = {"n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384, "n_audio_head": 6,
                     "n_audio_layer": 4, "n_vocab": 51865, "n_text_ctx": 448, "n_text_state": 384,
                     "n_text_head": 6, "n_text_layer": 4}
FACE_LOCATOR = {"conditioning_channels": 1, "block_out_channels": [16, 32, 96, 256]}


def build_spec(variant: str, echo_src: str) -> dict:
    """Every size the harness uses; --full is the real release with infer_audio2vid.py's defaults."""
    from omegaconf import OmegaConf

    infer = OmegaConf.load(os.path.join(echo_src, "configs", "inference", "inference_v2.yaml"))
    spec = {
        "variant": variant, "image_size": 512, "fps": 24, "steps": 30, "cfg": 2.5,
        "context_frames": 12, "context_overlap": 3, "facemask_dilation_ratio": 0.1, "seed": 420,
        "sample_rate": 16000,
        "unet_config": copy.deepcopy(SD_IMAGE_VARIATIONS_UNET),
        "unet_additional_kwargs": OmegaConf.to_container(infer.unet_additional_kwargs),
        "noise_scheduler_kwargs": OmegaConf.to_container(infer.noise_scheduler_kwargs),
        "vae_config": copy.deepcopy(SD_VAE_FT_MSE),
        "whisper_dims": dict(WHISPER_TINY_DIMS),
        "face_locator": copy.deepcopy(FACE_LOCATOR),
    }
    if variant == "tiny":
        # 128 px: the deepest level is still 2x2, so GroupNorm (32 groups) never normalises a single value
        spec["image_size"] = 128
        spec["unet_config"].update(block_out_channels=[32, 32, 64, 64], layers_per_block=1, sample_size=16)
        spec["vae_config"].update(block_out_channels=[32, 32, 32, 32], layers_per_block=1, sample_size=128)
        spec["whisper_dims"].update(n_audio_layer=1, n_vocab=8, n_text_ctx=8, n_text_layer=0)
    return spec


def tensor_seed(seed: int, namespace: str, name: str) -> int:
    """The per-tensor seed: sha256 of 'seed/file/name', 63 bits."""
    digest = hashlib.sha256(f"{seed}/{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def randomize_(module, seed: int, namespace: str, gains: dict | None = None, name_filter=None) -> int:
    """Overwrite every parameter in place; returns how many tensors are still all-zero (should be 0).

    weights (ndim >= 2): N(0,1)·gain/sqrt(fan_in) (gain 1 unless ``gains`` names the key or a prefix
    ending in '.'); Group/LayerNorm weight 1 + 0.1·N, bias 0.1·N; other 1-d parameters 0.05·N.
    """
    import torch
    from torch import nn

    gains = gains or {}
    norm_params = {f"{m_name}.{p_name}".lstrip(".") for m_name, m in module.named_modules()
                   if isinstance(m, (nn.GroupNorm, nn.LayerNorm)) for p_name, _ in m.named_parameters(recurse=False)}
    zero = 0
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name_filter is not None and not name_filter(name):
                continue
            g = torch.Generator().manual_seed(tensor_seed(seed, namespace, name))
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if p.ndim >= 2:
                gain = next((v for k, v in gains.items() if name == k or (k.endswith(".") and name.startswith(k))), 1.0)
                value = r * (gain / (p[0].numel() ** 0.5))
            elif name in norm_params:
                value = 1.0 + 0.1 * r if name.endswith("weight") else 0.1 * r
            else:
                value = 0.05 * r
            p.copy_(value.to(p.dtype))
            zero += not bool(p.ne(0).any())
    return zero


def _save_pth(state_dict: dict, path: str, dtype) -> None:
    import torch

    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({k: (v.to(dtype) if v.is_floating_point() else v).contiguous().clone() for k, v in state_dict.items()}, path)


def _write_json(path: str, obj) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out_dir")
    ap.add_argument("--echomimic", default=os.environ.get("ECHO_SRC", "/tmp/echo-src"),
                    help="extracted antgroup/echomimic source (default $ECHO_SRC or /tmp/echo-src)")
    ap.add_argument("--seed", type=int, default=0)
    size = ap.add_mutually_exclusive_group(required=True)
    size.add_argument("--tiny", action="store_true")
    size.add_argument("--full", action="store_true")
    ap.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32", help="storage dtype of every file")
    ap.add_argument("--acc", action="store_true", help="also write denoising_unet_acc.pth / motion_module_acc.pth")
    ap.add_argument("--denoiser-with-motion", action="store_true",
                    help="denoising_unet.pth also holds motion modules (which then override motion_module.pth)")
    args = ap.parse_args(argv)

    t_start = time.time()
    E = import_echomimic(args.echomimic)
    import torch
    from diffusers import AutoencoderKL
    from diffusers import UNet2DConditionModel as StockUNet
    from safetensors.torch import save_file

    spec = build_spec("tiny" if args.tiny else "full", args.echomimic)
    dtype = torch.float16 if args.dtype == "fp16" else torch.float32
    out = os.path.abspath(args.out_dir)
    base = os.path.join(out, "sd-image-variations-diffusers")
    zero = {}

    def log(msg):
        print(f"[echomimic_release] {msg}", flush=True)

    # sd-image-variations UNet (a stock diffusers UNet with attn2), what both EchoMimic UNets start from
    _write_json(os.path.join(base, "unet", "config.json"), spec["unet_config"])
    unet = StockUNet.from_config(StockUNet.load_config(os.path.join(base, "unet")))
    zero["base_unet"] = randomize_(unet, args.seed, "sd-image-variations-diffusers/unet")
    save_file({k: v.to(dtype).contiguous() for k, v in unet.state_dict().items()},
              os.path.join(base, "unet", "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    _write_json(os.path.join(base, "model_index.json"), {"_class_name": "StableDiffusionImageVariationPipeline",
                                                          "_diffusers_version": "0.8.0", "unet": ["diffusers", "UNet2DConditionModel"]})
    del unet
    log("wrote sd-image-variations-diffusers/unet")

    # ReferenceNet, as infer_audio2vid.py builds it
    reference = E.UNet2DConditionModel.from_pretrained(base, subfolder="unet")
    zero["reference_unet"] = randomize_(reference, args.seed, "reference_unet.pth")
    _save_pth(reference.state_dict(), os.path.join(out, "reference_unet.pth"), dtype)
    del reference

    # motion modules: the motion_modules.* tensors of the denoiser built from the base (no motion file yet)
    kwargs = copy.deepcopy(spec["unet_additional_kwargs"])
    for suffix in ([""] + (["_acc"] if args.acc else [])):
        denoiser = E.EchoUNet3DConditionModel.from_pretrained_2d(base, os.path.join(out, "__none__.pth"),
                                                                 subfolder="unet", unet_additional_kwargs=kwargs)
        zero[f"motion_module{suffix}"] = randomize_(denoiser, args.seed, f"motion_module{suffix}.pth",
                                                    name_filter=lambda n: ".motion_modules." in n)
        state = denoiser.state_dict()
        _save_pth({k: v for k, v in state.items() if ".motion_modules." in k},
                  os.path.join(out, f"motion_module{suffix}.pth"), dtype)
        zero[f"denoising_unet{suffix}"] = randomize_(
            denoiser, args.seed, f"denoising_unet{suffix}.pth",
            name_filter=None if args.denoiser_with_motion else (lambda n: ".motion_modules." not in n))
        state = denoiser.state_dict()
        if not args.denoiser_with_motion:
            state = {k: v for k, v in state.items() if ".motion_modules." not in k}
        _save_pth(state, os.path.join(out, f"denoising_unet{suffix}.pth"), dtype)
        del denoiser, state
        log(f"wrote denoising_unet{suffix}.pth and motion_module{suffix}.pth")

    # FaceLocator(320, conditioning_channels=1, block_out_channels=(16, 32, 96, 256)); gain 1.7 (SiLU stack)
    fl = spec["face_locator"]
    face_locator = E.FaceLocator(spec["unet_config"]["block_out_channels"][0], conditioning_channels=fl["conditioning_channels"],
                                 block_out_channels=tuple(fl["block_out_channels"]))
    zero["face_locator"] = randomize_(face_locator, args.seed, "face_locator.pth", gains={"conv_in.": 1.7, "blocks.": 1.7})
    _save_pth(face_locator.state_dict(), os.path.join(out, "face_locator.pth"), dtype)

    # VAE: encoder.conv_out gain 8 gives latents·0.18215 a std near 1; decoder.conv_out 0.5 stays inside the clamp
    _write_json(os.path.join(out, "sd-vae-ft-mse", "config.json"), spec["vae_config"])
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(os.path.join(out, "sd-vae-ft-mse")))
    zero["vae"] = randomize_(vae, args.seed, "sd-vae-ft-mse", gains={"encoder.conv_out.weight": 8.0,
                                                                     "decoder.conv_out.weight": 0.5})
    save_file({k: v.to(dtype).contiguous() for k, v in vae.state_dict().items()},
              os.path.join(out, "sd-vae-ft-mse", "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    del vae

    # openai Whisper checkpoint: {"dims": dict, "model_state_dict": ...}
    whisper = E.Whisper(E.ModelDimensions(**spec["whisper_dims"]))
    zero["whisper"] = randomize_(whisper, args.seed, "audio_processor/whisper_tiny.pt")
    path = os.path.join(out, "audio_processor", "whisper_tiny.pt")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save({"dims": dict(spec["whisper_dims"]),
                "model_state_dict": {k: v.to(dtype) if v.is_floating_point() else v
                                     for k, v in whisper.state_dict().items()}}, path)
    log("wrote face_locator.pth, sd-vae-ft-mse, audio_processor/whisper_tiny.pt")

    _write_json(os.path.join(out, "harness.json"), {
        "harness": "bench/echomimic_release.py", "echomimic_commit": E.commit, "seed": args.seed,
        "storage_dtype": args.dtype, "acc": args.acc, "denoiser_with_motion": args.denoiser_with_motion,
        "spec": spec, "all_zero_tensors_after_fill": zero, "torch": torch.__version__,
        "seconds": round(time.time() - t_start, 1),
    })
    if any(zero.values()):
        raise SystemExit(f"tensors still all-zero after the fill: {zero}")
    log(f"done in {time.time() - t_start:.1f}s: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
