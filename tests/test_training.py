"""The three training stages: what each trains, bit-exact resume, and DDP equal to one process."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from safetensors.torch import load_file

from emo_models.audio import audio_features, audio_windows
from emo_models.cli import main as cli_main
from emo_models.demo.synthetic import generate_clip
from emo_models.loading import save_pipeline
from emo_models.training.dataset import write_audio_features, write_clip, write_index
from emo_models.training.stages import get_stage, group_of, mark_trainable
from emo_models.training.train import train
from emo_models.training.train_batch import (
    StageDenoiser,
    StepSampler,
    diffusion_loss,
    enable_gradient_checkpointing,
    sample_randomness,
    target_audio_windows,
)
from emo_models.weights.native import load_checkpoint

from .conftest import build_tiny_pipeline

REPO = Path(__file__).resolve().parents[1]
TRAINS = {1: {"backbone", "reference_net", "face_locator"},
          2: {"backbone", "reference_net", "face_locator", "temporal", "audio"},
          3: {"temporal", "speed"}}
FAST = dict(save_every=2, progress_bar=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and spinning threads stall on a busy CI machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A tiny random EMO checkpoint and a 3-clip procedural dataset (15 frames each, wav2vec2 features)."""
    root = tmp_path_factory.mktemp("training")
    pipeline = build_tiny_pipeline()
    save_pipeline(pipeline, root / "init")
    ids = []
    for seed in range(3):
        clip = generate_clip(seed, seconds=0.6, fps=25.0, size=64)
        boxes = np.tile(np.asarray(clip.face_box, np.float32), (len(clip.frames), 1))
        clip_id = f"{seed:06d}"
        write_clip(root / "data", clip_id, clip.frames, clip.audio, clip.speed, boxes, clip.fps)
        features = audio_features(pipeline.audio_encoder, clip.audio, len(clip.frames))
        write_audio_features(root / "data", clip_id, features.numpy())
        ids.append(clip_id)
    write_index(root / "data", 25.0, 64, ids)
    return root


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    """'component.key' -> tensor of a native checkpoint (as EMOModel.named_parameters names them)."""
    _, components = load_checkpoint(folder)
    return {f"{c}.{k}": v for c, sd in components.items() for k, v in sd.items()}


def _trained_names(stage: int) -> tuple[set[str], dict[str, str]]:
    """Names the stage trains (after freezing what it never reaches) and every parameter's group."""
    model = build_tiny_pipeline().model
    trained = {name for name, _ in mark_trainable(model, get_stage(stage))}
    groups = group_of(model)
    return trained, {name: groups[id(p)] for name, p in model.named_parameters()}


def test_sampler_splits_each_global_batch_the_same_for_any_process_count():
    one = StepSampler(7, 4, 1, 0, seed=3, first=0, last=5)
    two = [StepSampler(7, 2, 2, r, seed=3, first=0, last=5) for r in range(2)]
    for step, (batch, first, second) in enumerate(zip(one, *two), start=1):
        assert batch == first + second
        assert one.positions(step) == two[0].positions(step) + two[1].positions(step)
    resumed = StepSampler(7, 4, 1, 0, seed=3, first=3, last=5)
    assert list(resumed) == list(one)[3:]


def test_per_sample_noise_depends_on_seed_step_and_position_only():
    a = sample_randomness(0, 5, [10, 11], (2, 4, 8, 8), 1000)
    b = sample_randomness(0, 5, [11], (2, 4, 8, 8), 1000)
    assert torch.equal(a["noise"][1], b["noise"][0]) and torch.equal(a["timesteps"][1:], b["timesteps"])
    assert not torch.equal(a["noise"][0], sample_randomness(0, 6, [10], (2, 4, 8, 8), 1000)["noise"][0])


def test_training_audio_windows_match_the_whole_clip_windows():
    features, m, n, start, k = torch.randn(20, 3, 5), 2, 2, 6, 6
    rows = np.clip(np.arange(start - m, start + k + m), 0, 19)  # what ClipDataset returns
    windows = target_audio_windows(features[rows][None], m, n)[0]
    assert torch.equal(windows, audio_windows(features, m)[start + n:start + k])


def test_gradient_checkpointing_gives_the_same_gradients():
    stage = get_stage(2)
    grads = []
    for checkpointing in (False, True):
        model = build_tiny_pipeline().model.train()
        mark_trainable(model, stage)
        if checkpointing:
            enable_gradient_checkpointing(model)
        g = torch.Generator().manual_seed(0)
        inputs = {"target": torch.randn(1, 4, 4, 8, 8, generator=g),
                  "reference_latents": torch.randn(1, 4, 8, 8, generator=g),
                  "motion_latents": torch.randn(1, 2, 4, 8, 8, generator=g),
                  "audio_windows": torch.randn(1, 4, 5, 2, 32, generator=g),
                  "face_mask": torch.ones(1, 1, 64, 64), "speed": None}
        loss = diffusion_loss(StageDenoiser(model, stage), DDPMScheduler.from_config(model.config.scheduler), inputs,
                              sample_randomness(0, 1, [0], (4, 4, 8, 8), 1000))
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-5, atol=1e-7, msg=name)


