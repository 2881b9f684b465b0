#!/usr/bin/env python
"""Run EchoMimic's own inference code on a (random-weight) release and save reference tensors.

A check tool, not part of the product: it proves our EchoMimic support against antgroup/echomimic
(Apache-2.0) itself. EchoMimic is imported from the source folder given with ``--echomimic`` (made
by ``bench/echomimic_setup.sh``); none of its code is copied here. Run it in the EchoMimic venv::

    echomimic_reference.py RELEASE_DIR OUT.safetensors --echomimic /tmp/echo-src
                           [--only audio,forward,generate] [--input-seed 1234] [--seconds 0.6]
                           [--steps 2] [--threads N]

RELEASE_DIR comes from ``bench/echomimic_release.py``. The steps of ``infer_audio2vid.py`` are
followed in order with its defaults (cfg 2.5, 24 fps, context 12 frames overlap 3, seed 420, face
mask = face box dilated by 0.1), except for ``--steps`` and these bypasses:

1. No MTCNN and no face crop: the portrait is drawn at the model's size and its face box is given;
   the mask is built from the box with infer_audio2vid.py's dilation arithmetic.
2. No ffmpeg: ``audio2feat`` gets the PCM16/32768 samples of the 16 kHz mono clip as an array
   (Whisper's ``log_mel_spectrogram`` accepts one), the values ffmpeg would decode from the wav.
3. CPU and float32 (EchoMimic's config says fp16 on CUDA). ``ReferenceAttentionControl`` builds its
   guidance row mask on a hard-coded ``cuda`` device: that default is set to ``cpu``.
4. No mp4/moviepy step: the decoded video tensor is saved.

EchoMimic behaviour the tensors keep (a faithful port must match it): the ReferenceNet's features
are cast to float16 before the denoiser reads them (``update(dtype=torch.float16)``); the initial
noise is clamped to [-1.5, 1.5]; the video has ``len(whisper_chunks)`` frames (a little longer than
the audio); every step denoises all frames in context windows shifted by 2 frames per step, modulo
the frame count (so a video of 12 frames or fewer is one rotated window); attn2 output × 3.

Stages and keys (OUT.safetensors; OUT.json lists shapes, versions, timings):
  inputs.*   image_u8 (S,S,3), face_box (x0,y0,x1,y1), face_mask (S,S) in {0,1}, waveform (T,)
  a.*        mel (80, 3000) first 30-s segment, whisper_features (T50, layers+1, 384),
             whisper_chunks (F, 10·(layers+1), 384)
  b.*        first denoiser call of step 0: ref_latents, init_latents, face_locator, denoiser_in.*,
             noise_pred (2,4,12,h,w) [uncond, cond], noise_pred_cfg
  c.*        step{i}.{timestep,noise_pred,latents_after} (noise_pred after guidance, all frames),
             final_latents (1,4,F,h,w), video (1,3,F,S,S), timesteps
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

BYPASSES = [
    "no MTCNN/face crop: the portrait is drawn at the model's size, its face box given; mask = box dilated by 0.1 "
    "with infer_audio2vid.py's arithmetic",
    "no ffmpeg: audio2feat gets the PCM16/32768 samples of the 16 kHz clip as an array",
    "CPU, float32; ReferenceAttentionControl's hard-coded cuda row-mask device set to cpu",
    "no mp4 writing: the decoded video tensor is saved",
]


def import_echomimic(echo_src: str) -> types.SimpleNamespace:
    """EchoMimic's classes from an extracted source tree (nothing is copied)."""
    if not os.path.isfile(os.path.join(echo_src, "infer_audio2vid.py")):
        raise SystemExit(f"{echo_src}: no infer_audio2vid.py; give --echomimic the extracted antgroup/echomimic "
                         "source (bench/echomimic_setup.sh makes it)")
    import torch

    if echo_src not in sys.path:
        sys.path.insert(0, echo_src)
    from src.models.face_locator import FaceLocator
    from src.models.mutual_self_attention import ReferenceAttentionControl
    from src.models.unet_2d_condition import UNet2DConditionModel
    from src.models.unet_3d_echo import EchoUNet3DConditionModel
    from src.models.whisper.audio2feature import load_audio_model
    from src.models.whisper.whisper.model import ModelDimensions, Whisper
    from src.pipelines.context import get_context_scheduler
    from src.pipelines.pipeline_echo_mimic import Audio2VideoPipeline

    hooks = ReferenceAttentionControl.register_reference_hooks
    hooks.__defaults__ = tuple(torch.device("cpu") if isinstance(d, torch.device) else d for d in hooks.__defaults__)
    commit_file = os.path.join(echo_src, ".echomimic_commit")
    return types.SimpleNamespace(
        FaceLocator=FaceLocator, UNet2DConditionModel=UNet2DConditionModel,
        EchoUNet3DConditionModel=EchoUNet3DConditionModel, load_audio_model=load_audio_model,
        Whisper=Whisper, ModelDimensions=ModelDimensions, Audio2VideoPipeline=Audio2VideoPipeline,
        get_context_scheduler=get_context_scheduler,
        commit=open(commit_file).read().strip() if os.path.exists(commit_file) else "unknown")


