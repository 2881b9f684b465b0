"""The per-clip cache: a clip's steps compute what is constant over the clip once, and get the same numbers."""

from __future__ import annotations

import pytest
import torch

from emo_models.face_region import box_mask
from emo_models.guidance import Guidance
from emo_models.model import ClipCondition
from emo_models.render import RenderSettings, render_clips
from tests.conftest import build_tiny_pipeline

GUIDANCE = {"1 pass": Guidance(1.0), "2 passes (default)": Guidance(3.5), "3 passes": Guidance(1.0, 2.0, 3.5)}
TIMESTEPS = (901, 501, 101)
MASK = box_mask((16, 16, 48, 48), 64, 64)


@pytest.fixture(scope="module")
def model():
    """A tiny model with every zero-initialised output layer woken, so each cached path changes the result."""
    return build_tiny_pipeline(seed=1).model.eval()


def clip_batch(model, guidance: Guidance, seed: int = 0) -> ClipCondition:
    """One clip's condition (reference, motion frames, audio, speed, face), batched into guidance branches."""
    cfg, g = model.config, torch.Generator().manual_seed(seed)
    f, n, h = cfg.frames_per_clip, cfg.motion_frames, cfg.height // cfg.vae_scale
    windows = torch.randn(1, f, 2 * cfg.audio_window + 1, cfg.audio_layers, cfg.audio_channels, generator=g)
    mask = torch.zeros(1, 1, cfg.height, cfg.width)
    mask[..., 16:48, 16:48] = 1
    with torch.no_grad():
        cond = ClipCondition(reference=model.encode_reference(torch.randn(1, 4, h, h, generator=g)),
                             motion=model.encode_motion(torch.randn(1, n, 4, h, h, generator=g)),
                             audio_tokens=model.encode_audio(windows),
                             speed_tokens=model.encode_speed(torch.full((1, f), 0.7)),
                             face=model.encode_face(mask))
        return model.guidance_batch(cond, [d for _, d in guidance.branches(cfg.generation.uncond_drops)])


def encode(pipeline, frames: int):
    """(reference, audio) of a random portrait and ``frames`` frames of random audio."""
    g = torch.Generator().manual_seed(4)
    audio = pipeline.encode_audio(0.1 * torch.randn(16000, generator=g).numpy(), 16000)
    return pipeline.encode_reference(torch.rand(1, 3, 64, 64, generator=g)), audio.span(0, frames)


