"""EMO's training recipe on 🤗 accelerate: one CPU or GPU as is; data-parallel (DDP) under
``accelerate launch --multi_gpu`` on GPUs or ``torchrun --nproc_per_node N`` on CPUs (gloo).

``train(stage, data, init, out, **options)`` runs one stage (:mod:`.stages`) from a native EMO checkpoint
(or the OUT folder of the previous stage) on a prepared clip dataset, writing resumable checkpoints to
OUT. AdamW at lr 1e-5 over the stage's trainable parameters only; epsilon-prediction MSE at random
timesteps of the config's DDPM schedule. A run resumed from ``checkpoint-k`` reproduces the
uninterrupted run's steps k+1… bit for bit: a step's samples, noise, timesteps and dropout depend only
on (seed, step, sample position) (:mod:`.train_batch`), and every other state is in the checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..preset import GenerationPreset
from .conditions import ConditionCases
from .dataset import ClipDataset, missing_audio_features, write_audio_features
from .stages import describe_counts, get_stage, mark_trainable, parameter_counts
from .train_batch import (
    StageDenoiser,
    StepSampler,
    diffusion_loss,
    enable_gradient_checkpointing,
    encode_batch,
    sample_randomness,
)
from .train_checkpoint import (
    STATE,
    TrainingLog,
    latest_checkpoint,
    read_progress,
    register_state_hooks,
    resolve_init,
    write_checkpoint,
)


@dataclass
class TrainOptions:
    """Everything but the stage and the folders. batch_size is per process (global = × processes)."""

    steps: int = 1000
    batch_size: int = 1
    lr: float = 1e-5
    weight_decay: float = 1e-2
    adam_epsilon: float = 1e-8
    lr_warmup_steps: int = 0
    max_grad_norm: float = 1.0
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    ema: float | None = None  # EMA decay of the trained weights; checkpoints then hold the EMA weights
    save_every: int = 500
    keep_checkpoints: int | None = None
    seed: int = 0
    resume: bool | None = None  # None: resume when OUT has a checkpoint; True: require one; False: start over
    log_every: int = 1
    num_workers: int = 0
    # one exclusive condition case per sample, for classifier-free guidance (.conditions explains them)
    drop_both: float = ConditionCases.drop_both  # no reference, no audio: every guided generation's other pass
    drop_audio: float = ConditionCases.drop_audio  # reference, no audio: the middle pass of separate scales
    drop_reference: float = ConditionCases.drop_reference  # audio, no reference: no inference pass uses it
    # motion frames (stages 2, 3): first-clip samples (reference = the frame before the targets, repeated as
    # the motion frames) and, for continuing ones, noise up to a level and the VAE round trip
    first_clip: float = ConditionCases.first_clip
    motion_noise: float = ConditionCases.motion_noise
    motion_round_trip: bool = False
    face_weight: float = 1.0  # loss weight inside the face box (1: the paper's plain MSE)
    lip_weight: float = 1.0  # loss weight over the lip region, the lower middle of the face box
    cpu: bool = False
    progress_bar: bool = True
    on_step: Callable[[int, float], None] | None = field(default=None, repr=False)  # (step, loss), every process

    def __post_init__(self):
        if self.steps < 0 or self.batch_size < 1 or self.save_every < 0 or self.log_every < 1:
            raise ValueError(f"options: steps={self.steps}, batch_size={self.batch_size}, save_every="
                             f"{self.save_every}, log_every={self.log_every}; need steps >= 0, batch_size >= 1, "
                             f"save_every >= 0 (0: only at the end), log_every >= 1")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ValueError(f"mixed_precision: {self.mixed_precision!r}; choose no, fp16 or bf16")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise ValueError(f"ema: {self.ema}; give a decay in (0, 1), e.g. 0.9999, or None for no EMA")
        self.cases()  # checks the probabilities

    def cases(self, preset: GenerationPreset | None = None) -> ConditionCases:
        """The per-sample condition and motion-frame cases these options ask for, for a checkpoint sampled
        with ``preset`` (its ``uncond_drops`` and ``first_clip_motion``; None: the EMO defaults)."""
        return ConditionCases.for_preset(preset or GenerationPreset(), drop_reference=self.drop_reference,
                                         drop_audio=self.drop_audio, drop_both=self.drop_both,
                                         first_clip=self.first_clip, motion_noise=self.motion_noise)


@dataclass(frozen=True)
class TrainResult:
    """losses: step -> loss (mean over the global batch) for the steps this call ran; steps: the last
    step reached; out: the OUT folder; checkpoint: its newest checkpoint (a native EMO checkpoint)."""

    losses: dict[int, float]
    steps: int
    out: Path
    checkpoint: Path | None


def train(stage: int, data: str | Path, init: str | Path | None, out: str | Path, **options) -> TrainResult:
    """Train one stage; resumes automatically when OUT holds a checkpoint (``resume=False``: start over).

    init: a native EMO checkpoint folder, or a previous stage's OUT folder (its latest checkpoint);
    not needed when resuming. options: the fields of :class:`TrainOptions`.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from accelerate.utils import DistributedDataParallelKwargs

    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(TrainOptions)})
    if unknown:
        raise ValueError(f"train: unknown options {unknown}; expected {[f.name for f in dataclasses.fields(TrainOptions)]}")
    opts, stage, out = TrainOptions(**options), get_stage(stage), Path(out)
    find_unused = opts.cases().drops_reference and "reference_net" in stage.trains  # a fully dropped reference
    no_accelerator = not (torch.cuda.is_available() or torch.backends.mps.is_available())
    accelerator = Accelerator(mixed_precision=opts.mixed_precision, cpu=opts.cpu or no_accelerator,
                              step_scheduler_with_optimizer=False,
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=find_unused)])
    try:
        launched = int(os.environ.get("WORLD_SIZE", "1"))
        if accelerator.num_processes != launched:
            raise RuntimeError(f"train: launched as {launched} processes but accelerate sees "
                               f"{accelerator.num_processes}; on GPUs use `accelerate launch --multi_gpu`, on "
                               f"CPUs `torchrun --nproc_per_node N -m emo_models train`")
        return _run(accelerator, stage, Path(data), init, out, opts)
    finally:
        accelerator.free_memory()
        AcceleratorState._reset_state()  # let a later train() in this process pick other precision/devices
        GradientState._reset_state()


