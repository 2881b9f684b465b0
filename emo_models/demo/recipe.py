"""``python -m emo_models train-demo``: the bundled demo model from nothing, in one command.

data (procedural talking faces, :mod:`.data`) -> autoencoder (:mod:`.autoencoder`) -> init
checkpoint -> stage 1 (images) -> stage 2 (video + audio) -> stage 3 (speed), each stage through
:func:`.train.train` exactly as ``python -m emo_models train`` runs it, then the last checkpoint is
exported (fp16 model and VAE, fp32 wav2vec2) to the package's ``assets/demo_model`` (:data:`.DEMO_MODEL`).

Every phase runs a fixed number of steps, so a seed reproduces the checkpoint; ``--minutes`` scales all
of them (30 is the recipe; 0.1 is a smoke test). Where it departs from the paper, because the demo
model starts from random weights (no SD-1.5 or AnimateDiff to preserve) and has 30 minutes of 2 CPU
cores instead of days of GPUs:
- lr 3e-4 (the paper: 1e-5) after a 20-step warm-up;
- v-prediction (the demo config's scheduler): a fresh model learns to rebuild the reference at high
  noise far sooner than with epsilon-prediction, whose high-noise target is the input itself;
- the loss weighs the face box 2x and its lip region 10x (Hallo-style region weighting): the lips are
  about 5% of the latent and would otherwise be the last thing the model learns;
- the ReferenceNet starts as a copy of the backbone, as both start from SD-1.5 in the paper;
- 10% of samples train the unconditional case and 10% the reference-only one (exclusive cases; the
  paper's family drops ~5% each, independently), so audio guidance has a branch worth contrasting with;
- against drift over long videos: 15% of video samples are first clips (motion frames = the reference
  repeated, the checkpoint's policy), and continuing motion frames go through the VAE and back with
  noise up to 0.5, as generation re-encodes its own decoded frames (:mod:`..training.conditions`).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

REFERENCE_MINUTES = 30.0


@dataclass(frozen=True)
class DemoRecipe:
    """The recipe's sizes; step counts are for ``minutes = 30`` on 2 CPU cores and scale with it."""

    minutes: float = REFERENCE_MINUTES
    clips: int = 100
    seconds: float = 4.0
    ae_steps: int = 400
    ae_batch: int = 16
    ae_lr: float = 1e-3
    ae_face_weight: float = 2.0
    ae_lip_weight: float = 6.0
    stage_steps: tuple[int, int, int] = (250, 500, 200)
    stage_batch: tuple[int, int, int] = (8, 2, 2)
    lr: float = 3e-4
    warmup: int = 20
    face_weight: float = 2.0
    lip_weight: float = 10.0
    drop_both: float = 0.1
    drop_audio: float = 0.1
    drop_reference: float = 0.0
    first_clip: float = 0.15
    motion_noise: float = 0.5
    motion_round_trip: bool = True
    threads: int = 2

    def steps(self, planned: int) -> int:
        """A planned step count scaled to ``minutes`` (at least 1)."""
        return max(1, int(round(planned * self.minutes / REFERENCE_MINUTES)))


@dataclass
class DemoRun:
    """What ``train_demo`` did: seconds per phase, AE mouth fidelity, checkpoint paths."""

    seconds: dict[str, float] = field(default_factory=dict)
    final_loss: dict[str, float] = field(default_factory=dict)
    ae_mouth_r: float = float("nan")
    checkpoint: Path | None = None
    exported: Path | None = None


def _timed(run: DemoRun, phase: str, log):
    class Timer:
        def __enter__(self):
            self.start = time.monotonic()
            log(f"[train-demo] {phase} ...")

        def __exit__(self, *exc):
            run.seconds[phase] = round(time.monotonic() - self.start, 1)
            if exc[0] is None:
                log(f"[train-demo] {phase}: {run.seconds[phase]:.0f} s")

    return Timer()


