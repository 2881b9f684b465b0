#!/usr/bin/env python
"""Our EchoMimic support against EchoMimic's own code, tensor by tensor.

    python bench/parity_echomimic.py RELEASE_DIR REFERENCE.safetensors [--tol 1e-4] [--threads N] [--vae-float64]

RELEASE_DIR: an EchoMimic release (bench/echomimic_release.py makes random-weight ones), loaded
through ``load_pipeline`` exactly as users' files are. REFERENCE: what bench/echomimic_reference.py
saved from EchoMimic's own modules on that release. Our code runs on the reference's ``inputs.*``
(portrait, face box, waveform) with the checkpoint's preset through the one render path
(``emo_models.render``, replaying EchoMimic's initial noise), and prints one line per compared tensor,
``parity: NAME max_abs=X``, then ``parity_echomimic: worst=X compared=N``. Exit 1 when worst > tol.
Stages follow what the reference holds: whisper features (a), the first denoiser call with its
classifier-free-guidance pair (b), a multi-window generation (c). float32 on CPU.

--vae-float64 also encodes the portrait with the release's VAE in float64 and prints how far each side's
float32 reference latent is from it (``parity_note: b.ref_latents ...``): at 512x512 the VAE's own
rounding decides ``b.ref_latents``, and this says whose.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import sys
import time
from pathlib import Path

import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from echomimic_fixture import trim  # noqa: E402

from emo_models.families.echomimic import SEED, face_mask  # noqa: E402
from emo_models.loading import load_pipeline  # noqa: E402
from emo_models.render import RenderSettings, render  # noqa: E402
from emo_models.whisper_audio import whisper_features  # noqa: E402


class _FirstCallDone(Exception):
    """Stops the sampler after its first backbone call when the reference holds no generation."""


def run_parity(release: str | Path, reference: str | Path, log=print,
               vae_float64: bool = False) -> tuple[float, int, dict[str, float]]:
    """Compare; returns (worst max-abs difference, tensors compared, name -> max abs)."""
    with safe_open(str(reference), "pt") as f:
        ref = {k: f.get_tensor(k) for k in f.keys()}
        meta = json.loads(f.metadata()["harness"])
        trimmed = json.loads(f.metadata().get("trimmed", "{}"))  # a committed fixture keeps slices of some
    spec = meta["release_harness_json"]["spec"]
    pipeline, _ = load_pipeline(release)
    model, config, preset = pipeline.model, pipeline.config, pipeline.config.generation
    for field, value in (("fps", config.fps), ("cfg", preset.guidance), ("seed", SEED),
                         ("context_frames", config.frames_per_clip), ("context_overlap", preset.context_overlap)):
        if spec[field] != value:
            raise SystemExit(f"reference made with {field}={spec[field]}, our EchoMimic preset has {value}")
    results: dict[str, float] = {}

    def compare(name: str, ours: torch.Tensor, theirs: torch.Tensor) -> None:
        ours = trim(name, ours, trimmed)
        if tuple(ours.shape) != tuple(theirs.shape):
            raise SystemExit(f"{name}: shape {tuple(ours.shape)} vs EchoMimic's {tuple(theirs.shape)}")
        results[name] = float((ours.double().cpu() - theirs.double()).abs().max())
        log(f"parity: {name} max_abs={results[name]:.3e}")

    size = pipeline.config.width
    image = ref["inputs.image_u8"].permute(2, 0, 1)[None].float() / 255.0
    mask = face_mask(tuple(ref["inputs.face_box"].tolist()), size, size)
    wave = ref["inputs.waveform"].numpy()  # 16 kHz
    compare("inputs.face_mask", mask[0, 0], ref["inputs.face_mask"])
    compare("a.whisper_features", whisper_features(pipeline.audio_encoder, wave), ref["a.whisper_features"])
    audio = pipeline.encode_audio(wave, 16000)
    compare("a.whisper_chunks", model.encode_audio(audio.windows(0, audio.frames)), ref["a.whisper_chunks"])
    if "b.noise_pred" not in ref and "c.video" not in ref:
        return max(results.values()), len(results), results

    encoding = pipeline.encode_reference(image)
    calls = []
    denoise = model.denoise

    generate = "c.video" in ref

    def recording_denoise(*args, **kwargs):
        calls.append(denoise(*args, **kwargs))
        if not generate:
            raise _FirstCallDone()
        return calls[-1]

    def echomimic_noise(first_frame: int, shape: tuple[int, ...]) -> torch.Tensor:
        """EchoMimic's draw: (1, 4, F, h, w) from a CPU generator seeded with its seed."""
        b, frames, c, h, w = shape
        generator = torch.Generator("cpu").manual_seed(SEED)
        return torch.randn((b, c, frames, h, w), generator=generator, dtype=torch.float32).transpose(1, 2)

    model.denoise = recording_denoise
    try:
        steps = sum(1 for k in ref if k.startswith("c.step") and k.endswith(".latents_after")) or 1
        settings = RenderSettings.from_config(config, steps=steps, seed=SEED)
        after, rendered = [], None
        with contextlib.suppress(_FirstCallDone):
            rendered = render(pipeline, encoding, audio, mask, settings, initial_noise=echomimic_noise,
                              on_step=lambda i, n, x: after.append(x.clone()))
    finally:
        del model.denoise
    if "b.noise_pred" in ref:
        compare("b.ref_latents", encoding.latent, ref["b.ref_latents"])
        if vae_float64:
            exact = float64_latent(pipeline, image)
            log(f"parity_note: b.ref_latents against a float64 VAE encode: ours max_abs="
                f"{(encoding.latent.double().cpu() - exact).abs().max():.3e}, EchoMimic's max_abs="
                f"{(ref['b.ref_latents'].double() - exact).abs().max():.3e}")
        first = calls[0].transpose(1, 2)  # (v, f, 4, h, w) -> EchoMimic's (v, 4, f, h, w)
        compare("b.noise_pred", first, ref["b.noise_pred"])
        compare("b.noise_pred_cfg", settings.guidance.combine({"uncond": first[:1], "full": first[1:]}),
                ref["b.noise_pred_cfg"])
    if generate:
        for i, x in enumerate(after):
            compare(f"c.step{i}.latents_after", x.transpose(0, 1)[None], ref[f"c.step{i}.latents_after"])
        compare("c.video", rendered.frames.transpose(0, 1)[None], ref["c.video"])
    return max(results.values()), len(results), results


def float64_latent(pipeline, image: torch.Tensor) -> torch.Tensor:
    """The reference latent (1, 4, h, w) from a float64 copy of the pipeline's VAE (the loaded one is untouched)."""
    vae = torch.nn.Module.to(copy.deepcopy(pipeline.vae), "cpu", torch.float64)  # no diffusers dtype warning
    with torch.no_grad():
        return vae.encode(image.double() * 2 - 1).latent_dist.mode() * vae.config.scaling_factor


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("release")
    ap.add_argument("reference")
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--vae-float64", action="store_true", help="also compare both reference latents with a float64 VAE")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    worst, compared, _ = run_parity(args.release, args.reference, vae_float64=args.vae_float64)
    print(f"parity_echomimic: worst={worst:.3e} compared={compared} ({time.time() - start:.1f} s, "
          f"{torch.get_num_threads()} threads, float32 CPU)")
    return 0 if worst <= args.tol else 1


if __name__ == "__main__":
    sys.exit(main())