def test_each_stage_trains_its_groups_and_leaves_everything_else_bit_identical(workspace):
    init, data = workspace / "init", workspace / "data"
    code = cli_main(["train", "--stage", "1", "--data", str(data), "--init", str(init),
                     "--out", str(workspace / "stage1"), "--steps", "2"])
    assert code == 0
    train(2, data, workspace / "stage1", workspace / "stage2", steps=2, **FAST)
    train(3, data, workspace / "stage2", workspace / "stage3", steps=2, **FAST)
    before = _weights(init)
    for stage in (1, 2, 3):
        checkpoint = workspace / f"stage{stage}" / "checkpoint-2"
        after = _weights(checkpoint)
        trained, groups = _trained_names(stage)
        assert {groups[n] for n in trained} == TRAINS[stage]
        changed = {name for name in after if not torch.equal(before[name], after[name])}
        assert changed <= trained, sorted(changed - trained)[:5]
        # unchanged though trained: only the pre-norm of a cross-attention whose context is all zeros (no
        # audio in stage 1, none ever in the ReferenceNet): its bias gets exactly zero gradient
        assert all(name.endswith(".norm2.bias") for name in trained - changed), sorted(trained - changed)[:5]
        optimizer = torch.load(checkpoint / "training_state" / "optimizer.bin", weights_only=False)
        assert len(optimizer["param_groups"][0]["params"]) == len(trained)
        before = after
    unreached = {n for n, g in _trained_names(1)[1].items() if g == "reference_net"} - _trained_names(1)[0]
    assert {"reference_net.conv_out.weight", "reference_net.conv_norm_out.weight"} <= unreached


def test_resume_after_interruption_reproduces_the_uninterrupted_run_exactly(workspace):
    """With every per-sample draw on: condition cases, first clips, noisy round-tripped motion frames."""
    init, data = workspace / "init", workspace / "data"
    options = dict(steps=4, ema=0.99, drop_both=0.3, first_clip=0.3, motion_noise=0.1, motion_round_trip=True, **FAST)
    whole = train(2, data, init, workspace / "whole", **options)

    class Interrupted(Exception):
        pass

    def crash_after_step_3(step, _loss):
        if step == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        train(2, data, init, workspace / "resumed", on_step=crash_after_step_3, **options)
    resumed = train(2, data, None, workspace / "resumed", **options)
    assert sorted(resumed.losses) == [3, 4]
    assert [resumed.losses[s] for s in (3, 4)] == [whole.losses[s] for s in (3, 4)]
    a, b = _weights(whole.checkpoint), _weights(resumed.checkpoint)
    assert all(torch.equal(a[name], b[name]) for name in a)  # EMA weights
    raw_a, raw_b = (load_file(r.checkpoint / "training_state" / "model.safetensors") for r in (whole, resumed))
    assert all(torch.equal(raw_a[name], raw_b[name]) for name in raw_a)  # the trained (non-EMA) weights
    log = (workspace / "resumed" / "log.csv").read_text().splitlines()
    assert [int(row.split(",")[0]) for row in log[1:]] == [1, 2, 3, 4]
    assert json.loads((resumed.checkpoint / "metadata.json").read_text())["ema"] is True


def test_training_cases_follow_the_checkpoints_generation_preset(workspace, monkeypatch):
    """A checkpoint sampled with zeros as the first clip's motion frames and a face-dropping unconditional
    branch is trained on exactly those: the first-clip samples get no motion context, the unconditional
    ones lose the face too, and every sample has a face mask."""
    init = workspace / "zeros_init"
    shutil.copytree(workspace / "init", init)
    config = json.loads((init / "config.json").read_text())
    config["generation"] = {**config.get("generation", {}), "first_clip_motion": "zeros",
                            "uncond_drops": ["reference", "audio", "face"]}
    (init / "config.json").write_text(json.dumps(config))
    seen, forward = [], StageDenoiser.forward

    def spy(self, *args, **kwargs):
        seen.append((args[3], kwargs["dropped"], kwargs["zero_motion"]))
        return forward(self, *args, **kwargs)

    monkeypatch.setattr(StageDenoiser, "forward", spy)
    train(2, workspace / "data", init, workspace / "zeros", steps=1, batch_size=2, first_clip=1.0, drop_both=0.999,
          drop_audio=0.0, save_every=0, progress_bar=False)
    (face_mask, dropped, zero_motion), = seen
    assert face_mask.shape == (2, 1, 64, 64) and face_mask.amax() == 1
    assert zero_motion.tolist() == [True, True]
    assert {name: mask.tolist() for name, mask in dropped.items()} == {n: [True, True] for n in ("reference", "audio", "face")}


def test_two_processes_with_batch_1_equal_one_process_with_batch_2(workspace):
    """Tolerance: 1e-6 on weights, 1e-6 relative on losses. The two runs differ only in float summation
    order (the loss mean, the DDP gradient all-reduce, batch-size-dependent conv blocking). AdamW's
    default eps=1e-8 would amplify rounding noise in gradients that are zero in exact arithmetic (biases
    before a GroupNorm) into ±lr steps, so both runs use eps=1e-4: then a real gradient difference shows
    at its own size."""
    init, data = workspace / "init", workspace / "data"
    options = ["--steps", "2", "--adam-epsilon", "1e-4", "--save-every", "0"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "emo_models", "train", "--stage", "2", "--data", str(data), "--init", str(init),
               "--out", str(workspace / "ddp"), "--batch-size", "1", *options]
    run = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    single = train(2, data, init, workspace / "single", steps=2, batch_size=2, adam_epsilon=1e-4, save_every=0,
                   progress_bar=False)
    rows = (workspace / "ddp" / "log.csv").read_text().splitlines()[1:]
    ddp_losses = {int(r.split(",")[0]): float(r.split(",")[1]) for r in rows}
    assert ddp_losses.keys() == single.losses.keys()
    for step, loss in single.losses.items():
        assert ddp_losses[step] == pytest.approx(loss, rel=1e-6)
    a, b = _weights(single.checkpoint), _weights(workspace / "ddp" / "checkpoint-2")
    worst = max((a[n] - b[n]).abs().max().item() for n in a)
    assert worst <= 1e-6, worst
    progress = json.loads((workspace / "ddp" / "checkpoint-2" / "progress.json").read_text())
    assert (progress["processes"], progress["global_batch"]) == (2, 2)
