"""Reading weight files safely and loading them into modules with a per-component report.

Only two readers exist: ``safetensors`` and ``torch.load(weights_only=True)``. Every refusal is a
:class:`WeightsError` that names the file, what it holds and what was expected.
"""

from __future__ import annotations

import pickle
import re
import stat
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin", ".model")  # .model: SyncNet's syncnet_v2.model
WEIGHT_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES
# where checkpoints nest their tensors: Lightning/generic, DataParallel, openai Whisper ({"dims", "model_state_dict"})
NESTED_STATE_DICT_KEYS = ("state_dict", "module", "model_state_dict")
PLAIN_TENSORS_ONLY = "only plain tensor state dicts are accepted (safetensors, or torch.load(weights_only=True))"

_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
}


# torch's weights_only refusals, by what they mean (wording of torch 2.6 to 2.13)
_CODE = (re.compile(r"GLOBAL (\S+) whose module \S+ is blocked"),
         re.compile(r"Unsupported global: GLOBAL (\S+) was not an allowed global"),
         re.compile(r"call reduce for unrecognized function (.+?)(?: which belongs|$)", re.M),
         re.compile(r"(?:Can only create new object|Can only build).*?but got (.+)$", re.M))
_OPCODE = re.compile(r"Unsupported operand (\d+)")
_PICKLED_STORAGE = "torch.storage._load_from_bytes"  # tensors pickled with pickle.dump, not torch.save
_FILE_KINDS = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class WeightsError(ValueError):
    """A weights file or folder is missing, unreadable, or not what it was expected to be."""


def short_list(items: Sequence, limit: int = 5) -> str:
    """``a, b, c … (+N more)``: a readable prefix of a long list of keys."""
    items = [str(i) for i in items]
    head = ", ".join(items[:limit])
    return head + (f" … (+{len(items) - limit} more)" if len(items) > limit else "")


def read_state_dict(path: str | Path, device: str = "cpu", mmap: bool = False) -> dict[str, torch.Tensor]:
    """Read a flat ``{key: tensor}`` dict from one weights file.

    ``.safetensors``/``.sft`` via safetensors; ``.ckpt/.pth/.pt/.bin`` via
    ``torch.load(weights_only=True)``, unwrapping a top-level ``state_dict``, ``module`` or ``model_state_dict`` nesting.
    ``device="meta"`` reads only a safetensors header (shapes and dtypes, no data) — cheap for
    inspecting large files; pickles are read in full unless ``mmap`` (then their tensors stay on disk
    until used, for multi-GB files such as Hallo's ``net.pth``).
    """
    path = Path(path)
    expected = f"expected a weights file ({', '.join(WEIGHT_SUFFIXES)})"
    if not path.exists():
        raise WeightsError(f"{path}: no such file; {expected}")
    if path.is_dir():
        raise WeightsError(f"{path}: is a folder; {expected}")
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):  # reading a pipe or device would wait forever or never end
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
        raise WeightsError(f"{path}: is {kind}, not a file; {expected}")
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        state_dict = _read_safetensors(path, device)
    elif suffix in PICKLE_SUFFIXES:
        state_dict = _read_pickle(path, mmap)
    else:
        raise WeightsError(f"{path}: unknown extension {path.suffix!r}; {expected}")
    if not state_dict:
        raise WeightsError(f"{path}: holds no tensors; {expected} with a state dict")
    return state_dict


def _read_safetensors(path: Path, device: str) -> dict[str, torch.Tensor]:
    try:
        if device != "meta":
            return load_file(str(path), device=device)
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: (f.get_slice(k).get_shape(), f.get_slice(k).get_dtype()) for k in f.keys()}
    except (SafetensorError, OSError) as err:
        raise WeightsError(f"{path}: cannot be read as safetensors, truncated or corrupt? ({err})") from err
    return {k: torch.empty(s, dtype=_SAFETENSORS_DTYPES.get(d, torch.float32), device="meta")
            for k, (s, d) in shapes.items()}


def _pickle_refusal(path: Path, err: Exception) -> WeightsError:
    """torch's weights_only refusal of ``path`` as a message saying what the file is and what to do."""
    text = str(err)
    if _PICKLED_STORAGE in text:
        return WeightsError(f"{path}: tensors saved with pickle.dump, not torch.save; {PLAIN_TENSORS_ONLY}: "
                            "re-save them with torch.save(state_dict) or as .safetensors")
    for pattern in _CODE:
        found = pattern.search(text)
        if found:
            return WeightsError(f"{path}: contains code that is not allowed to run (loading it would import and "
                                f"call {found.group(1).strip()}); nothing in it was run; {PLAIN_TENSORS_ONLY}: "
                                "use a .safetensors release of these weights")
    found = _OPCODE.search(text)
    if found:
        return WeightsError(f"{path}: uses pickle instruction {found.group(1)}, which torch.save never writes: a "
                            f"plain Python pickle, not a torch checkpoint; nothing in it was run; {PLAIN_TENSORS_ONLY}")
    last = next((line.strip() for line in reversed(text.splitlines()) if line.strip()), repr(err))
    return WeightsError(f"{path}: cannot be read as a torch checkpoint, truncated or corrupt? ({last})")


