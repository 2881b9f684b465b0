"""The EMO denoiser: stock diffusers UNets with EMO's ideas attached as small modules.

- backbone, reference_net: unmodified ``UNet2DConditionModel``s (SD-1.5 layout);
- reference-attention: attention processors on every ``attn1`` (reference_attention.py);
- audio-attention: every transformer block's cross-attention (``attn2``) reads the frame's audio tokens
  instead of text, so it follows reference-attention inside each block — or, for Hallo's weights,
  ``attn2`` reads identity tokens (identity.py) and audio goes through region-weighted audio modules
  after each attention layer (audio_modules.py);
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
from dataclasses import replace

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention import BasicTransformerBlock
from einops import rearrange, repeat
from torch import nn

from .audio import build_audio_projection, install_audio_attention
from .audio_modules import AudioModules
from .clip_cache import ClipCache
from .condition import ClipCondition
from .config import EMOConfig
from .face_locator import FaceLocator
from .identity import IdentityProjection
from .preset import CONDITIONS
from .reference_attention import ReferenceBank, install_reference_attention
from .reference_net import block_downscale, build_reference_net
from .speed import SpeedEncoder
from .temporal import TemporalModules

__all__ = ["ClipCondition", "EMOModel"]


STEP_PARTS = ("backbone", "temporal", "audio_modules")  # what :meth:`EMOModel.denoise` reads; the rest runs per clip


class EMOModel(nn.Module):
    """Backbone + ReferenceNet + temporal modules + audio projection + face locator + speed encoder.

    ``emo_layers=False`` switches every EMO addition off: the backbone is then a plain SD UNet.
    """

    def __init__(self, config: EMOConfig, emo_layers: bool = True):
        super().__init__()
        self.config = config
        self.emo_layers = emo_layers
        self.backbone = UNet2DConditionModel(**config.unet)
        for block in self.backbone.modules():  # feed-forward one frame at a time: same numbers, ~1.5 GB less at 512²
            if isinstance(block, BasicTransformerBlock):
                block.set_chunk_feed_forward(1, dim=0)
        self.reference_net = build_reference_net(config)
        self.temporal = TemporalModules(config)
        self.audio_projection = build_audio_projection(config)
        self.face_locator = FaceLocator(config)
        self.speed_encoder = SpeedEncoder(config)
        self.identity_projection = IdentityProjection(config) if config.identity_tokens else None
        self.audio_modules = AudioModules(config) if config.audio_modules else None
        self.bank = ReferenceBank()
        self._condition: ClipCondition | None = None
        self._frames = 1
        self._motion_capture: dict[str, torch.Tensor] | None = None
        self._audio: torch.Tensor | None = None
        install_reference_attention(self.backbone, self.reference_net, self.bank)
        install_audio_attention(self.backbone, self.bank, config.audio_attention_scale)
        # after each backbone layer: its audio module (if any), then its temporal module (if it runs)
        after: dict[str, dict[str, str]] = {}
        for site in self.audio_modules.sites if self.audio_modules is not None else ():
            after.setdefault(site.layer, {})["audio"] = site.name
        for motion_name, layer_name, _ in self.motion_sites():
            after.setdefault(layer_name, {})["motion"] = motion_name
            if config.motion_features == "layer_output":
                self.reference_net.get_submodule(layer_name).register_forward_hook(self._motion_capture_hook(motion_name))
        for layer_name, names in after.items():
            self.backbone.get_submodule(layer_name).register_forward_hook(self._layer_hook(layer_name, **names))
        self.backbone.conv_in.register_forward_hook(self._face_hook)

    def motion_sites(self) -> list[tuple[str, str, int]]:
        """The temporal modules that run: (motion module, layer it follows, channels).

        All of them, except with ``motion_features="attention_input"``, where only those after an
        attention layer run (there are no motion features elsewhere; Hallo's released behaviour).
        """
        if self.config.motion_features == "layer_output":
            return list(self.temporal.sites)
        return [site for site in self.temporal.sites if ".attentions." in site[1]]

    # ---- hooks: active only inside a denoise/encode call ------------------------------------------
    def _layer_hook(self, layer_name: str, audio: str | None = None, motion: str | None = None):
        depth = None if audio is None else next(s.depth for s in self.audio_modules.sites if s.name == audio)

        def hook(_module, _inputs, output):
            cond = self._condition
            if cond is None:
                return output
            sample = output[0] if isinstance(output, tuple) else output
            if audio is not None:
                if cond.regions is None:
                    raise ValueError("regions: this model's audio modules read full/face/lip region masks; "
                                     "give them in the ClipCondition (RegionMasks)")
                masks = cond.regions.at(depth, self._frames, sample.dtype)
                sample = self.audio_modules.module(audio)(sample, self._audio, masks, cond.regions.weights)
            if motion is not None and cond.temporal:
                features = None if cond.motion is None else cond.motion[motion]
                sample = self.temporal.module(motion)(sample, self._frames, features, cond.speed_tokens,
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
    def _run_reference_net(self, latents: torch.Tensor, context: torch.Tensor | None = None) -> None:
        """latents: (b, 4, h, w) clean latents, run at t = 0; context: (b, K, D) identity tokens, or None
        for an empty (zero) context."""
        if context is None:
            if self.identity_projection is not None:
                raise ValueError("reference: this model's ReferenceNet reads identity tokens; pass context")
            context = latents.new_zeros(latents.shape[0], 1, self.config.cross_attention_dim)
        timestep = torch.zeros(latents.shape[0], device=latents.device, dtype=torch.long)
        self.reference_net(latents, timestep, encoder_hidden_states=context.to(latents.dtype), return_dict=False)

    def _reference_pass(self, latents: torch.Tensor, context: torch.Tensor | None):
        """Run the ReferenceNet once on (b, 4, h, w) -> (attn1 inputs name -> (b, hw, c),
        layer outputs motion module -> (b, c, h', w') when motion features are layer outputs)."""
        self._motion_capture = {} if self.config.motion_features == "layer_output" else None
        try:
            self.bank.capturing = True
            self._run_reference_net(latents, context)
            return dict(self.bank.recording), dict(self._motion_capture or {})
        finally:
            self.bank.clear()
            self._motion_capture = None

    def _motion_from(self, recording, layers, n: int, h: int) -> dict[str, torch.Tensor]:
        """Motion features (v, n, c, h', w') per temporal module from one pass over (v·n) motion frames."""
        if self.config.motion_features == "layer_output":
            return {k: rearrange(x, "(v n) c h w -> v n c h w", n=n) for k, x in layers.items()}
        return {name: rearrange(recording[f"{layer}.transformer_blocks.0.attn1"], "(v n) (h w) c -> v n c h w",
                                n=n, h=h // self._downscale(name))
                for name, layer, _ in self.motion_sites()}

    def encode_reference(self, reference_latents: torch.Tensor, context: torch.Tensor | None = None
                         ) -> dict[str, torch.Tensor]:
        """ReferenceNet features for reference-attention. reference_latents: (v, 4, h, w);
        context: (v, K, D) identity tokens or None -> attn1 name -> (v, hw, c)."""
        recording, _ = self._reference_pass(reference_latents, context)
        return {name: self._hand_over(x) for name, x in recording.items()}

    def encode_motion(self, motion_latents: torch.Tensor, context: torch.Tensor | None = None
                      ) -> dict[str, torch.Tensor]:
        """ReferenceNet features of the previous clip's last n frames for the temporal modules.

        motion_latents: (v, n, 4, h, w); context: (v, n, K, D) identity tokens or None
        -> motion module name -> (v, n, c, h', w')
        """
        n, h = motion_latents.shape[1], motion_latents.shape[-2]
        context = None if context is None else rearrange(context, "v n k d -> (v n) k d")
        passed = self._reference_pass(rearrange(motion_latents, "v n c h w -> (v n) c h w"), context)
        return {k: self._hand_over(x) for k, x in self._motion_from(*passed, n, h).items()}

    def encode_clip_references(self, latents: torch.Tensor, context: torch.Tensor | None = None):
        """Reference and motion features from ONE ReferenceNet pass over every video's
        [reference, m_1..m_n] (Hallo's batching, which fixes the rounding its weights were run with).

        latents: (v, 1+n, 4, h, w); context: (v, 1+n, K, D) or None
        -> (attn1 name -> (v, hw, c), motion module -> (v, n, c, h', w'))
        """
        v, frames, _, h, _ = latents.shape
        flat = rearrange(latents, "v k c h w -> (v k) c h w").contiguous()
        recording, layers = self._reference_pass(flat, None if context is None else
                                                 rearrange(context, "v k t d -> (v k) t d").contiguous())
        first = torch.arange(v, device=latents.device) * frames
        rest = torch.tensor([i for i in range(v * frames) if i % frames], device=latents.device, dtype=torch.long)
        reference = {k: self._hand_over(x[first]) for k, x in recording.items()}
        motion = self._motion_from({k: x[rest] for k, x in recording.items()},
                                   {k: x[rest] for k, x in layers.items()}, frames - 1, h)
        return reference, {k: self._hand_over(x) for k, x in motion.items()}

    def _hand_over(self, features: torch.Tensor) -> torch.Tensor:
        """ReferenceNet features as the backbone reads them: rounded through ``reference_feature_dtype``."""
        if not self.config.reference_feature_dtype:
            return features
        return features.to(getattr(torch, self.config.reference_feature_dtype)).to(features.dtype)

    def zero_motion(self, videos: int, height: int, width: int, device=None, dtype=None,
                    frames: int | None = None) -> dict[str, torch.Tensor]:
        """No motion context: zeros shaped like :meth:`encode_motion`'s output for ``frames`` motion
        frames (default: the config's n) of latents height x width."""
        n, zeros = self.config.motion_frames if frames is None else frames, {}
        for motion_name, _, channels in self.motion_sites():
            scale = self._downscale(motion_name)
            zeros[motion_name] = torch.zeros(videos, n, channels, height // scale, width // scale,
                                             device=device, dtype=dtype)
        return zeros

    def _downscale(self, motion_name: str) -> int:
        block = self.backbone.get_submodule(motion_name.split(".motion_modules")[0])
        return block_downscale(self.backbone, block)

    def reference_contexts(self, identity: torch.Tensor, frames: int) -> torch.Tensor:
        """Which identity tokens each ReferenceNet input of a guidance batch reads.

        identity: (v, K, D), one row per branch; frames: inputs per branch ([reference, m_1..m_n] = 1+n)
        -> (v, frames, K, D). ``branch`` pairing: each input reads its own branch's tokens.
        ``alternating`` (Hallo): the v·frames inputs form one batch whose input p reads branch p mod v
        (and in :meth:`denoise` frame row i reads reference i mod v).
        """
        v = identity.shape[0]
        if self.config.reference_pairing == "branch":
            return identity[:, None].expand(-1, frames, -1, -1)
        return identity[torch.arange(v * frames, device=identity.device).remainder(v).reshape(v, frames)]

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

    def encode_identity(self, embedding: torch.Tensor) -> torch.Tensor:
        """embedding: (v, identity_dim) face-recognition embedding -> identity tokens (v, K_id, D)."""
        if self.identity_projection is None:
            raise ValueError("identity: this model has no identity tokens (config identity_tokens=0)")
        return self.identity_projection(embedding)

    # ---- what a guidance branch (or a training sample's dropout) removes -----------------------------
    def drop_conditions(self, cond: ClipCondition, dropped: Mapping[str, torch.Tensor]) -> ClipCondition:
        """``cond`` with, per video, the named conditions removed. dropped: name -> (v,) bool, True = removed.

        reference: reference-attention sees the frame's own tokens only, and identity tokens (models with
        them) become the projection of a zero embedding, as Hallo's unconditional branch; audio: zero
        audio tokens; face: no face-locator residual. Motion frames and speed always stay.
        """
        unknown = sorted(set(dropped) - set(CONDITIONS))
        if unknown:
            raise ValueError(f"uncond_drops: unknown conditions {unknown}; expected names from {list(CONDITIONS)}")
        changes = {}
        if "reference" in dropped:
            keep = ~dropped["reference"].bool()
            changes["use_reference"] = keep if cond.use_reference is None else keep & cond.use_reference.bool()
            if cond.identity is not None:
                blank = self.encode_identity(cond.identity.new_zeros(1, self.config.identity_dim))
                changes["identity"] = torch.where(keep.to(cond.identity.device)[:, None, None], cond.identity, blank)
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
        batch = self.drop_conditions(cond.repeat(len(branches)), dropped)
        if batch.sources is None:
            return batch
        # one ReferenceNet pass over every branch's [reference, motion frames], each input reading the
        # identity tokens reference_contexts assigns it (Hallo's batch)
        identity = batch.identity
        contexts = None if identity is None else self.reference_contexts(identity, batch.sources.shape[1])
        reference, motion = self.encode_clip_references(batch.sources, contexts)
        return replace(batch, reference=reference, motion=motion if batch.sources.shape[1] > 1 else batch.motion,
                       sources=None)

    @property
    def reads_clip_sources(self) -> bool:
        """True when the ReferenceNet reads the reference and motion latents in one pass per clip and
        guidance batch (give ``ClipCondition.sources``), as Hallo's alternating batch does."""
        return self.config.reference_pairing == "alternating"

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
        inputs = (cond.audio_tokens, cond.identity, v, f, x.dtype, x.device)
        audio, context = self._cross_attention_inputs(cond, v, f, x) if cache is None else cache.memo(
            self, "cross-attention inputs", inputs, lambda: self._cross_attention_inputs(cond, v, f, x))
        self._condition, self._frames, self._audio = cond, f, audio
        self.bank.reference, self.bank.frames, self.bank.use_reference = cond.reference, f, cond.use_reference
        self.bank.tiled = self.config.reference_pairing == "alternating"
        self.bank.cache = cache
        try:
            out = self.backbone(x, t, encoder_hidden_states=context, return_dict=False)[0]
        finally:
            self._condition, self._frames, self._audio = None, 1, None
            self.bank.clear()
        return rearrange(out, "(v f) c h w -> v f c h w", f=f)

    def _cross_attention_inputs(self, cond: ClipCondition, v: int, f: int,
                                x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(audio tokens (v·f, K, D): zeros without audio, the backbone's cross-attention context (v·f, S, D)):
        the audio tokens themselves, or the identity tokens when the model has them (Hallo), or one zero
        token when audio modules read the audio instead."""
        if cond.audio_tokens is not None:
            audio = rearrange(cond.audio_tokens.to(x.dtype), "v f k d -> (v f) k d")
        else:
            audio = x.new_zeros(v * f, self.config.audio_token_count, self.config.audio_token_dim)
        if self.identity_projection is not None:
            if cond.identity is None:
                raise ValueError("identity: this model's cross-attention reads identity tokens; give them in "
                                 "the ClipCondition (EMOModel.encode_identity of a face embedding)")
            return audio, repeat(cond.identity.to(x.dtype), "v k d -> (v f) k d", f=f)
        if self.audio_modules is not None:
            return audio, x.new_zeros(v * f, 1, self.config.cross_attention_dim)
        return audio, audio

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

    @contextmanager
    def emo_layers_off(self):
        """Temporarily run the backbone as a plain SD UNet (for comparisons)."""
        previous, self.emo_layers = self.emo_layers, False
        try:
            yield self
        finally:
            self.emo_layers = previous