def noisy_latents(model, videos: int, seed: int = 5) -> torch.Tensor:
    cfg = model.config
    h = cfg.height // cfg.vae_scale
    return torch.randn(videos, cfg.frames_per_clip, 4, h, h, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("label", list(GUIDANCE))
def test_cached_steps_equal_plain_steps_within_1e5(model, label):
    batch = clip_batch(model, GUIDANCE[label])
    latents = noisy_latents(model, batch.audio_tokens.shape[0])
    cache = model.clip_cache()
    with torch.no_grad():
        for t in TIMESTEPS:
            plain = model.denoise(latents, t, batch)
            cached = model.denoise(latents, t, batch, cache=cache)
            assert (cached - plain).abs().max().item() <= 1e-5
            assert plain.abs().max().item() > 0.1  # the comparison is about real values


def test_zero_motion_frames_and_no_audio_take_the_cached_path_too(model):
    cfg = model.config
    h = cfg.height // cfg.vae_scale
    with torch.no_grad():
        cond = ClipCondition(reference=model.encode_reference(torch.randn(1, 4, h, h)),
                             motion=model.zero_motion(1, h, h))
        batch = model.guidance_batch(cond, [frozenset({"reference", "audio"}), frozenset()])
        latents = noisy_latents(model, 2)
        cache = model.clip_cache()
        for t in TIMESTEPS[:2]:
            assert (model.denoise(latents, t, batch, cache=cache) - model.denoise(latents, t, batch)).abs().max() <= 1e-5


def count_rows(linear: torch.nn.Module) -> list[int]:
    """Rows (tokens) each call of a projection sees."""
    rows: list[int] = []
    linear.register_forward_pre_hook(lambda m, args: rows.append(args[0].numel() // args[0].shape[-1]))
    return rows


def test_reference_motion_audio_and_speed_projections_run_once_per_clip_not_per_step():
    model = build_tiny_pipeline(seed=1).model.eval()
    cfg = model.config
    f, n = cfg.frames_per_clip, cfg.motion_frames
    hw = (cfg.height // cfg.vae_scale) ** 2  # tokens per frame at the first block's resolution
    reference_keys = count_rows(model.backbone.get_submodule("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k"))
    audio_keys, audio_queries = (count_rows(model.backbone.get_submodule(
        f"down_blocks.0.attentions.0.transformer_blocks.0.attn2.{name}")) for name in ("to_k", "to_q"))
    temporal = model.temporal.module("down_blocks.0.motion_modules.0").temporal_transformer.transformer_blocks[0]
    first_keys, second_keys = (count_rows(a.to_k) for a in temporal.attention_blocks)
    speed_keys = count_rows(temporal.speed_attention.to_k)
    batch = clip_batch(model, GUIDANCE["2 passes (default)"])  # uncond (no reference, no audio) + full
    latents = noisy_latents(model, 2)
    cache = model.clip_cache()
    with torch.no_grad():
        model.denoise(latents, TIMESTEPS[0], batch, cache=cache)
        computed_by_first_step = cache.computed
        del reference_keys[:], audio_keys[:], audio_queries[:], first_keys[:], second_keys[:], speed_keys[:]
        for t in TIMESTEPS[1:]:
            model.denoise(latents, t, batch, cache=cache)
    assert computed_by_first_step > 0 and cache.computed == computed_by_first_step
    steps = len(TIMESTEPS) - 1
    # per step: the 2·f frames' own tokens only; the full branch's reference tokens were projected on step 1
    assert reference_keys == [2 * f * hw] * steps
    assert audio_keys == [] and speed_keys == []  # the audio and speed tokens' keys: step 1 only
    # the unconditional branch's audio tokens are all zeros: its audio-attention output is one constant
    assert audio_queries == [f * hw] * steps
    # the first temporal attention projects only the clip's frames; the second also the motion frames'
    # rows (they depend on this step), whose own queries, feed-forward and output are never computed
    assert first_keys == [2 * hw * f] * steps
    assert second_keys == [2 * hw * (n + f)] * steps


def test_the_model_holds_nothing_of_a_clip_after_cached_steps(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batch = clip_batch(model, GUIDANCE["3 passes"], seed=2)
    latents = noisy_latents(model, 3)
    with torch.no_grad():
        plain_before = model.denoise(latents, 501, batch)
        cache = model.clip_cache()
        model.denoise(latents, 901, batch, cache=cache)
        def fail(*_):
            raise RuntimeError("cancelled mid-step")

        hook = model.backbone.up_blocks[-1].register_forward_hook(fail)  # after the cached values were used
        try:
            with pytest.raises(RuntimeError, match="cancelled mid-step"):  # a failed step leaves nothing behind
                model.denoise(latents, 501, batch, cache=cache)
        finally:
            hook.remove()
        with pytest.raises(ValueError, match=r"cond.audio_tokens: 3 videos x 4 frames for latents of 3 x 1"):
            model.denoise(latents[:, :1], 501, batch, cache=cache)
        assert model.bank.cache is None and model.bank.reference is None and model._condition is None
        for processor in model.backbone.attn_processors.values():
            assert not any(isinstance(v, torch.Tensor) for v in vars(processor).values())
        assert (model.denoise(latents, 501, batch) - plain_before).abs().max().item() == 0
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_cache_handed_another_clips_condition_recomputes_and_gives_that_clips_numbers(model):
    batch, other = clip_batch(model, GUIDANCE["1 pass"]), clip_batch(model, GUIDANCE["1 pass"], seed=3)
    latents = noisy_latents(model, 1)
    cache = model.clip_cache()
    with torch.no_grad():
        model.denoise(latents, 501, other, cache=cache)
        filled = cache.computed
        cached = model.denoise(latents, 501, batch, cache=cache)
        assert (cached - model.denoise(latents, 501, batch)).abs().max().item() <= 1e-5
    assert cache.computed == 2 * filled  # every value derived from the other clip was computed anew


def render_frames(pipeline, encoded, settings, cached: bool, monkeypatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(latents, frames) of a whole render through the render path, with or without the clip cache."""
    if not cached:
        monkeypatch.setattr(type(pipeline.model), "clip_cache", lambda self: None)
    try:
        clips = list(render_clips(pipeline, *encoded, MASK, settings))
    finally:
        monkeypatch.undo()
    return torch.cat([c.latents for c in clips]), torch.cat([c.frames for c in clips])


SAMPLERS = {"motion frames, 3 clips": dict(sampler="motion_frames"),
            "context windows, 4 windows a step": dict(sampler="context_windows", context_overlap=1)}


@pytest.mark.parametrize("label", list(SAMPLERS))
def test_a_cached_render_equals_the_plain_render_within_1e5(label, monkeypatch):
    pipeline = build_tiny_pipeline(seed=1)
    encoded = encode(pipeline, frames=10)
    settings = RenderSettings.from_config(pipeline.config, steps=3, **SAMPLERS[label])
    plain_latents, plain_frames = render_frames(pipeline, encoded, settings, False, monkeypatch)
    latents, frames = render_frames(pipeline, encoded, settings, True, monkeypatch)
    assert latents.shape[0] == frames.shape[0] == 10
    assert (latents - plain_latents).abs().max().item() <= 1e-5
    assert (frames - plain_frames).abs().max().item() <= 1e-5


def test_context_windows_project_the_reference_once_per_video_not_per_window():
    pipeline = build_tiny_pipeline(seed=1)
    model, cfg = pipeline.model, pipeline.config
    hw, f = (cfg.height // cfg.vae_scale) ** 2, cfg.frames_per_clip
    keys = count_rows(model.backbone.get_submodule("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k"))
    settings = RenderSettings.from_config(cfg, steps=3, sampler="context_windows", context_overlap=1)
    list(render_clips(pipeline, *encode(pipeline, frames=10), MASK, settings))
    windows, passes = 4 * 3, settings.passes  # 10 frames in windows of 4 starting 0, 3, 6, 9; 3 steps
    # every window: its passes' own frame tokens; the reference's tokens once for the video, for the
    # one branch that sees it (unconditional + full guidance)
    assert passes == 2 and sum(keys) == windows * passes * f * hw + hw
    assert keys[:2] == [hw, passes * f * hw] and set(keys[2:]) == {passes * f * hw}  # the reference first


def test_feed_forward_in_pieces_equals_one_call_and_the_backbone_runs_it_per_frame(model, monkeypatch):
    from diffusers.models.attention import BasicTransformerBlock

    import emo_models.temporal as temporal

    blocks = [m for m in model.backbone.modules() if isinstance(m, BasicTransformerBlock)]
    assert blocks and all((b._chunk_size, b._chunk_dim) == (1, 0) for b in blocks)  # one frame at a time
    batch = clip_batch(model, GUIDANCE["2 passes (default)"])
    latents = noisy_latents(model, batch.audio_tokens.shape[0])
    in_pieces, calls = temporal.feed_forward_in_pieces, []

    def few_rows(ff, hidden):  # tiny frames have few positions: 5 rows a piece makes several pieces
        calls.append(-(-hidden.shape[1] // 5))
        return in_pieces(ff, hidden, rows=5)

    monkeypatch.setattr(temporal, "feed_forward_in_pieces", few_rows)
    with torch.no_grad():
        chunked = model.denoise(latents, 501, batch)
        monkeypatch.setattr(temporal, "feed_forward_in_pieces", lambda ff, hidden: ff(hidden))
        for block in blocks:
            monkeypatch.setattr(block, "_chunk_size", None)
        whole = model.denoise(latents, 501, batch)
    assert calls and max(calls) > 1  # the temporal modules did split their positions
    assert (chunked - whole).abs().max().item() <= 1e-5 and whole.abs().max().item() > 0.1
