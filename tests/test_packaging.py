"""The package installs with what it needs: the bundled demo model travels as package data."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_carries_the_demo_model_and_its_sample(tmp_path):
    from emo_models.demo import ASSETS

    source = tmp_path / "src"  # a copy: building in the checkout would leave build/ and *.egg-info there
    shutil.copytree(ROOT / "emo_models", source / "emo_models", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
                          "--no-index", "-q", "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (wheel,) = tmp_path.glob("emo_comfy-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    bundled = {f"emo_models/demo/assets/{p.relative_to(ASSETS).as_posix()}" for p in ASSETS.rglob("*") if p.is_file()}
    assert bundled and bundled <= names
    assert "emo_models/__main__.py" in names and not any(n.startswith(("tests/", "nodes/")) for n in names)


def test_pyproject_dependencies_are_requirements_txt():
    """Two files for two installers (pip install . / ComfyUI-Manager's requirements.txt) must agree."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)^\]", pyproject, re.MULTILINE | re.DOTALL).group(1)
    declared = {d.strip().strip('",') for d in block.splitlines() if d.strip()} - {"torch>=2.1"}
    required = {line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert declared == required
