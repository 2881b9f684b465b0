"""Is a loaded checkpoint fit to generate with? Non-finite weights, parts never trained, and the load report.

- :func:`check_finite`: NaN or infinite weights are refused before anything runs, named by component
  and key (else they surface minutes later as "frame 0 contains NaN", naming nothing).
- :func:`untrained_parts`: the paper's parts (backbone, reference_net, face_locator, audio, temporal,
  speed, and the pretrained vae and audio_encoder) that still hold their random initialisation. Two
  witnesses: the ``untrained`` list that ``init`` writes into ``metadata.json`` and each training stage
  shortens (:func:`untrained_after_init`, :func:`still_untrained`), and the layers EMO initialises to
  zero (face locator output, temporal output, speed attention output), which any training moves.
- :class:`CheckpointReport`: what a load found (family, config, dtype, components with their
  missing/unexpected keys, untrained parts), printed by ``generate`` and Load EMO Model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import torch

from .safe_load import LoadReport, WeightsError, short_list

UNTRAINED = "untrained"  # metadata.json key: parts still at their random initialisation
PARTS = ("backbone", "reference_net", "face_locator", "audio", "temporal", "speed", "vae", "audio_encoder")
# init's sources -> the parts they fill (the backbone's audio-attention is SD's text attention: untrained)
SOURCE_PARTS = {"base": ("backbone", "reference_net", "vae"), "vae": ("vae",), "motion_module": ("temporal",),
                "audio_encoder": ("audio_encoder",)}
# layers EMO creates at zero: still all zero means the part was never trained
ZERO_INITIALISED = {"face_locator": ("face_locator", ("conv_out.weight",)),
                    "temporal": ("temporal", (".proj_out.weight",)),
                    "speed": ("temporal", (".speed_attention.to_out.weight",))}


def non_finite(components: Mapping[str, Mapping[str, torch.Tensor]],
               after_component: Callable[[str], object] | None = None) -> list[tuple[str, str, int]]:
    """``(component, key, count)`` for every floating-point tensor holding NaN or inf values;
    ``after_component(name)`` is called as each component's scan ends."""
    found = []
    for component, state_dict in components.items():
        for key, tensor in state_dict.items():
            if tensor.is_floating_point() and not tensor.is_meta:
                bad = int((~torch.isfinite(tensor)).sum())
                if bad:
                    found.append((component, key, bad))
        if after_component is not None:
            after_component(component)
    return found


def check_finite(components: Mapping[str, Mapping[str, torch.Tensor]], source: str,
                 dtype: torch.dtype | None = None, after_component: Callable[[str], object] | None = None) -> None:
    """Refuse weights holding NaN or inf with a :class:`WeightsError` naming the components and keys.

    ``dtype``: the precision the weights were cast to, named when that cast is the cause (a value
    beyond float16's 65504 becomes inf); ``after_component``: as :func:`non_finite`.
    """
    found = non_finite(components, after_component)
    if not found:
        return
    where = short_list([f"{component} {key} ({count} values)" for component, key, count in found], 4)
    cause = (f" after casting to {str(dtype).removeprefix('torch.')}: some weights are too large for it, "
             "load in float32 or bfloat16" if dtype == torch.float16 else
             ": the checkpoint is damaged (a diverged training run?); use an earlier checkpoint")
    raise WeightsError(f"{source}: NaN or infinite weights in {where}{cause}")


def untrained_after_init(sources: Mapping[str, object]) -> list[str]:
    """Parts ``init`` leaves random: everything but what its given ``sources`` (base, vae, motion_module,
    audio_encoder) fill; face_locator, audio and speed are EMO's own layers and always start random."""
    filled = {part for name, value in sources.items() if value for part in SOURCE_PARTS.get(name, ())}
    return [part for part in PARTS if part not in filled]


def still_untrained(untrained: Iterable[str], trained: Iterable[str]) -> list[str]:
    """The ``untrained`` parts a training stage that trains ``trained`` (paper part names) leaves untrained."""
    trained = set(trained)
    return [part for part in untrained if part not in trained]


def untrained_parts(metadata: Mapping, components: Mapping[str, Mapping[str, torch.Tensor]]) -> dict[str, str]:
    """Part -> why it is believed untrained, from ``metadata.json`` and the zero-initialised layers.

    metadata: the checkpoint's notes (``untrained`` list, or an older ``init``'s ``sources``);
    components: component name -> state dict (or module state dicts of a loaded pipeline).
    """
    found: dict[str, str] = {}
    if isinstance(metadata.get(UNTRAINED), list):
        listed = metadata[UNTRAINED]
    elif metadata.get("created_by") == "emo_models init":
        listed = untrained_after_init(metadata.get("sources") or {})
    else:
        listed = []
    for part in listed:
        found[str(part)] = "random initialisation, never trained (metadata.json)"
    for part, (component, suffixes) in ZERO_INITIALISED.items():
        tensors = [t for k, t in components.get(component, {}).items() if k.endswith(suffixes)]
        if part not in found and tensors and all(not t.is_meta and not t.any() for t in tensors):
            found[part] = f"its zero-initialised output layers ({component} *{suffixes[0]}) are still all zero"
    return found


@dataclass(frozen=True)
class CheckpointReport:
    """What loading a checkpoint found; ``str()`` is the report printed at load time."""

    source: str
    family: str
    config: str
    dtype: str
    components: list[LoadReport] = field(default_factory=list)
    untrained: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """Loud lines for the user: untrained parts first (they make the output noise), then notes."""
        lines = []
        if self.untrained:
            parts = ", ".join(sorted(self.untrained))
            lines.append(f"WARNING: {self.source}: parts never trained: {parts}. Their weights are random, so "
                         "the video will be noise or a frozen face; train the checkpoint (python -m emo_models "
                         "train, stages 1-3) or load a trained one")
            lines += [f"  {part}: {why}" for part, why in sorted(self.untrained.items())]
        return lines + [f"note: {note}" for note in self.notes]

    @property
    def summary(self) -> list[str]:
        """What was loaded: source, family, config, dtype, then one line per component."""
        head = f"loaded {self.source}: {self.family}, config {self.config}, {self.dtype}"
        return [head, *(f"  {report}" for report in self.components)]

    def __str__(self) -> str:
        return "\n".join(self.summary + self.warnings)
