"""Load EMO Model: a native checkpoint from ``models/emo``, or one assembled from parts users already have."""

from __future__ import annotations

import os

import torch

from emo_models.devices import DTYPES

from . import comfy_bridge
from .types import EMOModelHandle

ASSEMBLE = "(assemble from parts)"
NONE = "(none)"
PRESETS = ("full", "tiny")


class EMOModules(torch.nn.Module):
    """The pipeline's modules under one parent, for one ModelPatcher.

    diffusers and transformers models expose a read-only ``device`` property that ComfyUI's patcher
    would overwrite; this parent carries a plain ``device`` attribute instead.
    """

    def __init__(self, pipeline):
        super().__init__()
        self.model, self.vae, self.audio_encoder = pipeline.model, pipeline.vae, pipeline.audio_encoder
        self.device = None


def native_checkpoints() -> list[str]:
    """EMO checkpoint folders under models/emo: native ones (config.json) and open families' releases as
    downloaded (EchoMimic's pretrained_weights: emo_models.families)."""
    from emo_models.families import FAMILIES

    return comfy_bridge.model_folders("emo", ("config.json", *(f.marker for f in FAMILIES.values())))


def base_models() -> list[str]:
    """SD-1.5 single files from models/checkpoints and diffusers folders from models/diffusers."""
    files = [f"checkpoints/{name}" for name in comfy_bridge.model_files("checkpoints")]
    folders = [f"diffusers/{name}" for name in comfy_bridge.model_folders("diffusers", "model_index.json")]
    return files + folders


def audio_encoders() -> list[str]:
    """wav2vec2 in models/audio_encoders: single files (ComfyUI's layout) and transformers folders (config.json)."""
    return sorted(set(comfy_bridge.model_files("audio_encoders")) |
                  set(comfy_bridge.model_folders("audio_encoders", "config.json")))


def refuse_escape(name: str, input_name: str, kind: str) -> None:
    """Refuse absolute paths and '..' parts: model names are relative to the models folders."""
    parts = name.replace("\\", "/").split("/")
    if os.path.isabs(name) or ".." in parts or (len(name) > 1 and name[1] == ":"):
        raise ValueError(f"{input_name}: {name!r} points outside the models folders; pick a name from the list "
                         f"(files go into models/{kind})")


def resolve(kind: str, name: str, choices: list[str], input_name: str) -> str:
    """The full path of ``name`` in the ``kind`` model folders; refuses escaping paths and unlisted names."""
    refuse_escape(name, input_name, kind)
    if name not in choices:
        roots = ", ".join(comfy_bridge.model_roots(kind)) or f"models/{kind}"
        listed = ", ".join(choices[:8]) or "nothing yet"
        raise ValueError(f"{input_name}: {name!r} is not in models/{kind} ({roots}); put it there and refresh "
                         f"the page, or pick one of: {listed}")
    for root in comfy_bridge.model_roots(kind):
        path = os.path.abspath(os.path.join(root, name))
        if os.path.commonpath([path, os.path.abspath(root)]) == os.path.abspath(root) and os.path.exists(path):
            return path
    raise ValueError(f"{input_name}: {name!r} is listed but no longer on disk in models/{kind}; refresh the page")


