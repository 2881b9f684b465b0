"""One denoising step of one clip at full size: seconds, GFLOP, achieved GFLOP/s vs a plain matmul, peak RSS.

    python bench/step.py                      # full config, 12 frames at 512x512, CPU fp32, default guidance
    python bench/step.py --no-cache           # the same without the per-clip cache (the figures before it)
    python bench/step.py --guidance all       # also 1 and 3 passes per step
    python bench/step.py --device cuda --dtype bf16

What is timed is exactly what runs per step in generation (`EMOModel.denoise`): the backbone with its
reference-attention, audio-attention, temporal modules, face-locator residual and speed tokens. The
ReferenceNet, audio projection, face locator and speed encoder run once before (per video or clip),
as in the render path, and are not part of the step. The guidance batches are the render path's own
(`Guidance.branches` + `EMOModel.guidance_batch`): one scale (the default: unconditional + full, 2
passes), and with `--guidance all` no guidance (1 pass) and unequal reference/audio scales (3 passes).
Each clip's steps share one `EMOModel.clip_cache`, as in the render path: the clip's first step fills it
(timed and printed apart), the timed steps are the later ones.

FLOPs come from `torch.utils.flop_counter`, which has no formula for the CPU fused attention kernel
(`_scaled_dot_product_flash_attention_for_cpu`): this script registers torch's own SDPA formula for it,
so attention is counted on CPU as it is on GPU. The plain SD-1.5 UNet forward (same size, 77 text
tokens) is counted the same way, as the yardstick for GFLOP per frame-pass.

The last line, which other tools read:
    step_per_frame: s=<s per generated frame per step> gflop=<GFLOP per generated frame per step>
    passes=<backbone passes per step> matmul_ratio=<achieved GFLOP/s / plain matmul GFLOP/s>
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
from diffusers import UNet2DConditionModel
from torch.utils.flop_counter import FlopCounterMode, register_flop_formula, sdpa_flop_count

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emo_models.config import get_config  # noqa: E402
from emo_models.devices import DTYPES  # noqa: E402
from emo_models.guidance import Guidance  # noqa: E402
from emo_models.model import ClipCondition, EMOModel  # noqa: E402

DEFAULT = "one scale (default, 2 passes)"
GUIDANCE = {"no guidance (1 pass)": Guidance(1.0), DEFAULT: Guidance(3.5),
            "unequal reference/audio scales (3 passes)": Guidance(1.0, reference=2.0, audio=3.5)}


@register_flop_formula(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """torch's SDPA FLOP formula, for the CPU fused kernel it does not count by itself."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


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


def timed(run, device, repeats: int = 1) -> tuple[float, float, dict, dict]:
    """(seconds per run, GFLOP per run, GFLOP per run by op, GFLOP per run by part (:func:`parts`)) of
    ``run()``. FLOPs are counted during the timed runs: the counter only tallies each op's shape, well
    under 1% next to ops of this size."""
    counter = FlopCounterMode(display=False, depth=None)
    with torch.no_grad():
        sync(device)
        start = time.perf_counter()
        with counter:
            for _ in range(repeats):
                run()
            sync(device)
        seconds = (time.perf_counter() - start) / repeats
    counts = counter.get_flop_counts()
    by_op = {str(op).split(".")[-1]: n / 1e9 / repeats for op, n in counts["Global"].items()}
    by_part = {k: n / 1e9 / repeats for k, n in parts(counts).items()}
    return seconds, counter.get_total_flops() / 1e9 / repeats, by_op, by_part


ATTENTION_OPS = ("bmm", "scaled_dot_product")  # attention's own matmuls (math or fused kernel), not projections


def parts(counts: dict) -> dict[str, float]:
    """FLOPs of a step by part of the model, from a depth-unlimited FlopCounterMode's counts (module path ->
    op -> FLOPs; a module's count includes its children's): the temporal modules; the attention matmuls of
    the backbone's self-/reference-attention (their keys include the reference's tokens); audio-attention
    (``attn2``) whole; the rest of the backbone: the SD-1.5 layers (ResNets, projections, feed-forwards...)."""
    def flops(on_path, of_op=lambda op: True) -> int:
        return sum(n for path, ops in counts.items() if on_path(path) for op, n in ops.items() if of_op(str(op)))

    temporal = flops(lambda path: path == "TemporalModule")
    scores = flops(lambda path: path.endswith(".attn1"), lambda op: any(a in op for a in ATTENTION_OPS))
    audio = flops(lambda path: path.endswith(".attn2"))
    rest = sum(counts["Global"].values()) - temporal - scores - audio
    return {"temporal modules": temporal, "attn1 attention matmuls (own + reference tokens)": scores,
            "audio-attention": audio, "rest of the backbone": rest}