def make_inputs(size: int, seed: int, seconds: float, sample_rate: int, dilation: float) -> dict:
    """Portrait (uint8), face box and EchoMimic's face mask, and a speech-like 16 kHz PCM16 clip."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.uint8)
    big = np.asarray(Image.fromarray(low, "RGB").resize((size, size), Image.BICUBIC), np.float32)
    image = np.clip(big + rng.normal(0, 25, size=(size, size, 3)), 0, 255).astype(np.uint8)
    w, h = rng.uniform(0.35, 0.5) * size, rng.uniform(0.4, 0.55) * size
    cx, cy = size / 2 + rng.uniform(-0.05, 0.05) * size, size / 2 + rng.uniform(-0.05, 0.05) * size
    box = [int(round(cx - w / 2)), int(round(cy - h / 2)), int(round(cx + w / 2)), int(round(cy + h / 2))]
    # infer_audio2vid.py: rb, re, cb, ce = y0, y1, x0, x1; pad = int(extent * facemusk_dilation_ratio)
    mask = np.zeros((size, size), np.uint8)
    rb, re, cb, ce = box[1], box[3], box[0], box[2]
    r_pad, c_pad = int((re - rb) * dilation), int((ce - cb) * dilation)
    mask[rb - r_pad:re + r_pad, cb - c_pad:ce + c_pad] = 255
    n = int(round(seconds * sample_rate))
    t = np.arange(n) / sample_rate
    wave = np.zeros(n)
    for _ in range(5):
        wave += rng.uniform(0.02, 0.08) * np.sin(2 * np.pi * rng.uniform(90, 1800) * t + rng.uniform(0, 2 * np.pi))
    wave = wave * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t) ** 2) + rng.normal(0, 0.01, n)
    pcm = np.clip(np.round(wave * 32767), -32768, 32767).astype(np.int16)
    return {"image_u8": image, "face_box": np.array(box, np.int64), "face_mask_u8": mask,
            "waveform": pcm.astype(np.float32) / 32768.0}


class _Stop(Exception):
    pass


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("release_dir", nargs="?")
    ap.add_argument("out", nargs="?")
    ap.add_argument("--echomimic", default=os.environ.get("ECHO_SRC", "/tmp/echo-src"),
                    help="extracted antgroup/echomimic source (default $ECHO_SRC or /tmp/echo-src)")
    ap.add_argument("--only", default="audio,forward,generate", help="stages: audio,forward,generate")
    ap.add_argument("--input-seed", type=int, default=1234)
    ap.add_argument("--seconds", type=float, default=0.6,
                    help="length of the driving clip (0.6 s: 16 frames at 24 fps, two wrapping windows)")
    ap.add_argument("--steps", type=int, default=2, help="DDIM steps (EchoMimic's default is 30)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--check-import", action="store_true", help="only import EchoMimic and exit")
    args = ap.parse_args(argv)
    E = import_echomimic(args.echomimic)
    if args.check_import:
        print(f"ok: EchoMimic {E.commit} imports")
        return 0
    if not (args.release_dir and args.out):
        ap.error("RELEASE_DIR and OUT are required")
    stages = {s.strip() for s in args.only.split(",") if s.strip()} | {"audio"}

    import numpy as np
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler
    from PIL import Image

    if args.threads:
        torch.set_num_threads(args.threads)
    t_start, timings, T = time.time(), {}, {}
    rel = os.path.abspath(args.release_dir)
    info = json.load(open(os.path.join(rel, "harness.json")))
    spec = info["spec"]
    S, fps = spec["image_size"], spec["fps"]

    def put(name, x):
        T[name] = torch.as_tensor(np.asarray(x) if not torch.is_tensor(x) else x).detach().cpu().contiguous().clone()

    def log(msg):
        print(f"[echomimic_reference] {msg}", flush=True)

    inp = make_inputs(S, args.input_seed, args.seconds, spec["sample_rate"], spec["facemask_dilation_ratio"])
    put("inputs.image_u8", inp["image_u8"])
    put("inputs.face_box", inp["face_box"])
    put("inputs.face_mask", inp["face_mask_u8"].astype(np.float32) / 255.0)
    put("inputs.waveform", inp["waveform"])

    # (a) audio: Audio2Feature.audio2feat + feature2chunks, as Audio2VideoPipeline.__call__ runs them
    t0 = time.time()
    audio = E.load_audio_model(model_path=os.path.join(rel, "audio_processor", "whisper_tiny.pt"), device="cpu")
    mels = []
    handle = audio.model.encoder.register_forward_pre_hook(lambda m, a: mels.append(a[0][0].clone()))
    features = audio.audio2feat(inp["waveform"])
    handle.remove()
    chunks = audio.feature2chunks(feature_array=features, fps=fps)
    put("a.mel", mels[0])
    put("a.whisper_features", features)
    put("a.whisper_chunks", chunks)
    timings["a_audio_s"] = time.time() - t0
    log(f"(a) whisper features {features.shape}, chunks {chunks.shape} in {timings['a_audio_s']:.2f}s")

    if stages & {"forward", "generate"}:
        t0 = time.time()
        base = os.path.join(rel, "sd-image-variations-diffusers")
        vae = AutoencoderKL.from_pretrained(os.path.join(rel, "sd-vae-ft-mse"))
        reference_unet = E.UNet2DConditionModel.from_pretrained(base, subfolder="unet")
        reference_unet.load_state_dict(torch.load(os.path.join(rel, "reference_unet.pth"), map_location="cpu"))
        denoising_unet = E.EchoUNet3DConditionModel.from_pretrained_2d(
            base, os.path.join(rel, "motion_module.pth"), subfolder="unet",
            unet_additional_kwargs=spec["unet_additional_kwargs"])
        denoising_unet.load_state_dict(torch.load(os.path.join(rel, "denoising_unet.pth"), map_location="cpu"),
                                       strict=False)
        fl = spec["face_locator"]
        face_locator = E.FaceLocator(spec["unet_config"]["block_out_channels"][0],
                                     conditioning_channels=fl["conditioning_channels"],
                                     block_out_channels=tuple(fl["block_out_channels"]))
        face_locator.load_state_dict(torch.load(os.path.join(rel, "face_locator.pth")))
        pipe = E.Audio2VideoPipeline(vae=vae, reference_unet=reference_unet, denoising_unet=denoising_unet,
                                     audio_guider=audio, face_locator=face_locator,
                                     scheduler=DDIMScheduler(**spec["noise_scheduler_kwargs"]))
        pipe = pipe.to("cpu", dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        timings["build_s"] = time.time() - t0
        info["runtime_modes"] = {"denoising_unet.training": denoising_unet.training,
                                 "reference_unet.training": reference_unet.training}
        captured: dict[str, list] = {"init": [], "steps": [], "final": [], "calls": []}
        prepare, decode, step = pipe.prepare_latents, pipe.decode_latents, pipe.scheduler.step

        def prepare_rec(*a, **k):
            out = prepare(*a, **k)
            captured["init"].append(out.clone())
            return out

        def decode_rec(latents):
            captured["final"].append(latents.clone())
            return decode(latents)

        def step_rec(model_output, timestep, sample, **k):
            out = step(model_output, timestep, sample, **k)
            captured["steps"].append((int(timestep), model_output.clone(), out.prev_sample.clone()))
            return out

        pipe.prepare_latents, pipe.decode_latents, pipe.scheduler.step = prepare_rec, decode_rec, step_rec
        face_mask = torch.from_numpy(inp["face_mask_u8"].astype(np.float32))[None, None, None] / 255.0

        def run(steps: int):
            return pipe(Image.fromarray(inp["image_u8"]), inp["waveform"], face_mask, S, S, 1200, steps, spec["cfg"],
                        generator=torch.manual_seed(spec["seed"]), audio_sample_rate=spec["sample_rate"],
                        context_frames=spec["context_frames"], fps=fps,
                        context_overlap=spec["context_overlap"]).videos

        def denoiser_hook(module, a, kw, out):
            captured["calls"].append((a, kw, out[0].clone()))
            if "stop_after_first" in captured:
                raise _Stop()

        ref_in = []
        h_ref = reference_unet.register_forward_pre_hook(lambda m, a: ref_in.append(a[0].clone()))
        h_den = denoising_unet.register_forward_hook(denoiser_hook, with_kwargs=True)
        try:
            if "forward" in stages:
                t0 = time.time()
                captured["stop_after_first"] = True
                try:
                    run(args.steps)
                except _Stop:
                    pass
                del captured["stop_after_first"]
                (a, kw, out) = captured["calls"][0]
                put("b.ref_latents", ref_in[0])
                put("b.init_latents", captured["init"][0])
                put("b.face_locator", kw["face_musk_fea"][1:])
                put("b.denoiser_in.sample", a[0])
                put("b.denoiser_in.timestep", torch.as_tensor(a[1]))
                put("b.denoiser_in.audio_cond_fea", kw["audio_cond_fea"])
                put("b.denoiser_in.face_musk_fea", kw["face_musk_fea"])
                put("b.noise_pred", out)
                u, c = out.chunk(2)
                put("b.noise_pred_cfg", u + spec["cfg"] * (c - u))
                timings["b_forward_s"] = time.time() - t0
                log(f"(b) one denoiser forward {tuple(out.shape)} in {timings['b_forward_s']:.1f}s")
            if "generate" in stages:
                t0 = time.time()
                for k in ("init", "steps", "final", "calls"):
                    captured[k].clear()
                video = run(args.steps)
                for i, (ts, pred, after) in enumerate(captured["steps"]):
                    put(f"c.step{i}.timestep", torch.tensor(ts))
                    put(f"c.step{i}.noise_pred", pred)
                    put(f"c.step{i}.latents_after", after)
                put("c.init_latents", captured["init"][0])
                put("c.final_latents", captured["final"][0])
                put("c.video", video)
                put("c.timesteps", pipe.scheduler.timesteps)
                info["denoiser_calls"] = len(captured["calls"])
                timings["c_generate_s"] = time.time() - t0
                if "b.noise_pred" in T:
                    info["b_equals_c_first_call"] = bool(torch.equal(T["b.noise_pred"], captured["calls"][0][2]))
                log(f"(c) video {tuple(video.shape)} with {len(captured['calls'])} denoiser calls "
                    f"in {timings['c_generate_s']:.1f}s")
        finally:
            h_ref.remove()
            h_den.remove()

    from importlib.metadata import version

    from safetensors.torch import save_file

    timings["total_s"] = time.time() - t_start
    meta = {"echomimic_commit": E.commit, "release_harness_json": info, "stages": sorted(stages),
            "input_seed": args.input_seed, "seconds": args.seconds, "steps": args.steps,
            "torch_threads": torch.get_num_threads(), "bypasses": BYPASSES,
            "versions": {p: version(p) for p in ("torch", "diffusers", "transformers", "numpy")},
            "timings_s": {k: round(v, 3) for k, v in timings.items()}}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)) or ".", exist_ok=True)
    save_file(T, args.out, metadata={"harness": json.dumps(meta)})
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump({**meta, "tensors": {k: [list(v.shape), str(v.dtype)] for k, v in T.items()}}, f, indent=2)
    log(f"wrote {len(T)} tensors to {args.out}; timings {meta['timings_s']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