class LoadEMOModel:
    """EMO_MODEL from a native checkpoint folder, or assembled from SD-1.5, VAE, AnimateDiff and wav2vec2."""

    CATEGORY = "EMO"
    RETURN_TYPES = ("EMO_MODEL",)
    RETURN_NAMES = ("emo_model",)
    FUNCTION = "load"
    DESCRIPTION = __doc__

    @classmethod
    def INPUT_TYPES(cls):
        def choice(names, tooltip):
            return ([NONE, *names], {"default": NONE, "tooltip": tooltip})

        return {"required": {
            "checkpoint": ([*native_checkpoints(), ASSEMBLE], {"tooltip": "A native EMO checkpoint folder in "
                           "models/emo (config.json + safetensors), an EchoMimic or Hallo release folder as "
                           "downloaded (models/emo/<name>/, see the README), or assemble one from the parts below."}),
            "base_model": choice(base_models(), "Assemble only: SD-1.5 from models/checkpoints (single file) or "
                                 "models/diffusers (folder); its UNet fills the backbone and ReferenceNet."),
            "vae": choice(comfy_bridge.model_files("vae"), "Assemble only: a VAE from models/vae; (none) uses "
                          "the base model's VAE."),
            "motion_module": choice(comfy_bridge.model_files("animatediff_models"), "Assemble only: AnimateDiff "
                                    "motion module (mm_sd_v15_v2) from models/animatediff_models."),
            "audio_encoder": choice(audio_encoders(), "Assemble only: a wav2vec2 file or transformers folder from "
                                    "models/audio_encoders (base, large or XLS-R; its layers and width size the "
                                    "audio projection)."),
            "config": (list(PRESETS), {"default": "full", "tooltip": "Assemble only: model size preset (full = "
                       "SD-1.5 at 512x512; tiny = a small random model for testing)."}),
            "dtype": (["auto", *DTYPES], {"default": "auto", "tooltip": "Weights precision; auto follows "
                      "ComfyUI (fp16/bf16 on GPUs, fp32 on CPU)."}),
        }}

    def load(self, checkpoint, base_model, vae, motion_module, audio_encoder, config, dtype):
        device = comfy_bridge.torch_device()
        torch_dtype = comfy_bridge.default_dtype(device) if dtype == "auto" else DTYPES.get(dtype)
        if torch_dtype is None:
            raise ValueError(f"dtype: {dtype!r}; choose one of auto, {', '.join(DTYPES)}")
        parts = {"base_model": base_model, "vae": vae, "motion_module": motion_module, "audio_encoder": audio_encoder}
        if checkpoint != ASSEMBLE:
            chosen = [f"{k}={v}" for k, v in parts.items() if v != NONE]
            if chosen:
                raise ValueError(f"checkpoint: {checkpoint!r} is a complete EMO checkpoint but parts are set "
                                 f"({', '.join(chosen)}); set them to (none), or pick {ASSEMBLE}")
            pipeline, report, source = self._native(checkpoint, torch_dtype)
        else:
            pipeline, report, source = self._assembled(parts, config, torch_dtype)
        comfy_bridge.log.info("EMO %s", "\n".join(report.summary))
        for line in report.warnings:  # untrained parts: the video would be noise, say so in the console
            comfy_bridge.log.warning("EMO %s", line)
        patcher = comfy_bridge.model_patcher(EMOModules(pipeline))
        return (EMOModelHandle(pipeline=pipeline, patcher=patcher, source=source),)

    @staticmethod
    def _native(checkpoint, dtype):
        from emo_models.loading import checkpoint_report, load_pipeline

        folder = resolve("emo", checkpoint, native_checkpoints(), "checkpoint")
        pipeline, reports = load_pipeline(folder, device=comfy_bridge.offload_device(), dtype=dtype)
        return pipeline, checkpoint_report(folder, pipeline, reports), folder

    @staticmethod
    def _assembled(parts, config, dtype):
        from emo_models.config import get_config
        from emo_models.loading import assemble, assembly_report

        if config not in PRESETS:
            raise ValueError(f"config: {config!r}; choose one of {', '.join(PRESETS)}")
        if parts["base_model"] == NONE and config == "full":
            raise ValueError("base_model: (none); assembling the full model needs an SD-1.5 checkpoint in "
                             "models/checkpoints or models/diffusers (or pick a native EMO checkpoint)")
        paths = {}
        if parts["base_model"] != NONE:
            refuse_escape(parts["base_model"], "base_model", "checkpoints")
            kind, _, name = parts["base_model"].partition("/")
            if kind not in ("checkpoints", "diffusers"):
                raise ValueError(f"base_model: {parts['base_model']!r} is not in models/checkpoints or "
                                 "models/diffusers; pick a name from the list")
            choices = [c.partition("/")[2] for c in base_models() if c.startswith(kind + "/")]
            paths["base"] = resolve(kind, name, choices, "base_model")
        listed = {"vae": ("vae", comfy_bridge.model_files("vae")),
                  "motion_module": ("animatediff_models", comfy_bridge.model_files("animatediff_models")),
                  "audio_encoder": ("audio_encoders", audio_encoders())}
        for key, (kind, choices) in listed.items():
            if parts[key] != NONE:
                paths[key] = resolve(kind, parts[key], choices, key)
        pipeline, reports = assemble(get_config(config), **paths)
        pipeline.to(device=comfy_bridge.offload_device(), dtype=dtype)
        report = assembly_report(pipeline, reports, paths)
        return pipeline, report, ", ".join(f"{k}={v}" for k, v in paths.items()) or f"random {config}"