def typical_face_box(data: Path) -> list[float]:
    """Median over a dataset's clips of their face box (x0, y0, x1, y1): the demo's default face mask."""
    index = json.loads((data / "index.json").read_text())
    boxes = [np.load(data / "clips" / c / "boxes.npy")[0] for c in index["clips"]]
    return [float(v) for v in np.median(np.stack(boxes), axis=0)]


def export_demo_checkpoint(checkpoint: Path, folder: Path, metadata: dict) -> Path:
    """Rewrite a training checkpoint as the shipped demo model: fp16 except wav2vec2 (kept fp32).

    ``folder``'s checkpoint files are replaced (other files in it are kept)."""
    from ..weights.native import load_checkpoint, save_checkpoint

    config, state_dicts = load_checkpoint(checkpoint)
    half = {name: {k: (v.half() if v.is_floating_point() and name != "audio_encoder" else v) for k, v in sd.items()}
            for name, sd in state_dicts.items()}
    return save_checkpoint(folder, config, half, metadata, force=True)


def write_demo_sample(assets: Path, seconds: float = 4.0) -> dict:
    """The bundled sample: held-out clip :data:`.data.SAMPLE_INDEX`'s first frame (PNG, 64x64) and
    its voice (16 kHz WAV); returns their description (seed, face box)."""
    import soundfile as sf
    from PIL import Image

    from .data import SAMPLE_INDEX, held_out_clip, held_out_seed

    clip = held_out_clip(SAMPLE_INDEX, seconds=seconds)
    assets.mkdir(parents=True, exist_ok=True)
    Image.fromarray(clip.frames[0]).save(assets / "demo_portrait.png")
    sf.write(assets / "demo_audio.wav", clip.audio, clip.sample_rate, subtype="PCM_16")
    info = {"seed": held_out_seed(SAMPLE_INDEX), "seconds": seconds, "face_box": list(clip.face_box),
            "source": "emo_models.demo.data.held_out_clip(SAMPLE_INDEX), never seen in training"}
    (assets / "demo_sample.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def train_demo(out: str | Path, seed: int = 0, recipe: DemoRecipe = DemoRecipe(), export: str | Path | None = None,
               log=print, command: str | None = None) -> DemoRun:
    """Train the demo model under OUT (data/, init/, stage1-3/); export the result to ``export`` if given."""
    from ..config import demo_config
    from ..loading import build_pipeline, save_pipeline
    from ..training.train import train
    from ..training.train_batch import region_weights
    from ..training.train_checkpoint import latest_checkpoint
    from ..weights.native import check_checkpoint_output
    from .autoencoder import mouth_fidelity, train_autoencoder
    from .data import dataset_frames, held_out_clip, write_demo_dataset

    out, run = Path(out), DemoRun()
    if export is not None:
        check_checkpoint_output(export, force=True, option="export")  # before 20 minutes of training, not after
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(seed)
    config = demo_config()
    pipeline = build_pipeline(config)  # random init; its frozen wav2vec2 makes the cached audio features
    pipeline.model.reference_net.load_state_dict(pipeline.model.backbone.state_dict())
    started = time.monotonic()
    with _timed(run, "data", log):
        data = write_demo_dataset(out / "data", pipeline.audio_encoder, recipe.clips, seconds=recipe.seconds,
                                  size=config.width, fps=config.fps, run_seed=seed)
        # the checkpoint's default face region (its preset) is where the training faces sit
        x0, y0, x1, y1 = typical_face_box(data)
        config.generation = replace(config.generation, face_box=(x0 / config.width, y0 / config.height,
                                                                 x1 / config.width, y1 / config.height))
    with _timed(run, "autoencoder", log):
        frames, boxes = dataset_frames(data, every=2)
        weights = region_weights(torch.from_numpy(boxes), config.height, config.width, recipe.ae_face_weight,
                                 recipe.ae_lip_weight)[:, 0].numpy()
        ae = train_autoencoder(pipeline.vae, frames, steps=recipe.steps(recipe.ae_steps), batch_size=recipe.ae_batch,
                               lr=recipe.ae_lr, seed=seed, weights=weights)
        del frames, weights
        config.vae["scaling_factor"] = ae.scaling_factor
        run.final_loss["autoencoder"] = float(np.mean(ae.losses[-20:]))
        run.ae_mouth_r = mouth_fidelity(pipeline.vae, [held_out_clip(i, seconds=2.0) for i in range(4)])
        log(f"[train-demo] autoencoder: loss {run.final_loss['autoencoder']:.4f}, scaling factor "
            f"{ae.scaling_factor:.3f}, mouth r on held-out reconstructions {run.ae_mouth_r:.3f}")
        save_pipeline(pipeline, out / "init", metadata={"created_by": "emo_models train-demo", "seed": seed},
                      force=True)
    del pipeline
    previous = out / "init"
    for stage, planned, batch in zip((1, 2, 3), recipe.stage_steps, recipe.stage_batch):
        with _timed(run, f"stage{stage}", log):
            result = train(stage, data, previous, out / f"stage{stage}", steps=recipe.steps(planned),
                           batch_size=batch, lr=recipe.lr, lr_warmup_steps=recipe.warmup, seed=seed, save_every=0,
                           resume=False, drop_both=recipe.drop_both, drop_audio=recipe.drop_audio,
                           drop_reference=recipe.drop_reference, first_clip=recipe.first_clip,
                           motion_noise=recipe.motion_noise, motion_round_trip=recipe.motion_round_trip,
                           face_weight=recipe.face_weight, lip_weight=recipe.lip_weight, cpu=True,
                           progress_bar=False, log_every=25)
        losses = [result.losses[k] for k in sorted(result.losses)]
        run.final_loss[f"stage{stage}"] = float(np.mean(losses[-20:])) if losses else float("nan")
        previous = out / f"stage{stage}"
    run.checkpoint = latest_checkpoint(previous)
    run.seconds["total"] = round(time.monotonic() - started, 1)
    metadata = {"created_by": "emo_models train-demo", "command": command, "seed": seed, "recipe": asdict(recipe),
                "seconds": run.seconds, "final_loss": run.final_loss, "ae_mouth_r": run.ae_mouth_r,
                "face_box": typical_face_box(data), "torch": torch.__version__,
                "threads": torch.get_num_threads()}
    (out / "demo_run.json").write_text(json.dumps(metadata, indent=1) + "\n")
    if export is not None:
        run.exported = export_demo_checkpoint(run.checkpoint, Path(export), metadata)
        write_demo_sample(Path(export).parent)
    log(f"[train-demo] done in {run.seconds['total']:.0f} s: {run.seconds}; checkpoint {run.checkpoint}"
        + (f", exported to {run.exported}" if run.exported else ""))
    return run


