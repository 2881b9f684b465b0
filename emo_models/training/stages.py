"""The paper's three training stages: what each one sees and what each one trains.

============  ===========================================  ======================================
stage         data                                         trains (:func:`parameter_groups`)
============  ===========================================  ======================================
1 image       single frames, no temporal modules           backbone, reference_net, face_locator
2 video       n motion + f target frames, audio            + temporal, audio
3 speed       n motion + f target frames, audio, speed     temporal, speed only
============  ===========================================  ======================================

Everything else is frozen (``requires_grad=False``) and never given to the optimizer; so are the
parameters a stage's forward pass never reaches (the ReferenceNet's ``conv_norm_out``/``conv_out`` and,
without motion frames, the layers after its last recorded self-attention input), found by one probe
backward pass, so DDP needs no ``find_unused_parameters`` for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import EMOConfig
from ..model import EMOModel
from ..temporal import is_speed_parameter

GROUPS = ("backbone", "reference_net", "face_locator", "audio", "temporal", "speed")


def parameter_groups(model: EMOModel) -> dict[str, list[nn.Parameter]]:
    """``model``'s parameters by the paper's parts (:data:`GROUPS`): backbone, reference_net, face_locator,
    audio (the audio projection and the layers reading it: attn2, or Hallo's audio modules), temporal, speed."""
    groups: dict[str, list[nn.Parameter]] = {k: [] for k in GROUPS}
    audio_in_attn2 = model.audio_modules is None
    for name, p in model.backbone.named_parameters():
        groups["audio" if audio_in_attn2 and ".attn2." in name else "backbone"].append(p)
    if model.identity_projection is not None:
        groups["backbone"] += list(model.identity_projection.parameters())
    if model.audio_modules is not None:
        groups["audio"] += list(model.audio_modules.parameters())
    groups["reference_net"] = list(model.reference_net.parameters())
    groups["face_locator"] = list(model.face_locator.parameters())
    groups["audio"] += list(model.audio_projection.parameters())
    for name, p in model.temporal.named_parameters():
        groups["speed" if is_speed_parameter(name) else "temporal"].append(p)
    groups["speed"] += list(model.speed_encoder.parameters())
    return groups


@dataclass(frozen=True)
class Stage:
    """One training stage. video: n + f consecutive frames (else 1 frame, temporal modules off)."""

    number: int
    name: str
    trains: tuple[str, ...]
    video: bool
    audio: bool
    speed: bool

    def motion_frames(self, config: EMOConfig) -> int:
        """n: leading frames of a sample that are motion context, not targets."""
        return config.motion_frames if self.video else 0

    def sample_frames(self, config: EMOConfig) -> int:
        """Consecutive frames per dataset sample: n + f (video) or 1 (image)."""
        return config.motion_frames + config.frames_per_clip if self.video else 1

    def target_frames(self, config: EMOConfig) -> int:
        """f: frames a sample denoises."""
        return self.sample_frames(config) - self.motion_frames(config)


STAGES = {
    1: Stage(1, "image", ("backbone", "reference_net", "face_locator"), video=False, audio=False, speed=False),
    2: Stage(2, "video", ("backbone", "reference_net", "face_locator", "temporal", "audio"),
             video=True, audio=True, speed=False),
    3: Stage(3, "speed", ("temporal", "speed"), video=True, audio=True, speed=True),
}


def get_stage(number: int | str) -> Stage:
    """Stage 1, 2 or 3; a clear error otherwise."""
    try:
        return STAGES[int(number)]
    except (KeyError, ValueError):
        raise ValueError(f"stage: {number!r}; the paper trains in stages 1 (image), 2 (video), 3 (speed)") from None


def probe_inputs(model: EMOModel, stage: Stage) -> dict:
    """The smallest inputs of a stage's training forward (zeros), for structural probes."""
    cfg = model.config
    side = 2 ** len(cfg.unet["block_out_channels"])  # the smallest latent GroupNorm accepts in training
    f, n = stage.target_frames(cfg), stage.motion_frames(cfg)
    p = next(model.parameters())
    zeros = lambda *shape: torch.zeros(*shape, device=p.device, dtype=p.dtype)  # noqa: E731
    return dict(
        latents=zeros(1, f, 4, side, side),
        timestep=torch.zeros(1, dtype=torch.long, device=p.device),
        reference_latents=zeros(1, 4, side, side),
        audio_windows=zeros(1, f, 2 * cfg.audio_window + 1, cfg.audio_layers, cfg.audio_channels)
        if stage.audio else None,
        speed=zeros(1, f) if stage.speed else None,
        face_mask=zeros(1, 1, side * cfg.vae_scale, side * cfg.vae_scale),
        motion_latents=zeros(1, n, 4, side, side) if n else None,
        temporal=stage.video,
    )


def unreached_parameters(model: EMOModel, stage: Stage) -> set[str]:
    """Names of parameters in the stage's groups that its forward pass never reaches (no gradient)."""
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    with torch.enable_grad():
        loss = model(**probe_inputs(model, stage)).float().square().mean()
        grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {name for (name, _), g in zip(named, grads) if g is None}


def mark_trainable(model: EMOModel, stage: Stage) -> list[tuple[str, nn.Parameter]]:
    """Freeze everything but the stage's groups and the parameters it reaches; return the trained ones."""
    model.requires_grad_(False)
    groups = parameter_groups(model)
    for group in stage.trains:
        for p in groups[group]:
            p.requires_grad_(True)
    for name in unreached_parameters(model, stage):
        model.get_parameter(name).requires_grad_(False)
    return [(name, p) for name, p in model.named_parameters() if p.requires_grad]


def group_of(model: EMOModel) -> dict[int, str]:
    """id(parameter) -> its group name."""
    return {id(p): group for group, params in parameter_groups(model).items() for p in params}


def parameter_counts(model: EMOModel) -> dict[str, dict[str, int]]:
    """Per group: total parameters and how many are currently trainable (elements, not tensors)."""
    counts = {g: {"total": 0, "trainable": 0} for g in GROUPS}
    for group, params in parameter_groups(model).items():
        for p in params:
            counts[group]["total"] += p.numel()
            counts[group]["trainable"] += p.numel() if p.requires_grad else 0
    return counts


def describe_counts(counts: dict[str, dict[str, int]]) -> str:
    """One line: ``backbone 1.2M/1.3M, ...`` (trainable/total)."""
    def short(n: int) -> str:
        return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"

    return ", ".join(f"{g} {short(c['trainable'])}/{short(c['total'])}" for g, c in counts.items())
