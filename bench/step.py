"""One denoising step of one clip at full size: seconds, GFLOP, achieved GFLOP/s vs a plain matmul, peak RSS.

    python bench/step.py                      # full config, 12 frames at 512x512, CPU fp32
    python bench/step.py --device cuda --dtype bf16

What is timed is exactly what runs per step in generation (`EMOModel.denoise`): the backbone with its
reference-attention, audio-attention, temporal modules, face-locator residual and speed tokens. The
ReferenceNet, audio projection, face locator and speed encoder run once before (per video or clip),
as in the render path, and are not part of the step. The guidance batches are the render path's own
(`Guidance.branches` + `EMOModel.guidance_batch`): one scale (the default: unconditional + full, 2
passes) and unequal reference/audio scales (3 passes).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emo_models.config import get_config  # noqa: E402
from emo_models.devices import DTYPES  # noqa: E402
from emo_models.guidance import Guidance  # noqa: E402
from emo_models.model import ClipCondition, EMOModel  # noqa: E402

GUIDANCE = {"no guidance (1 pass)": Guidance(1.0), "one scale (default, 2 passes)": Guidance(3.5),
            "unequal reference/audio scales (3 passes)": Guidance(1.0, reference=2.0, audio=3.5)}


def matmul_gflops(device: torch.device, dtype: torch.dtype, n: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of an n×n matmul in this process: the machine's practical peak for comparison."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_rss_gib() -> float:
    """Peak resident memory of this process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def build_condition(model: EMOModel, guidance: Guidance, frames: int, h: int, w: int, device, dtype) -> ClipCondition:
    """The per-clip condition, computed once as the render path does, batched into the guidance branches."""
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    reference = torch.randn(1, 4, h, w, generator=g).to(device, dtype)
    windows = torch.randn(1, frames, 2 * cfg.audio_window + 1, cfg.audio_layers, cfg.audio_channels,
                          generator=g).to(device, dtype)
    mask = torch.zeros(1, 1, h * cfg.vae_scale, w * cfg.vae_scale, device=device, dtype=dtype)
    mask[..., h * 2:h * 6, w * 2:w * 6] = 1
    with torch.no_grad():
        cond = ClipCondition(
            reference=model.encode_reference(reference),
            motion=model.encode_motion(torch.randn(1, cfg.motion_frames, 4, h, w, generator=g).to(device, dtype)),
            audio_tokens=model.encode_audio(windows),
            speed_tokens=model.encode_speed(torch.full((1, frames), 0.5, device=device)),
            face=model.encode_face(mask),
        )
        return model.guidance_batch(cond, [drops for _, drops in guidance.branches(cfg.generation.uncond_drops)])


def time_step(model, latents, cond, device, repeats: int, warmup: int) -> tuple[float, float]:
    """(seconds per step, GFLOP per step). FLOPs are counted during the timed runs: the counter only
    tallies each op's shape, which costs well under 1% next to ops of this size."""
    t = torch.tensor(500, device=device)
    counter = FlopCounterMode(display=False)
    with torch.no_grad():
        for _ in range(warmup):
            model.denoise(latents, t, cond)
        sync(device)
        start = time.perf_counter()
        with counter:
            for _ in range(repeats):
                model.denoise(latents, t, cond)
            sync(device)
        seconds = (time.perf_counter() - start) / repeats
    return seconds, counter.get_total_flops() / 1e9 / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="full")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default: the config's)")
    parser.add_argument("--size", type=int, default=None, help="pixels (default: the config's width)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 0 on CPU, 2 on GPU)")
    parser.add_argument("--skip-cfg", action="store_true", help="time only the unguided (1-pass) step")
    args = parser.parse_args()

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    config = get_config(args.config)
    frames = args.frames or config.frames_per_clip
    size = args.size or config.width
    h = w = size // config.vae_scale
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"machine: {name}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{args.device} {args.dtype}")
    started = time.perf_counter()
    torch.manual_seed(0)
    model = EMOModel(config).to(device, dtype).eval()
    params = sum(p.numel() for p in model.parameters())
    print(f"model: {args.config} config, {params / 1e6:.0f} M parameters, built in {time.perf_counter() - started:.1f} s")
    peak = matmul_gflops(device, dtype)
    print(f"plain matmul: {peak:.0f} GFLOP/s (2048x2048, same process)")
    print(f"clip: {frames} frames at {size}x{size} (latent {h}x{w}), {config.motion_frames} motion frames")
    for label, guidance in GUIDANCE.items():
        videos = len(guidance.branches(config.generation.uncond_drops))
        if args.skip_cfg and videos > 1:
            continue
        cond = build_condition(model, guidance, frames, h, w, device, dtype)
        latents = torch.randn(videos, frames, 4, h, w, device=device, dtype=dtype)
        warmup = args.warmup if args.warmup is not None else (2 if device.type == "cuda" else 0)
        seconds, gflop = time_step(model, latents, cond, device, args.repeats, warmup)
        achieved = gflop / seconds
        print(f"step {label}: {seconds:.2f} s, {gflop:.0f} GFLOP, {achieved:.0f} GFLOP/s = "
              f"{achieved / peak:.2f} of matmul; {seconds / frames:.2f} s per frame")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    print(f"peak RSS: {peak_rss_gib():.1f} GiB")


if __name__ == "__main__":
    main()