def run_train_demo(args) -> int:
    """The ``train-demo`` command."""
    from . import DEMO_MODEL

    recipe = DemoRecipe(minutes=args.minutes, threads=args.threads)
    export = None if args.no_export else Path(args.export or DEMO_MODEL)
    command = "python -m emo_models " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0] else None
    run = train_demo(args.out, seed=args.seed, recipe=recipe, export=export, command=command)
    if args.clean:
        for name in ("data", "init", "stage1", "stage2"):
            shutil.rmtree(Path(args.out) / name, ignore_errors=True)
    return 0 if run.checkpoint else 1


def add_train_demo_arguments(t) -> None:
    """Options of ``python -m emo_models train-demo`` (listed in :data:`emo_models.cli.COMMANDS`)."""
    t.add_argument("--out", required=True, help="working folder: data/, init/, stage1/ ... stage3/")
    t.add_argument("--seed", type=int, default=0, help="seed of the data, the initialisation and every stage")
    t.add_argument("--minutes", type=float, default=REFERENCE_MINUTES,
                   help="scales every phase's step count (30: the recipe that made the bundled model)")
    t.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    t.add_argument("--export", default=None,
                   help="where the final model goes (default: the bundled one, emo_models/demo/assets/demo_model); "
                   "the checkpoint files there are replaced, other files kept")
    t.add_argument("--no-export", action="store_true", help="leave the bundled model untouched")
    t.add_argument("--clean", action="store_true", help="delete data and intermediate stages at the end")
