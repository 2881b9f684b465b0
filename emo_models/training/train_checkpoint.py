"""Training checkpoints, written atomically, and the run's log (tqdm, CSV, TensorBoard).

``OUT/checkpoint-<step>/`` is a native EMO checkpoint (``generate --checkpoint`` reads it; with EMA its
weights are the EMA ones) plus ``training_state/`` (accelerate's ``save_state``: optimizer, lr
scheduler, grad scaler, RNG states of python/numpy/torch per process, EMA; the raw weights only when
the native ones are EMA) and ``progress.json`` (step, stage, seed, batch: where the sampler stands).
It is assembled in ``OUT/.checkpoint-<step>.partial`` and renamed when complete; ``OUT/latest`` names
the newest complete one.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from pathlib import Path

from ..loading import save_pipeline

LATEST = "latest"
STATE = "training_state"
PROGRESS = "progress.json"
LOG = "log.csv"
LOG_FIELDS = ("step", "loss", "lr", "samples_per_s", "seconds")


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step}"


def latest_checkpoint(out: str | Path) -> Path | None:
    """The checkpoint ``OUT/latest`` names, or None when OUT holds no complete one."""
    pointer = Path(out) / LATEST
    if not pointer.is_file():
        return None
    folder = Path(out) / pointer.read_text().strip()
    if not (folder / PROGRESS).is_file():
        raise ValueError(f"{pointer}: names {folder.name}, which is missing or incomplete; "
                         f"point it at a complete checkpoint-<step> folder or remove it to start over")
    return folder


def resolve_init(path: str | Path) -> Path:
    """An EMO checkpoint folder, or a training OUT folder (its latest checkpoint)."""
    path = Path(path)
    return (latest_checkpoint(path) or path) if path.is_dir() else path


def read_progress(checkpoint: str | Path) -> dict:
    return json.loads((Path(checkpoint) / PROGRESS).read_text())


def write_checkpoint(accelerator, pipeline, out: Path, progress: dict, metadata: dict, ema=None,
                     trained=None, keep: int | None = None) -> Path:
    """Write ``OUT/checkpoint-<step>`` on every process's behalf (call on all processes)."""
    step = progress["step"]
    final, staging = out / checkpoint_name(step), out / f".{checkpoint_name(step)}.partial"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        if ema is not None:
            ema.store(trained)
            ema.copy_to(trained)
        try:
            save_pipeline(pipeline, staging, metadata={**metadata, "step": step, "ema": ema is not None})
        finally:
            if ema is not None:
                ema.restore(trained)
        (staging / PROGRESS).write_text(json.dumps(progress, indent=1) + "\n")
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging / STATE))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():  # the same step written again (a run restarted with resume=False)
            os.replace(final, staging.with_suffix(".old"))
        os.replace(staging, final)
        shutil.rmtree(staging.with_suffix(".old"), ignore_errors=True)
        pointer = out / f".{LATEST}.partial"
        pointer.write_text(final.name + "\n")
        os.replace(pointer, out / LATEST)
        if keep:
            steps = sorted(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*"))
            for old in [s for s in steps if s <= step][:-keep]:
                shutil.rmtree(out / checkpoint_name(old))
    accelerator.wait_for_everyone()
    return final


def register_state_hooks(accelerator, raw_weights_in_state: bool) -> None:
    """Keep the model's weights out of ``training_state`` when the native checkpoint beside it holds
    them (no EMA), and load them from there on resume."""

    def before_save(_models, weights, _folder):
        if not raw_weights_in_state:
            weights.clear()

    def before_load(models, folder):
        if not any(Path(folder).glob("model*.safetensors")):
            models.clear()

    accelerator.register_save_state_pre_hook(before_save)
    accelerator.register_load_state_pre_hook(before_load)


class TrainingLog:
    """Loss and throughput: a tqdm bar, ``OUT/log.csv`` (one row per ``log_every`` steps, the window's
    mean loss) and TensorBoard scalars in ``OUT/tensorboard`` when tensorboard is installed. Main
    process only; on resume, CSV rows after the resumed step are dropped."""

    def __init__(self, out: Path, first: int, total: int, name: str, global_batch: int, enabled: bool = True,
                 log_every: int = 1, bar: bool = True):
        from tqdm.auto import tqdm

        self.path, self.total, self.global_batch, self.enabled = out / LOG, total, global_batch, enabled
        self.log_every, self.window = log_every, []
        self.started = self.window_start = time.perf_counter()
        self.bar = tqdm(total=total, initial=first, desc=name, unit="step", disable=not (enabled and bar))
        self.board = None
        if not enabled:
            return
        rows = []
        if first and self.path.is_file():
            with self.path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= first]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.board = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            pass

    def record(self, step: int, loss: float, lr: float) -> None:
        if not self.enabled:
            return
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.4f}")
        self.window.append(loss)
        if step % self.log_every and step != self.total:
            return
        now = time.perf_counter()
        row = dict(step=step, loss=sum(self.window) / len(self.window), lr=lr,
                   samples_per_s=len(self.window) * self.global_batch / max(now - self.window_start, 1e-9),
                   seconds=now - self.started)
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, fieldnames=LOG_FIELDS).writerow(row)
        if self.board is not None:
            for key in ("loss", "lr", "samples_per_s"):
                self.board.add_scalar(f"train/{key}", row[key], step)
        self.window, self.window_start = [], now

    def close(self) -> None:
        self.bar.close()
        if self.board is not None:
            self.board.close()