def _resume_point(out: Path, resume: bool | None, stage) -> Path | None:
    """The checkpoint to resume from, checked against the stage; None to start fresh."""
    if resume is False:
        return None
    checkpoint = latest_checkpoint(out)
    if checkpoint is None:
        if resume:
            raise ValueError(f"resume: {out} holds no checkpoint (no {out / 'latest'}); drop --resume to start")
        return None
    progress = read_progress(checkpoint)
    if progress["stage"] != stage.number:
        raise ValueError(f"{out}: holds a stage-{progress['stage']} run, not stage {stage.number}; "
                         f"give each stage its own --out (and --init the previous stage's OUT)")
    return checkpoint


def _run(accelerator, stage, data: Path, init, out: Path, opts: TrainOptions) -> TrainResult:
    from diffusers import DDPMScheduler
    from diffusers.optimization import get_scheduler
    from diffusers.training_utils import EMAModel
    from torch.utils.data import DataLoader

    from ..loading import load_pipeline
    from ..weights.native import read_metadata
    from ..weights.sanity import UNTRAINED, still_untrained, untrained_parts

    resume_from = _resume_point(out, opts.resume, stage)
    if resume_from is None and init is None:
        raise ValueError("init: give the EMO checkpoint to start from (`python -m emo_models init`, or the "
                         "previous stage's --out folder)")
    progress = read_progress(resume_from) if resume_from else {}
    if resume_from and bool(progress.get("ema")) != bool(opts.ema):
        raise ValueError(f"ema: {resume_from} was trained with ema={progress.get('ema')}; resume with the same "
                         f"--ema setting (or start a new --out)")
    source = resume_from or resolve_init(init)
    out.mkdir(parents=True, exist_ok=True)
    pipeline, _ = load_pipeline(source, device=accelerator.device)
    config = pipeline.config
    _ensure_audio_features(data, pipeline, accelerator)
    dataset = ClipDataset(data, frames=stage.sample_frames(config), audio_window=config.audio_window)

    model = pipeline.model.train()
    trained = [p for _, p in mark_trainable(model, stage)]
    if accelerator.is_main_process:
        print(f"stage {stage.number} ({stage.name}) trains {sum(p.numel() for p in trained):,} parameters: "
              f"{describe_counts(parameter_counts(model))}")
    if opts.gradient_checkpointing:
        enable_gradient_checkpointing(model)
    optimizer = torch.optim.AdamW(trained, lr=opts.lr, weight_decay=opts.weight_decay, eps=opts.adam_epsilon)
    lr_scheduler = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=opts.lr_warmup_steps)
    denoiser, optimizer, lr_scheduler = accelerator.prepare(StageDenoiser(model, stage), optimizer, lr_scheduler)
    ema = EMAModel(trained, decay=opts.ema) if opts.ema else None
    if ema is not None:
        accelerator.register_for_checkpointing(ema)
    register_state_hooks(accelerator, raw_weights_in_state=ema is not None)
    first = 0
    if resume_from:
        accelerator.load_state(str(resume_from / STATE))
        first = int(progress["step"])
        if ema is not None:
            ema.to(accelerator.device)
        if accelerator.is_main_process:
            print(f"resuming stage {stage.number} from {resume_from} (step {first})")

    processes, rank = accelerator.num_processes, accelerator.process_index
    sampler = StepSampler(len(dataset), opts.batch_size, processes, rank, opts.seed, first, opts.steps)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=opts.num_workers)
    noise_scheduler = DDPMScheduler.from_config(config.scheduler)
    global_batch = opts.batch_size * processes
    cases = opts.cases(config.generation)  # the branches and the first clip this checkpoint is sampled with
    n = stage.motion_frames(config)
    round_trip = (lambda z: pipeline.vae_encode(pipeline.decode(z))) if opts.motion_round_trip else None
    state = {"stage": stage.number, "seed": opts.seed, "batch_size": opts.batch_size, "processes": processes,
             "global_batch": global_batch, "data": str(data), "ema": opts.ema,
             "init": progress.get("init", str(source))}
    untrained = still_untrained(untrained_parts(read_metadata(source), {}), stage.trains)
    metadata = {"created_by": "emo_models train", "stage": stage.number, "stage_name": stage.name,
                "data": str(data), "init": state["init"], "seed": opts.seed, UNTRAINED: untrained}
    if resume_from and (progress["global_batch"], progress["seed"]) != (global_batch, opts.seed):
        print(f"warning: resuming with global batch {global_batch} and seed {opts.seed} (checkpoint: "
              f"{progress['global_batch']}, {progress['seed']}); steps will not match an uninterrupted run")

    log = TrainingLog(out, first, opts.steps, f"stage {stage.number}", global_batch,
                      enabled=accelerator.is_main_process, log_every=opts.log_every, bar=opts.progress_bar)
    losses: dict[int, float] = {}
    checkpoint = resume_from
    for step, batch in zip(range(first + 1, opts.steps + 1), loader):
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            inputs = encode_batch(batch, pipeline.vae_encode, stage, config, round_trip)
        target_shape = tuple(inputs["target"].shape[1:])
        randomness = sample_randomness(opts.seed, step, sampler.positions(step), target_shape,
                                       noise_scheduler.config.num_train_timesteps,
                                       (n, *target_shape[1:]) if n and opts.motion_noise > 0 else None)
        loss = diffusion_loss(denoiser, noise_scheduler, inputs, randomness, cases, opts.face_weight, opts.lip_weight)
        accelerator.backward(loss)
        if opts.max_grad_norm and accelerator.sync_gradients:
            accelerator.clip_grad_norm_(trained, opts.max_grad_norm)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if ema is not None:
            ema.step(trained)
        losses[step] = accelerator.reduce(loss.detach(), reduction="mean").item()
        log.record(step, losses[step], lr_scheduler.get_last_lr()[0])
        if (opts.save_every and step % opts.save_every == 0) or step == opts.steps:
            checkpoint = write_checkpoint(accelerator, pipeline, out, {**state, "step": step}, metadata, ema,
                                          trained, opts.keep_checkpoints)
        if opts.on_step is not None:
            opts.on_step(step, losses[step])
    log.close()
    return TrainResult(losses=losses, steps=max(losses, default=first), out=out, checkpoint=checkpoint)


def _ensure_audio_features(root: Path, pipeline, accelerator) -> None:
    """Cache wav2vec2 features (the checkpoint's frozen encoder) for clips that lack them."""
    from ..audio import audio_features

    missing = missing_audio_features(root)
    if missing and accelerator.is_main_process:
        print(f"computing wav2vec2 features for {len(missing)} clips of {root}")
        for clip in missing:
            folder = root / "clips" / clip
            frames = json.loads((folder / "meta.json").read_text())["frames"]
            wave = np.load(folder / "audio.npy")
            features = audio_features(pipeline.audio_encoder, wave, frames)
            write_audio_features(root, clip, features.cpu().numpy())
    accelerator.wait_for_everyone()
