"""AnimateDiff motion-module weights (``mm_sd_v15_v2.ckpt`` and friends) for the temporal modules.

The original layout is kept: keys ``{down_blocks.i|mid_block|up_blocks.i}.motion_modules.j.
temporal_transformer.{norm, proj_in, transformer_blocks.0.{attention_blocks.{0,1}.{to_q,to_k,to_v,
to_out.0}, norms.{0,1}, ff.net.{0.proj,2}, ff_norm}, proj_out}`` are also the key names of our
temporal modules. The sinusoidal ``pos_encoder.pe`` buffers are dropped (they are recomputed).
Also read: diffusers' ``MotionAdapter`` layout (a file or its folder), renamed back to the original.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from .safe_load import check_state_dict, no_weights_error, read_state_dict, strip_prefix
from .sd15 import find_diffusers_weights

COMPONENT = "AnimateDiff motion module"
EXPECTED_LAYOUT = ("{down_blocks.i|mid_block|up_blocks.i}.motion_modules.j.temporal_transformer.* "
                   "(AnimateDiff mm_sd_v15_v2 layout, ComfyUI models/animatediff_models)")
_ADAPTER_KEY = re.compile(r"^(.*\.motion_modules\.\d+\.)(?!temporal_transformer\.)(.*)$")
_ADAPTER_NAMES = {"norm1": "norms.0", "norm2": "norms.1", "norm3": "ff_norm",
                  "attn1": "attention_blocks.0", "attn2": "attention_blocks.1"}
_ADAPTER_BLOCK = re.compile(r"^(transformer_blocks\.\d+\.)(norm1|norm2|norm3|attn1|attn2)\.")


def motion_module_blocks(unet_config: dict[str, Any]) -> list[tuple[str, int, int]]:
    """``(block name, modules in it, channels)`` for each UNet block, in AnimateDiff's layout.

    Down block i: ``layers_per_block`` modules; mid block: 1; up block i: ``layers_per_block + 1``;
    channels follow ``block_out_channels`` (reversed for up blocks).
    """
    channels = list(unet_config["block_out_channels"])
    per_block = int(unet_config["layers_per_block"])
    down = [(f"down_blocks.{i}", per_block, c) for i, c in enumerate(channels)]
    up = [(f"up_blocks.{i}", per_block + 1, c) for i, c in enumerate(reversed(channels))]
    return [*down, ("mid_block", 1, channels[-1]), *up]


def motion_module_shapes(unet_config: dict[str, Any], max_frames: int = 32,
                         with_pos_encoder: bool = True) -> dict[str, tuple[int, ...]]:
    """Key -> shape of an original AnimateDiff v2 motion-module file for a UNet of ``unet_config``.

    Per module (c channels): GroupNorm ``norm`` (c), ``proj_in``/``proj_out`` Linear(c, c); two
    attention blocks with bias-free q/k/v Linear(c, c), ``to_out.0`` Linear(c, c) and, optionally,
    ``pos_encoder.pe`` (1, max_frames, c); LayerNorms ``norms.{0,1}``, ``ff_norm`` (c); GEGLU
    feed-forward ``ff.net.0.proj`` Linear(c, 8c), ``ff.net.2`` Linear(4c, c).
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for block, count, c in motion_module_blocks(unet_config):
        for j in range(count):
            module = _module_shapes(c, max_frames, with_pos_encoder)
            shapes.update({f"{block}.motion_modules.{j}.temporal_transformer.{k}": v for k, v in module.items()})
    return shapes


def _layer(name: str, weight: tuple[int, ...], bias: bool = True) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": weight, **({f"{name}.bias": (weight[0],)} if bias else {})}


def _module_shapes(c: int, max_frames: int, with_pos_encoder: bool) -> dict[str, tuple[int, ...]]:
    tb = "transformer_blocks.0."
    shapes = {**_layer("norm", (c,)), **_layer("proj_in", (c, c))}
    for a in (0, 1):
        attn = f"{tb}attention_blocks.{a}."
        for projection in ("to_q", "to_k", "to_v"):
            shapes.update(_layer(attn + projection, (c, c), bias=False))
        shapes.update(_layer(attn + "to_out.0", (c, c)))
        if with_pos_encoder:
            shapes[attn + "pos_encoder.pe"] = (1, max_frames, c)
        shapes.update(_layer(f"{tb}norms.{a}", (c,)))
    shapes.update({**_layer(tb + "ff.net.0.proj", (8 * c, c)), **_layer(tb + "ff.net.2", (c, 4 * c)),
                   **_layer(tb + "ff_norm", (c,)), **_layer("proj_out", (c, c))})
    return shapes


def convert_motion_adapter_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers ``MotionAdapter`` keys -> original AnimateDiff keys (``pos_embed`` buffers dropped).

    ``...motion_modules.j.transformer_blocks.0.{attn1,attn2,norm1,norm2,norm3}`` ->
    ``...motion_modules.j.temporal_transformer.transformer_blocks.0.{attention_blocks.0, attention_blocks.1,
    norms.0, norms.1, ff_norm}``. Keys already in the original layout pass through.
    """
    converted = {}
    for key, value in state_dict.items():
        match = _ADAPTER_KEY.match(key)
        if match is None:
            converted[key] = value
            continue
        if ".pos_embed." in key:
            continue
        rest = _ADAPTER_BLOCK.sub(lambda m: f"{m.group(1)}{_ADAPTER_NAMES[m.group(2)]}.", match.group(2))
        converted[f"{match.group(1)}temporal_transformer.{rest}"] = value
    return converted


def load_motion_module_state_dict(path: str | Path, unet_config: dict[str, Any] | None = None) -> dict[str, torch.Tensor]:
    """The motion-module tensors of an AnimateDiff file, keys as in the original, ``pos_encoder`` dropped.

    path: ``.ckpt``/``.safetensors`` in the original layout (a ``state_dict`` nesting or ``module.``
    prefix is unwrapped), a diffusers ``MotionAdapter`` file or folder. Only ``*.motion_modules.*``
    keys are returned (a whole AnimateDiff UNet gives just its motion modules). With ``unet_config``
    the shapes are checked against :func:`motion_module_shapes` (a v1 file without ``mid_block`` is
    accepted). A file without motion modules is refused with a :class:`WeightsError`.
    """
    path = Path(path)
    file = find_diffusers_weights(path, "motion_adapter") if path.is_dir() else path
    state_dict = read_state_dict(file)
    if all(k.startswith("module.") for k in state_dict):
        state_dict = strip_prefix(state_dict, "module.")
    state_dict = convert_motion_adapter_state_dict(state_dict)
    modules = {k: v for k, v in state_dict.items() if ".motion_modules." in k and ".pos_encoder." not in k}
    if not modules:
        raise no_weights_error(str(file), COMPONENT, state_dict, [EXPECTED_LAYOUT])
    if unet_config is not None:
        expected = motion_module_shapes(unet_config, with_pos_encoder=False)
        check_state_dict(expected, modules, COMPONENT, str(file), allow_missing=lambda k: k.startswith("mid_block."))
    return modules
