"""emo_models: EMO (Emote Portrait Alive) as a plain PyTorch package, free of ComfyUI.

Importing this package is cheap; the model, weights and pipeline live in submodules.
"""

from __future__ import annotations

import re
from pathlib import Path


def package_version() -> str:
    """emo-comfy's version: ``pyproject.toml``'s (its one owner) in a checkout, else the installed package's."""
    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    text = pyproject.read_text() if pyproject.is_file() else ""
    found = re.search(r'^version\s*=\s*"([^"]+)"', text, re.MULTILINE)
    if found and re.search(r'^name\s*=\s*"emo-comfy"', text, re.MULTILINE):
        return found.group(1)
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("emo-comfy")
    except PackageNotFoundError:
        return "unknown"


__version__ = package_version()
