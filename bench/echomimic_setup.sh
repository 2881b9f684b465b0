#!/usr/bin/env bash
# Idempotent setup for the EchoMimic reference harness (a check tool, not part of the product).
#  1. extracts EchoMimic's source from a git snapshot to $ECHO_SRC (default /tmp/echo-src);
#     nothing of it is ever copied into this repository
#  2. creates $ECHO_VENV (default /tmp/echo-venv), without the system site-packages, holding
#     torch==2.13.0 CPU (installed first, from local disk) and EchoMimic's pinned packages
#     (diffusers 0.24.0, einops 0.4.1, omegaconf 2.3.0, ffmpeg-python 0.2.0) plus what they need;
#     a constraints file keeps pip from ever replacing torch.
# Usage: ECHO_GIT=<git dir of a fetched antgroup/echomimic> bench/echomimic_setup.sh
set -euo pipefail

ECHO_GIT="${ECHO_GIT:?set ECHO_GIT to the git dir of a fetched antgroup/echomimic snapshot}"
ECHO_SRC="${ECHO_SRC:-/tmp/echo-src}"
ECHO_VENV="${ECHO_VENV:-/tmp/echo-venv}"
PY="${PYTHON:-python3}"
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT
echo "torch==2.13.0" > "$CONSTRAINTS"

say() { echo "[echomimic_setup] $*"; }

want="$(git --git-dir="$ECHO_GIT" rev-parse HEAD)"
if [[ -f "$ECHO_SRC/.echomimic_commit" && "$(cat "$ECHO_SRC/.echomimic_commit")" == "$want" ]]; then
  say "EchoMimic source already at $ECHO_SRC (commit $want) - kept"
else
  say "extracting EchoMimic $want to $ECHO_SRC (without the 2 MB of pose-demo pickles)"
  rm -rf "$ECHO_SRC" && mkdir -p "$ECHO_SRC"
  git --git-dir="$ECHO_GIT" archive "$want" | tar x -C "$ECHO_SRC" --exclude='assets/test_pose_demo_pose'
  echo "$want" > "$ECHO_SRC/.echomimic_commit"
fi

[[ -x "$ECHO_VENV/bin/python" ]] || { say "creating venv $ECHO_VENV"; "$PY" -m venv "$ECHO_VENV"; }
VPY="$ECHO_VENV/bin/python"
if [[ "$("$VPY" -c 'import torch;print(torch.__version__)' 2>/dev/null || true)" != 2.13.0* ]]; then
  say "installing torch==2.13.0 (CPU wheel from local disk) first"
  "$VPY" -m pip install -q -c "$CONSTRAINTS" "torch==2.13.0"
fi
REQS=(
  "diffusers==0.24.0" "transformers==4.39.2" "huggingface_hub==0.25.2" "accelerate==0.28.0"
  "einops==0.4.1" "omegaconf==2.3.0" "ffmpeg-python==0.2.0" "numpy==1.26.4" "tqdm"
  "safetensors" "soundfile" "Pillow"
)
say "installing ${REQS[*]}"
"$VPY" -m pip install -q -c "$CONSTRAINTS" "${REQS[@]}"
tv="$("$VPY" -c 'import torch;print(torch.__version__)')"
[[ "$tv" == "2.13.0+cpu" ]] || { echo "[echomimic_setup] torch is $tv, expected 2.13.0+cpu" >&2; exit 1; }
say "smoke-importing EchoMimic through the harness"
"$VPY" "$(dirname "$0")/echomimic_reference.py" --check-import --echomimic "$ECHO_SRC"
say "done: source $ECHO_SRC, venv $ECHO_VENV"
