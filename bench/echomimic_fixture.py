#!/usr/bin/env python
"""The committed EchoMimic parity fixture: a recipe for the release + a trimmed copy of EchoMimic's outputs.

A check tool (not part of the product). ``bench/echomimic_release.py`` fills every tensor of a release
from a generator seeded by sha256(seed/file/key) (``tensor_seed``), so the release is a function of its
key layout and seed: this module writes that layout as a small ``release.json`` recipe and rebuilds the
release from it bit for bit with torch alone (:func:`build_release`; the tests do so in a tmp dir)::

    echomimic_fixture.py RELEASE_DIR REFERENCE.safetensors OUT_DIR [--video-frames 0,5,10,15 --video-stride 4]

writes OUT_DIR/release.json and OUT_DIR/reference.safetensors (the tensors bench/parity_echomimic.py
compares, large ones cut by the slices recorded in its ``trimmed`` metadata), after checking that
:func:`build_release` gives back every tensor of RELEASE_DIR exactly.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

PTH_FILES = ("denoising_unet.pth", "reference_unet.pth", "face_locator.pth", "motion_module.pth")
WHISPER = "audio_processor/whisper_tiny.pt"
VAE = "sd-vae-ft-mse"
CONFIGS = ("sd-image-variations-diffusers/unet/config.json", "sd-vae-ft-mse/config.json")
GAINS = (1.0, 1.7, 8.0, 0.5)  # echomimic_release.py's gains (face locator 1.7, VAE conv_out 8 / 0.5)
ONE_D = {"norm_weight": lambda r: 1.0 + 0.1 * r, "norm_bias": lambda r: 0.1 * r, "other": lambda r: 0.05 * r}
COMPARED = ("inputs.", "a.whisper_features", "a.whisper_chunks", "b.ref_latents", "b.noise_pred", "c.video")


def tensor_seed(seed: int, namespace: str, name: str) -> int:
    """echomimic_release.py's per-tensor seed: sha256 of 'seed/file/name', 63 bits."""
    digest = hashlib.sha256(f"{seed}/{namespace}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def whisper_sinusoids(length: int, channels: int) -> torch.Tensor:
    """openai Whisper's encoder positional embedding (a buffer, not randomised)."""
    increment = math.log(10000) / (channels // 2 - 1)
    inv = torch.exp(-increment * torch.arange(channels // 2))
    scaled = torch.arange(length)[:, None] * inv[None, :]
    return torch.cat([torch.sin(scaled), torch.cos(scaled)], dim=1)


def make_tensor(seed: int, namespace: str, key: str, shape: list[int], rule: str) -> torch.Tensor:
    """One tensor of the release (float32) from its recipe row."""
    from emo_models.temporal import sinusoidal_positions

    if rule == "pe":
        return sinusoidal_positions(shape[1], shape[2])
    if rule == "whisper_positions":
        return whisper_sinusoids(*shape)
    r = torch.randn(shape, generator=torch.Generator().manual_seed(tensor_seed(seed, namespace, key)))
    if rule.startswith("weight*"):
        return r * (float(rule.removeprefix("weight*")) / math.prod(shape[1:]) ** 0.5)
    return ONE_D[rule](r)


def _rule(seed: int, namespace: str, key: str, value: torch.Tensor) -> str:
    shape = list(value.shape)
    candidates = ["pe", "whisper_positions"] + (
        [f"weight*{g:g}" for g in GAINS] if value.ndim >= 2 else list(ONE_D))
    for rule in candidates:
        if rule == "pe" and not key.endswith("pos_encoder.pe") or rule == "whisper_positions" and \
                key != "encoder.positional_embedding":
            continue
        if torch.equal(make_tensor(seed, namespace, key, shape, rule).to(value.dtype), value):
            return rule
    raise SystemExit(f"{namespace}: {key} follows none of echomimic_release.py's rules")


def _read(folder: Path, name: str) -> dict[str, torch.Tensor]:
    if name == WHISPER:
        return torch.load(folder / name, weights_only=True)["model_state_dict"]
    if name == VAE:
        with safe_open(str(folder / VAE / "diffusion_pytorch_model.safetensors"), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    return torch.load(folder / name, weights_only=True)


def write_recipe(release: Path, out: Path) -> dict:
    """release.json for ``release`` (made by echomimic_release.py)."""
    harness = json.loads((release / "harness.json").read_text())
    seed, dtype = harness["seed"], {"fp16": "float16", "fp32": "float32"}[harness["storage_dtype"]]
    files = {}
    for name in (*PTH_FILES, WHISPER, VAE):
        namespace = name if name != VAE else VAE
        files[name] = [[k, list(v.shape), _rule(seed, namespace, k, v)] for k, v in _read(release, name).items()]
    recipe = {"seed": seed, "dtype": dtype, "whisper_dims": torch.load(release / WHISPER, weights_only=True)["dims"],
              "configs": {name: json.loads((release / name).read_text()) for name in CONFIGS}, "files": files}
    (out / "release.json").write_text(json.dumps(recipe, separators=(",", ":")))
    return recipe


def build_release(recipe: dict | str | Path, folder: str | Path) -> Path:
    """Write the release a recipe describes into ``folder`` (EchoMimic's pretrained_weights layout)."""
    if not isinstance(recipe, dict):
        recipe = json.loads(Path(recipe).read_text())
    folder, seed, dtype = Path(folder), recipe["seed"], getattr(torch, recipe["dtype"])
    for name, text in recipe["configs"].items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(text))
    for name, rows in recipe["files"].items():
        tensors = {k: make_tensor(seed, name, k, shape, rule).to(dtype).contiguous() for k, shape, rule in rows}
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        if name == VAE:
            save_file(tensors, str(folder / VAE / "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
        elif name == WHISPER:
            torch.save({"dims": recipe["whisper_dims"], "model_state_dict": tensors}, folder / name)
        else:
            torch.save(tensors, folder / name)
    return folder


def _parse_slice(text: str) -> tuple:
    """'[:, ::4]' -> (slice(None), slice(None, None, 4)); only slices and '...'."""
    parts = []
    for part in text.strip("[]").split(","):
        part = part.strip()
        if part == "...":
            parts.append(Ellipsis)
        else:
            parts.append(slice(*(int(x) if x.strip() else None for x in part.split(":"))))
    return tuple(parts)


def trim(name: str, tensor: torch.Tensor, trimmed: dict[str, str]) -> torch.Tensor:
    """``tensor`` cut as the fixture's ``trimmed`` metadata says for ``name`` (unchanged when not listed);
    ``c.video`` also takes a frame list ``c.video.frames``."""
    if name in trimmed:
        tensor = tensor[_parse_slice(trimmed[name])]
    if name == "c.video" and "c.video.frames" in trimmed:
        tensor = tensor[:, :, json.loads(trimmed["c.video.frames"])]
    return tensor


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("release", type=Path)
    ap.add_argument("reference", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--video-frames", default="0,5,10,15")
    ap.add_argument("--video-stride", type=int, default=4)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    args.out.mkdir(parents=True, exist_ok=True)
    recipe = write_recipe(args.release, args.out)
    rebuilt = Path(tempfile.mkdtemp(prefix="echomimic-fixture-"))
    try:
        build_release(recipe, rebuilt)
        for name in (*PTH_FILES, WHISPER, VAE):
            ours, theirs = _read(rebuilt, name), _read(args.release, name)
            bad = [k for k in theirs if not torch.equal(ours[k], theirs[k])]
            if bad or set(ours) != set(theirs):
                raise SystemExit(f"{name}: rebuilt tensors differ: {bad[:3]}")
    finally:
        shutil.rmtree(rebuilt)
    with safe_open(str(args.reference), "pt") as f:
        meta = dict(f.metadata())
        trimmed = {"a.whisper_chunks": "[..., :96]",
                   "c.video": f"[:, :, :, ::{args.video_stride}, ::{args.video_stride}]",
                   "c.video.frames": json.dumps([int(x) for x in args.video_frames.split(",")])}
        kept = {k: trim(k, f.get_tensor(k), trimmed).contiguous() for k in f.keys()
                if k.startswith(COMPARED) or k.startswith("c.step") and k.endswith(".latents_after")}
    save_file(kept, str(args.out / "reference.safetensors"), metadata={**meta, "trimmed": json.dumps(trimmed)})
    sizes = {p.name: p.stat().st_size for p in args.out.iterdir()}
    print(f"echomimic_fixture: rebuilt release matches; wrote {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