def time_step(model, latents, cond, device, repeats: int, warmup: int, cached: bool) -> tuple[float, float, dict, dict]:
    """(seconds per step, GFLOP per step, GFLOP by op, GFLOP by part) of a clip's later steps (the cache, if used, filled
    by the first one, which is timed and printed here)."""
    t = torch.tensor(500, device=device)
    cache = model.clip_cache() if cached else None
    step = lambda: model.denoise(latents, t, cond, cache=cache)  # noqa: E731
    if cached:
        seconds, gflop, _, _ = timed(step, device)
        print(f"  first step of the clip (fills the clip cache): {seconds:.2f} s, {gflop:.0f} GFLOP")
    with torch.no_grad():
        for _ in range(warmup):
            step()
    return timed(step, device, repeats)


def sd15_forward(config, size: int, device, dtype) -> tuple[float, float]:
    """(seconds, GFLOP) of one plain SD-1.5 UNet forward: one frame at this size, 77 text tokens."""
    unet = torch.nn.Module.to(UNet2DConditionModel(**config.unet), device, dtype).eval()  # no diffusers dtype warning
    h = size // config.vae_scale
    x = torch.randn(1, 4, h, h, device=device, dtype=dtype)
    text = torch.randn(1, 77, config.cross_attention_dim, device=device, dtype=dtype)
    seconds, gflop, _, _ = timed(lambda: unet(x, 500, encoder_hidden_states=text), device)
    return seconds, gflop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="full")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default: the config's)")
    parser.add_argument("--size", type=int, default=None, help="pixels (default: the config's width)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default: 0 on CPU, 2 on GPU)")
    parser.add_argument("--guidance", default="default", choices=("default", "all"),
                        help="default: the default guidance only (2 passes); all: also 1 and 3 passes")
    parser.add_argument("--no-cache", action="store_true",
                        help="denoise without the per-clip cache (every step recomputes the clip's constants)")
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
    sd_seconds, sd_gflop = sd15_forward(config, size, device, dtype)
    print(f"plain SD-1.5 UNet forward, 1 frame at {size}x{size}, 77 text tokens: {sd_gflop:.0f} GFLOP, "
          f"{sd_seconds:.2f} s ({sd_gflop / sd_seconds / peak:.2f} of matmul)")
    print(f"clip: {frames} frames at {size}x{size} (latent {h}x{w}), {config.motion_frames} motion frames, "
          f"{'no clip cache' if args.no_cache else 'clip cache'}")
    final = None
    for label, guidance in GUIDANCE.items():
        if args.guidance == "default" and label != DEFAULT:
            continue
        videos = len(guidance.branches(config.generation.uncond_drops))
        cond = build_condition(model, guidance, frames, h, w, device, dtype)
        latents = torch.randn(videos, frames, 4, h, w, device=device, dtype=dtype)
        warmup = args.warmup if args.warmup is not None else (2 if device.type == "cuda" else 0)
        print(f"step {label}:")
        seconds, gflop, by_op, by_part = time_step(model, latents, cond, device, args.repeats, warmup, not args.no_cache)
        achieved, frame_pass = gflop / seconds, gflop / (frames * videos)
        ops = ", ".join(f"{op} {n / (frames * videos):.0f}" for op, n in sorted(by_op.items(), key=lambda kv: -kv[1]))
        print(f"  {seconds:.2f} s, {gflop:.0f} GFLOP, {achieved:.0f} GFLOP/s = {achieved / peak:.2f} of matmul; "
              f"{seconds / frames:.2f} s per generated frame")
        print(f"  GFLOP per frame-pass: {frame_pass:.0f} = {frame_pass / sd_gflop:.2f}x the plain SD-1.5 UNet's "
              f"{sd_gflop:.0f} (target <= 1.3x); by op: {ops}")
        print("  GFLOP per frame-pass by part: " + ", ".join(f"{k} {n / (frames * videos):.0f}" for k, n in by_part.items()))
        if label == DEFAULT:
            final = (seconds / frames, gflop / frames, videos, achieved / peak)
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    print(f"peak RSS: {peak_rss_gib():.1f} GiB")
    s, gflop, passes, ratio = final
    print(f"step_per_frame: s={s:.3f} gflop={gflop:.0f} passes={passes} matmul_ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
