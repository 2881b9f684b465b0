"""Our code on Hallo's weights against Hallo's own code: one line per compared tensor.

    python bench/parity_hallo.py RELEASE_DIR REFERENCE.safetensors [--only audio,forward] [--threads N]

RELEASE_DIR is a Hallo release (``pretrained_models/`` layout), loaded through ``load_pipeline``: the
code users' files go through. REFERENCE is what ``shared/tools/hallo-reference/reference_outputs.py``
saved when it ran Hallo's own modules on that release: their inputs (``inputs.*``: image, face region,
identity embedding, region masks per depth, waveform) are fed to our code and each output compared:

    a.audio_emb          wav2vec2 features as pipeline.encode_audio makes them with the release's preset
                         (ceil(s x fps) frames, padded with silence to whole clips)
    b.audio_proj_out     clip 0's audio tokens
    b.noise_pred         one denoiser call on clip 0's first step, both guidance branches
    b.noise_pred_cfg     the same after guidance
    c.clipK.stepI.latents_after, c.video   Hallo's first clips (2 x 2 DDIM steps) through our one render
                         path (emo_models.render.render_clips with the release's preset), Hallo's noise

Prints ``parity: NAME max_abs=X`` per tensor, then ``parity_hallo: worst=X compared=N`` last.
float32 on CPU; the reference tool's README gives the noise floor (thread count changes rounding).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from einops import rearrange
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emo_models.audio_modules import RegionMasks  # noqa: E402
from emo_models.loading import load_pipeline  # noqa: E402
from emo_models.model import ClipCondition  # noqa: E402
from emo_models.schedulers import make_scheduler  # noqa: E402

INFERENCE_SEED = 42  # scripts/inference.py: torch.manual_seed(42)


def region_masks(ref: dict, videos: int) -> RegionMasks:
    """inputs.{full,face,lip}_mask.{depth} (1, N) -> masks for ``videos`` guidance branches."""
    depths = sorted({int(k.rsplit(".", 1)[1]) for k in ref if k.startswith("inputs.full_mask.")})
    pick = {r: tuple(ref[f"inputs.{r}_mask.{d}"].expand(videos, -1) for d in depths) for r in ("full", "face", "lip")}
    return RegionMasks(**pick)


def first_clip_forward(pipeline, ref: dict, windows: torch.Tensor, steps: int, guidance: float):
    """One denoiser call for clip 0 at its first timestep, branches [uncond, cond] as Hallo builds them."""
    model, cfg = pipeline.model, pipeline.config
    f, n = cfg.frames_per_clip, cfg.motion_frames
    image = ref["inputs.image_u8"].permute(2, 0, 1)[None].float() / 255  # (1, 3, S, S) in [0, 1]
    # first clip: the motion frames are the reference repeated; [reference, motion] share one VAE batch
    latents = pipeline.vae_encode(torch.cat([image] * (1 + n)))  # (1+n, 4, h, w)
    embedding = ref["inputs.source_image_face_emb"][None].float()
    identity = torch.cat([model.encode_identity(torch.zeros_like(embedding)), model.encode_identity(embedding)])
    contexts = model.reference_contexts(identity, 1 + n)
    features, motion = model.encode_clip_references(torch.stack([latents, latents]), contexts)
    tokens = model.encode_audio(windows[:f][None])
    face = model.encode_face(ref["inputs.source_image_face_region"][None])
    cond = ClipCondition(reference=features, motion=motion, identity=identity,
                         audio_tokens=torch.cat([torch.zeros_like(tokens), tokens]),
                         face=torch.cat([torch.zeros_like(face), face]),
                         use_reference=torch.tensor([False, True]), regions=region_masks(ref, 2))
    h, w = latents.shape[-2:]
    noise = torch.randn((1, 4, f, h, w), generator=torch.Generator().manual_seed(INFERENCE_SEED))
    scheduler = make_scheduler(cfg.scheduler, "ddim", steps)
    t = scheduler.timesteps[0]
    latents = rearrange(noise * scheduler.init_noise_sigma, "b c f h w -> b f c h w")
    eps = model.denoise(scheduler.scale_model_input(latents, t).expand(2, -1, -1, -1, -1), t, cond)
    eps = rearrange(eps, "v f c h w -> v c f h w")
    uncond, full = eps.chunk(2)
    return {"b.init_latents": noise, "b.audio_proj_out": tokens, "b.noise_pred": eps,
            "b.noise_pred_cfg": uncond + guidance * (full - uncond)}


def hallo_noise(clips: int, shape: tuple[int, ...]):
    """Hallo's initial latents: clip k gets the k-th draw of the global generator seeded 42, laid out
    (1, 4, f, h, w); -> initial_noise(first_frame, (1, f, 4, h, w)) for render_clips."""
    generator = torch.Generator().manual_seed(INFERENCE_SEED)
    b, f, c, h, w = shape
    draws = [torch.randn((b, c, f, h, w), generator=generator) for _ in range(clips)]
    return lambda first_frame, _shape: rearrange(draws[first_frame // f], "b c f h w -> b f c h w")


def generation(pipeline, ref: dict, meta: dict) -> dict[str, torch.Tensor]:
    """Hallo's 2-clip generation through our one render path (render_clips, the checkpoint's preset):
    the inputs' face embedding, region masks and face region, Hallo's noise; -> c.* tensors."""
    from emo_models.render import RenderSettings, render_clips

    cfg = pipeline.config
    clips, steps = int(meta["n_clips"]), int(meta["ddim_steps"])
    image = ref["inputs.image_u8"].permute(2, 0, 1)[None].float() / 255
    embedding = ref["inputs.source_image_face_emb"][None].float()
    reference = pipeline.encode_reference(image, embedding, region_masks(ref, 1))
    audio = pipeline.encode_audio(ref["inputs.waveform"].numpy(), cfg.audio_sample_rate)
    settings = RenderSettings.from_config(cfg, steps=steps)
    f, (c, h, w) = settings.frames_per_clip, reference.latent.shape[-3:]
    latents_after: list[torch.Tensor] = []
    out, frames = {}, []
    rendered = render_clips(pipeline, reference, audio, ref["inputs.source_image_face_region"][None, :1], settings,
                            initial_noise=hallo_noise(clips, (1, f, c, h, w)),
                            on_step=lambda done, total, latents: latents_after.append(latents.clone()))
    for clip in rendered:
        frames.append(clip.frames)
        if clip.index + 1 == clips:
            break
    for i, latents in enumerate(latents_after):
        out[f"c.clip{i // steps}.step{i % steps}.latents_after"] = rearrange(latents, "f c h w -> 1 c f h w")
    out["c.video"] = rearrange(torch.cat(frames), "f c h w -> c f h w")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("release")
    parser.add_argument("reference")
    parser.add_argument("--only", default="audio,forward,generate",
                        help="stages: audio, forward, generate (default: all three)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave the default)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    stages = {s.strip() for s in args.only.split(",") if s.strip()}
    ref = load_file(args.reference)
    with safe_open(args.reference, "pt") as f:
        meta = json.loads(f.metadata()["harness"])
    started = time.time()
    pipeline, _ = load_pipeline(args.release)
    spec = meta["release_harness_json"]["spec"]
    # the clip geometry the reference ran with (Hallo's 16 + 2 unless the harness changed it)
    pipeline.config.frames_per_clip, pipeline.config.motion_frames = spec["n_sample_frames"], spec["n_motion_frames"]
    print(f"loaded {args.release} ({pipeline.config.name}) in {time.time() - started:.1f} s", flush=True)
    ours = {}
    with torch.no_grad():
        # the user's path: the release's preset counts frames (ceil) and pads whole clips of silence
        audio = pipeline.encode_audio(ref["inputs.waveform"].numpy(), pipeline.config.audio_sample_rate)
        ours["a.audio_emb"] = audio.source(0, audio.frames + audio.padding)
        if "forward" in stages:
            windows = audio.windows(0, audio.frames + audio.padding)
            guidance = float(spec["cfg_scale"])
            ours.update(first_clip_forward(pipeline, ref, windows, int(meta["ddim_steps"]), guidance))
        if "generate" in stages:
            ours.update(generation(pipeline, ref, meta))
    worst, compared = 0.0, 0
    for name, value in ours.items():
        if name not in ref:
            print(f"parity: {name} not in the reference (made with --only {','.join(meta['stages'])})")
            continue
        expected = ref[name].float()
        if tuple(value.shape) != tuple(expected.shape):
            print(f"parity: {name} shape {tuple(value.shape)} vs reference {tuple(expected.shape)}")
            worst, compared = math.inf, compared + 1
            continue
        diff = (value.float() - expected).abs().max().item()
        print(f"parity: {name} max_abs={diff:.3e} ref_max={expected.abs().max().item():.3g}", flush=True)
        worst, compared = max(worst, diff), compared + 1
    print(f"parity_hallo: worst={worst:.3e} compared={compared}  ({time.time() - started:.0f} s, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__})")
    return 0 if worst <= 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
