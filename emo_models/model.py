"""The EMO denoiser: stock diffusers UNets with EMO's ideas attached as small modules.

- backbone, reference_net: unmodified ``UNet2DConditionModel``s (SD-1.5 layout);
- reference-attention: attention processors on every ``attn1`` (reference_attention.py);
- audio-attention: every transformer block's cross-attention (``attn2``) reads the frame's audio tokens
  instead of text, so it follows reference-attention inside each block;
- temporal modules: forward hooks after each backbone layer where AnimateDiff puts motion modules;
- face locator: a forward hook adding its residual to ``conv_in``'s output;
- speed encoder: tokens for the temporal modules' speed cross-attention.

The ReferenceNet runs once per video on the reference (:meth:`EMOModel.encode_reference`) and once per
clip on the motion frames (:meth:`EMOModel.encode_motion`), at t = 0; a denoising step
(:meth:`EMOModel.denoise`) only reads what they recorded. What the steps of one clip derive from those
records alone (the reference's, motion frames' and audio tokens' key/value projections) is computed on
the clip's first step and kept in a :class:`~emo_models.clip_cache.ClipCache` the caller holds
(:meth:`EMOModel.clip_cache`), so later steps skip it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from einops import rearrange, repeat
from torch import nn

from .audio import build_audio_projection, install_audio_attention
from .clip_cache import ClipCache
from .config import EMOConfig
from .face_locator import FaceLocator
from .preset import CONDITIONS
from .reference_attention import ReferenceBank, install_reference_attention
from .speed import SpeedEncoder
from .temporal import TemporalModules, is_speed_parameter


@dataclass(frozen=True)
class ClipCondition:
    """Everything a denoising step reads, computed once per video or per clip (v videos).

    reference: attn1 name -> (v, hw, c), from :meth:`EMOModel.encode_reference`.
    motion: layer name -> (v, n, c, h, w) from :meth:`EMOModel.encode_motion`, or None (no context).
    audio_tokens: (v, f, K, D) or None (zeros: no audio). speed_tokens: (v, f, k, c_s) or None.
    face: (v, C0, h, w) face-locator residual or None. use_reference: (v,) bool or None (all True).
    temporal: run the temporal modules (False in stage-1 training on single frames).
    """

    reference: dict[str, torch.Tensor] | None
    motion: dict[str, torch.Tensor] | None = None
    audio_tokens: torch.Tensor | None = None
    speed_tokens: torch.Tensor | None = None
    face: torch.Tensor | None = None
    use_reference: torch.Tensor | None = None
    temporal: bool = True

    def select(self, index: torch.Tensor | slice) -> ClipCondition:
        """The condition of a subset of the v videos (e.g. one classifier-free-guidance branch)."""

        def pick(x):
            if x is None:
                return None
            if isinstance(x, dict):
                return {k: v[index] for k, v in x.items()}
            return x[index]

        return replace(self, reference=pick(self.reference), motion=pick(self.motion),
                       audio_tokens=pick(self.audio_tokens), speed_tokens=pick(self.speed_tokens),
                       face=pick(self.face), use_reference=pick(self.use_reference))

    def repeat(self, videos: int) -> ClipCondition:
        """The condition of one video (v = 1) for ``videos`` videos (expanded views, no copies)."""

        def grow(x):
            if x is None:
                return None
            if isinstance(x, dict):
                return {k: grow(v) for k, v in x.items()}
            return x.expand(videos, *x.shape[1:])

        return replace(self, reference=grow(self.reference), motion=grow(self.motion),
                       audio_tokens=grow(self.audio_tokens), speed_tokens=grow(self.speed_tokens),
                       face=grow(self.face), use_reference=grow(self.use_reference))


class EMOModel(nn.Module):
    """Backbone + ReferenceNet + temporal modules + audio projection + face locator + speed encoder.

    ``emo_layers=False`` switches every EMO addition off: the backbone is then a plain SD UNet.
    """

    def __init__(self, config: EMOConfig, emo_layers: bool = True):
        super().__init__()
        self.config = config
        self.emo_layers = emo_layers
        self.backbone = UNet2DConditionModel(**config.unet)
        self.reference_net = build_reference_net(config)
        self.temporal = TemporalModules(config)
        self.audio_projection = build_audio_projection(config)
        self.face_locator = FaceLocator(config)
        self.speed_encoder = SpeedEncoder(config)
        self.bank = ReferenceBank()
        self._condition: ClipCondition | None = None
        self._frames = 1
        self._motion_capture: dict[str, torch.Tensor] | None = None
        install_reference_attention(self.backbone, self.reference_net, self.bank)
        install_audio_attention(self.backbone, self.bank, config.audio_attention_scale)
        for motion_name, layer_name, _ in self.temporal.sites:
            self.backbone.get_submodule(layer_name).register_forward_hook(self._temporal_hook(motion_name))
            self.reference_net.get_submodule(layer_name).register_forward_hook(self._motion_capture_hook(motion_name))
        self.backbone.conv_in.register_forward_hook(self._face_hook)

    # ---- hooks: active only inside a denoise/encode call ------------------------------------------
    def _temporal_hook(self, motion_name: str):
        def hook(_module, _inputs, output):
            cond = self._condition
            if cond is None or not cond.temporal:
                return output
            sample = output[0] if isinstance(output, tuple) else output
            motion = None if cond.motion is None else cond.motion[motion_name]
            sample = self.temporal.module(motion_name)(sample, self._frames, motion, cond.speed_tokens,
                                                       cache=self.bank.cache)
            return (sample, *output[1:]) if isinstance(output, tuple) else sample

        return hook

    def _motion_capture_hook(self, motion_name: str):
        def hook(_module, _inputs, output):
            if self._motion_capture is not None:
                self._motion_capture[motion_name] = output[0] if isinstance(output, tuple) else output
            return output

        return hook

    def _face_hook(self, _module, _inputs, output):
        cond = self._condition
        if cond is None or cond.face is None:
            return output
        return output + repeat(cond.face.to(output.dtype), "v c h w -> (v f) c h w", f=self._frames)

    # ---- the ReferenceNet, once per video / once per clip -----------------------------------------
    def _run_reference_net(self, latents: torch.Tensor) -> None:
        """latents: (b, 4, h, w) clean latents, run at t = 0 with an empty (zero) context."""
        context = latents.new_zeros(latents.shape[0], 1, self.config.cross_attention_dim)
        timestep = torch.zeros(latents.shape[0], device=latents.device, dtype=torch.long)
        self.reference_net(latents, timestep, encoder_hidden_states=context, return_dict=False)

    def encode_reference(self, reference_latents: torch.Tensor) -> dict[str, torch.Tensor]:
        """ReferenceNet features for reference-attention. reference_latents: (v, 4, h, w) -> name -> (v, hw, c)."""
        try:
            self.bank.capturing = True
            self._run_reference_net(reference_latents)
            features = dict(self.bank.recording)
        finally:
            self.bank.clear()
        if self.config.reference_feature_dtype:
            rounding = getattr(torch, self.config.reference_feature_dtype)
            features = {k: x.to(rounding).to(x.dtype) for k, x in features.items()}
        return features

    def encode_motion(self, motion_latents: torch.Tensor) -> dict[str, torch.Tensor]:
        """ReferenceNet features of the previous clip's last n frames for the temporal modules.

        motion_latents: (v, n, 4, h, w) -> layer name -> (v, n, c, h', w')
        """
        n = motion_latents.shape[1]
        self._motion_capture = {}
        try:
            self._run_reference_net(rearrange(motion_latents, "v n c h w -> (v n) c h w"))
            return {k: rearrange(x, "(v n) c h w -> v n c h w", n=n) for k, x in self._motion_capture.items()}
        finally:
            self._motion_capture = None

    def zero_motion(self, videos: int, height: int, width: int, device=None, dtype=None,
                    frames: int | None = None) -> dict[str, torch.Tensor]:
        """No motion context: zeros shaped like :meth:`encode_motion`'s output for ``frames`` motion
        frames (default: the config's n) of latents height x width."""
        n, zeros = self.config.motion_frames if frames is None else frames, {}
        for motion_name, _, channels in self.temporal.sites:
            block = self.backbone.get_submodule(motion_name.split(".motion_modules")[0])
            scale = _block_downscale(self.backbone, block)
            zeros[motion_name] = torch.zeros(videos, n, channels, height // scale, width // scale,
                                             device=device, dtype=dtype)
        return zeros

    # ---- per-video conditions ---------------------------------------------------------------------
    def encode_audio(self, windows: torch.Tensor) -> torch.Tensor:
        """windows: (v, f, 2m+1, L, C) -> audio tokens (v, f, K, D)."""
        return self.audio_projection(windows)

    def encode_speed(self, speed: torch.Tensor) -> torch.Tensor:
        """speed: (v, f) degrees/frame -> tokens (v, f, k, c_s)."""
        return self.speed_encoder(speed)

    def encode_face(self, mask: torch.Tensor) -> torch.Tensor:
        """mask: (v, 1, H, W) -> face-locator residual (v, C0, H/8, W/8)."""
        return self.face_locator(mask)

    # ---- what a guidance branch (or a training sample's dropout) removes -----------------------------
    def drop_conditions(self, cond: ClipCondition, dropped: Mapping[str, torch.Tensor]) -> ClipCondition:
        """``cond`` with, per video, the named conditions removed. dropped: name -> (v,) bool, True = removed.

        reference: reference-attention sees the frame's own tokens only; audio: zero audio tokens;
        face: no face-locator residual. Motion frames and speed always stay. A model family that removes
        a condition differently (e.g. identity tokens through their projection of zeros) changes it here.
        """
        unknown = sorted(set(dropped) - set(CONDITIONS))
        if unknown:
            raise ValueError(f"uncond_drops: unknown conditions {unknown}; expected names from {list(CONDITIONS)}")
        changes = {}
        if "reference" in dropped:
            keep = ~dropped["reference"].bool()
            changes["use_reference"] = keep if cond.use_reference is None else keep & cond.use_reference.bool()
        for name, field in (("audio", "audio_tokens"), ("face", "face")):
            value = getattr(cond, field)
            if name in dropped and value is not None:
                keep = (~dropped[name].bool()).to(value.device, value.dtype)
                changes[field] = value * keep.reshape(-1, *[1] * (value.ndim - 1))
        return replace(cond, **changes)

    def guidance_batch(self, cond: ClipCondition, branches: Sequence[frozenset[str]]) -> ClipCondition:
        """One clip's condition (v = 1) -> the batch of guidance branches (v = len(branches)), branch i
        without the conditions named in ``branches[i]`` (see :mod:`emo_models.guidance`)."""
        device = next(self.parameters()).device
        names = sorted(set().union(*branches))
        dropped = {n: torch.tensor([n in b for b in branches], device=device) for n in names}
        return self.drop_conditions(cond.repeat(len(branches)), dropped)

    # ---- one denoising step -----------------------------------------------------------------------
    def clip_cache(self) -> ClipCache:
        """An empty per-clip cache: pass it to every :meth:`denoise` call of a clip; it fills on the first
        and makes the later ones skip the work that is constant over the clip (what derives from the
        same condition tensors). Results equal uncached calls (float rounding aside)."""
        return ClipCache()

    def denoise(self, latents: torch.Tensor, timestep: torch.Tensor | float, cond: ClipCondition,
                encoder_hidden_states: torch.Tensor | None = None, cache: ClipCache | None = None) -> torch.Tensor:
        """Predict the noise of a clip. latents: (v, f, 4, h, w); timestep: scalar or (v,) -> (v, f, 4, h, w).

        With ``emo_layers=False`` the backbone is a plain UNet fed ``encoder_hidden_states`` (v·f, S, D).
        cache: this clip's :meth:`clip_cache` (None: compute everything, as training does); pass the
        same ``cond`` (or one sharing its tensors) at every step for the cache to save work.
        """
        v, f = latents.shape[:2]
        if cond.audio_tokens is not None and tuple(cond.audio_tokens.shape[:2]) != (v, f):
            raise ValueError(f"cond.audio_tokens: {' videos x '.join(map(str, cond.audio_tokens.shape[:2]))} frames "
                             f"for latents of {v} x {f}; give the condition of the videos and frames being denoised")
        x = rearrange(latents, "v f c h w -> (v f) c h w")
        t = torch.as_tensor(timestep, device=latents.device)
        t = repeat(t.reshape(-1).expand(v), "v -> (v f)", f=f)
        if not self.emo_layers:
            out = self.backbone(x, t, encoder_hidden_states=encoder_hidden_states, return_dict=False)[0]
            return rearrange(out, "(v f) c h w -> v f c h w", f=f)
        context = self._audio_context(cond.audio_tokens, v * f, x) if cache is None else cache.memo(
            self, "audio context", (cond.audio_tokens, v * f, x.dtype, x.device),
            lambda: self._audio_context(cond.audio_tokens, v * f, x))
        self._condition, self._frames = cond, f
        self.bank.reference, self.bank.frames, self.bank.use_reference = cond.reference, f, cond.use_reference
        self.bank.cache = cache
        try:
            out = self.backbone(x, t, encoder_hidden_states=context, return_dict=False)[0]
        finally:
            self._condition, self._frames = None, 1
            self.bank.clear()
        return rearrange(out, "(v f) c h w -> v f c h w", f=f)

    def _audio_context(self, audio_tokens: torch.Tensor | None, rows: int, x: torch.Tensor) -> torch.Tensor:
        """The backbone's cross-attention context: audio tokens (v, f, K, D) or None (zeros) -> (v·f, K, D)."""
        if audio_tokens is None:
            return x.new_zeros(rows, self.config.audio_token_count, self.config.cross_attention_dim)
        return rearrange(audio_tokens.to(x.dtype), "v f k d -> (v f) k d")

    def forward(self, latents, timestep, reference_latents, audio_windows=None, speed=None, face_mask=None,
                motion_latents=None, temporal: bool = True) -> torch.Tensor:
        """Training forward. latents: (v, f, 4, h, w); reference_latents: (v, 4, h, w);
        audio_windows: (v, f, 2m+1, L, C); speed: (v, f); face_mask: (v, 1, H, W);
        motion_latents: (v, n, 4, h, w) -> predicted noise (v, f, 4, h, w)."""
        v, _, _, h, w = latents.shape
        if temporal and motion_latents is None:
            motion = self.zero_motion(v, h, w, latents.device, latents.dtype)
        else:
            motion = self.encode_motion(motion_latents) if temporal else None
        cond = ClipCondition(
            reference=self.encode_reference(reference_latents),
            motion=motion,
            audio_tokens=None if audio_windows is None else self.encode_audio(audio_windows),
            speed_tokens=None if speed is None or not temporal else self.encode_speed(speed),
            face=None if face_mask is None else self.encode_face(face_mask),
            temporal=temporal,
        )
        return self.denoise(latents, timestep, cond)

    # ---- parameter groups for the three training stages --------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by the paper's parts: backbone, reference_net, face_locator, audio, temporal, speed."""
        groups: dict[str, list[nn.Parameter]] = {k: [] for k in
                                                ("backbone", "reference_net", "face_locator", "audio", "temporal", "speed")}
        for name, p in self.backbone.named_parameters():
            groups["audio" if ".attn2." in name else "backbone"].append(p)
        groups["reference_net"] = list(self.reference_net.parameters())
        groups["face_locator"] = list(self.face_locator.parameters())
        groups["audio"] += list(self.audio_projection.parameters())
        for name, p in self.temporal.named_parameters():
            groups["speed" if is_speed_parameter(name) else "temporal"].append(p)
        groups["speed"] += list(self.speed_encoder.parameters())
        return groups

    @contextmanager
    def emo_layers_off(self):
        """Temporarily run the backbone as a plain SD UNet (for comparisons)."""
        previous, self.emo_layers = self.emo_layers, False
        try:
            yield self
        finally:
            self.emo_layers = previous


def build_reference_net(config: EMOConfig) -> UNet2DConditionModel:
    """The ReferenceNet: a stock UNet of the backbone's layout, optionally without cross-attention
    (``attn2``/``norm2`` set to None: diffusers' blocks then skip it) or output layers (``conv_norm_out``
    None, ``conv_out`` an identity: only its attention inputs are ever read)."""
    unet = UNet2DConditionModel(**config.unet)
    if not config.reference_net_attn2:
        for module in unet.modules():
            if isinstance(module, BasicTransformerBlock):
                module.attn2, module.norm2 = None, None
    if not config.reference_net_conv_out:
        unet.conv_norm_out, unet.conv_out = None, nn.Identity()
    return unet


def _block_downscale(unet: UNet2DConditionModel, block: nn.Module) -> int:
    """How many times smaller than the latent a block's layer outputs are."""
    downs = list(unet.down_blocks)
    if block in downs:
        return 2 ** downs.index(block)
    if block is unet.mid_block:
        return 2 ** (len(downs) - 1)
    ups = list(unet.up_blocks)
    return 2 ** (len(downs) - 1 - ups.index(block))