def _read_pickle(path: Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    try:
        with warnings.catch_warnings():  # torch's notice about pickle protocols: we refuse such files anyway
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipfile.is_zipfile(path))
    except pickle.UnpicklingError as err:
        raise _pickle_refusal(path, err) from None
    except (RuntimeError, OSError, EOFError, ValueError) as err:
        raise WeightsError(f"{path}: cannot be read as a torch checkpoint, truncated or corrupt? ({err})") from err
    while isinstance(obj, dict) and (key := next((k for k in NESTED_STATE_DICT_KEYS if isinstance(obj.get(k), dict)), None)):
        obj = obj[key]
    if not isinstance(obj, dict):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state dict; {PLAIN_TENSORS_ONLY}")
    bad = [f"{k} ({type(v).__name__})" for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{path}: holds non-tensor values: {short_list(bad)}; {PLAIN_TENSORS_ONLY}")
    return obj


def strip_prefix(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop ``prefix`` from every key that has it; keys without it are kept unchanged."""
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state_dict.items()}


@dataclass
class LoadReport:
    """What loading one component found: keys loaded, missing from the file, and left unused."""

    component: str
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    loaded: int = 0

    def __str__(self) -> str:
        head = f"{self.component}: {self.loaded} loaded, {len(self.missing)} missing, {len(self.unexpected)} unexpected"
        parts = [f"{name} {short_list(keys)}" for name, keys in (("missing", self.missing),
                                                                  ("unexpected", self.unexpected)) if keys]
        return head + (": " + "; ".join(parts) if parts else "")


def no_weights_error(source: str, component: str, state_dict: Mapping, expected: Sequence[str],
                     matched: int = 0) -> WeightsError:
    """The error for a file that does not hold ``component`` at all (a foreign model)."""
    found = "none match" if not matched else f"only {matched} of {len(expected)} expected match"
    return WeightsError(f"{source} holds no {component} weights ({len(state_dict)} keys, {found}; "
                        f"first keys: {short_list(list(state_dict), 4)}): expected {short_list(list(expected), 3)}")


def compare_keys(expected: Mapping[str, torch.Tensor | Sequence[int]], state_dict: Mapping[str, torch.Tensor]):
    """Key-by-key comparison: ``(matched, missing, unexpected, wrong_shape)``.

    wrong_shape holds ``(key, shape in file, shape expected)``; matched keys have equal shapes.
    """
    shapes = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in expected.items()}
    matched, missing, wrong = [], [], []
    for key, shape in shapes.items():
        if key not in state_dict:
            missing.append(key)
        elif tuple(state_dict[key].shape) != shape:
            wrong.append((key, tuple(state_dict[key].shape), shape))
        else:
            matched.append(key)
    unexpected = [k for k in state_dict if k not in shapes]
    return matched, missing, unexpected, wrong


def check_state_dict(expected: Mapping[str, torch.Tensor | Sequence[int]], state_dict: Mapping[str, torch.Tensor],
                     component: str, source: str,
                     allow_missing: Callable[[str], bool] | None = None) -> LoadReport:
    """Check ``state_dict`` against ``expected`` shapes; raise :class:`WeightsError` unless it fits.

    Refused: under half of the expected keys present (a foreign file), any shape mismatch, any
    missing key that ``allow_missing`` does not accept. Unexpected keys are only reported.
    """
    matched, missing, unexpected, wrong = compare_keys(expected, state_dict)
    if expected and (2 * (len(matched) + len(wrong)) < len(expected) or not (matched or wrong)):
        raise no_weights_error(source, component, state_dict, list(expected), len(matched) + len(wrong))
    if wrong:
        details = "; ".join(f"{k}: file {tuple(a)} vs model {tuple(b)}" for k, a, b in wrong[:4])
        more = f" (+{len(wrong) - 4} more)" if len(wrong) > 4 else ""
        raise WeightsError(f"{source}: {len(wrong)} {component} weights have other shapes than this model "
                           f"config expects: {details}{more}; the file is for another model size or family")
    refused = [k for k in missing if allow_missing is None or not allow_missing(k)]
    if refused:
        raise WeightsError(f"{source} lacks {len(refused)} {component} weights: {short_list(refused)}; "
                           f"expected a complete {component} state dict")
    return LoadReport(component, missing=missing, unexpected=unexpected, loaded=len(matched))


def load_component(module: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], component: str, source: str,
                   allow_missing: Callable[[str], bool] | None = None) -> LoadReport:
    """Check ``state_dict`` against ``module`` (see :func:`check_state_dict`), then load it.

    A module built on the meta device gets the file's tensors assigned instead of copied into it.
    """
    expected = module.state_dict()
    report = check_state_dict(expected, state_dict, component, source, allow_missing)
    on_meta = any(t.is_meta for t in expected.values())
    module.load_state_dict({k: state_dict[k] for k in expected if k in state_dict}, strict=False, assign=on_meta)
    return report
