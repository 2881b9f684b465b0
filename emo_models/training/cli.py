"""``python -m emo_models train``: one stage of the paper's recipe (see :func:`.train.train`).

Runs as is on one CPU or GPU; data-parallel with ``accelerate launch --multi_gpu --num_processes N -m
emo_models train …`` on GPUs or ``torchrun --nproc_per_node N -m emo_models train …`` on CPUs
(``--batch-size`` is per process).
"""

from __future__ import annotations


def run_train(args) -> int:
    """The command line's options, passed to :func:`train` by name."""
    import dataclasses

    from accelerate import PartialState

    from .train import TrainOptions, train

    names = {f.name for f in dataclasses.fields(TrainOptions)}
    options = {key: value for key, value in vars(args).items() if key in names}
    result = train(args.stage, args.data, args.init, args.out, **options)
    if not PartialState().is_main_process:
        return 0
    if result.losses:
        last = max(result.losses)
        print(f"stage {args.stage}: step {result.steps}, loss {result.losses[last]:.4f}; "
              f"checkpoint {result.checkpoint}")
    else:
        print(f"stage {args.stage}: already at step {result.steps}; checkpoint {result.checkpoint}")
    return 0


def add_train_arguments(t) -> None:
    """Options of ``python -m emo_models train`` (listed in :data:`emo_models.cli.COMMANDS`)."""
    t.description = ("Train one stage of EMO's recipe on a prepared clip dataset; resumes from --out's latest "
                     "checkpoint when there is one.")
    t.add_argument("--stage", type=int, required=True, choices=[1, 2, 3],
                   help="1: images (backbone, ReferenceNet, face locator); 2: video (+ temporal, audio); "
                        "3: speed (temporal + speed layers only)")
    t.add_argument("--data", required=True, help="prepared clip dataset folder (index.json + clips/)")
    t.add_argument("--init", default=None,
                   help="EMO checkpoint to start from, or the previous stage's --out (default: none, to resume --out)")
    t.add_argument("--out", required=True, help="checkpoints, log.csv and tensorboard/ go here")
    t.add_argument("--steps", type=int, default=1000, help="train until this global step")
    t.add_argument("--batch-size", type=int, default=1, help="samples per process per step")
    t.add_argument("--lr", type=float, default=1e-5, help="learning rate (the paper's 1e-5)")
    t.add_argument("--weight-decay", type=float, default=1e-2, help="AdamW weight decay")
    t.add_argument("--adam-epsilon", type=float, default=1e-8, help="AdamW epsilon")
    t.add_argument("--lr-warmup-steps", type=int, default=0, help="linear learning-rate warm-up steps")
    t.add_argument("--max-grad-norm", type=float, default=1.0, help="0: no clipping")
    t.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"],
                   help="autocast precision of the forward pass")
    t.add_argument("--gradient-checkpointing", action="store_true", help="recompute activations: less memory, "
                   "slower steps")
    t.add_argument("--ema", type=float, default=None, help="EMA decay of the trained weights (e.g. 0.9999); off by default")
    t.add_argument("--save-every", type=int, default=500, help="checkpoint every K steps (and at the end)")
    t.add_argument("--keep-checkpoints", type=int, default=None, help="keep only the newest K checkpoints (default: all)")
    t.add_argument("--seed", type=int, default=0, help="seed of the data order, noise and dropout")
    t.add_argument("--resume", default=None, action="store_true",
                   help="require a checkpoint in --out to resume from (default: resume when there is one)")
    t.add_argument("--no-resume", dest="resume", action="store_false", help="start over even if --out has checkpoints (default: resume)")
    t.add_argument("--log-every", type=int, default=1, help="write log.csv every K steps")
    t.add_argument("--num-workers", type=int, default=0, help="data-loading worker processes")
    # what each sample is conditioned on (training/conditions.py; the defaults are TrainOptions', a test checks)
    for flag, default, text in (
        ("--drop-both", 0.05, "share of samples in the unconditional case: without the checkpoint's uncond_drops, "
                              "the pass guidance contrasts with (the three --drop-* cases are exclusive)"),
        ("--drop-audio", 0.05, "share of samples without the uncond_drops but the reference (in stages 2, 3: no "
                               "audio): the middle pass of separate reference/audio guidance scales"),
        ("--drop-reference", 0.0, "share of samples without the reference alone (no inference pass uses it)"),
        ("--first-clip", 0.1, "share of video samples trained as a video's first clip: the reference is the frame "
                              "before the targets, the motion frames the checkpoint's first_clip_motion"),
        ("--motion-noise", 0.0, "Gaussian noise of a random level up to this (latent units) on continuing motion "
                                "frames, so errors are not copied from clip to clip"),
    ):
        t.add_argument(flag, type=float, default=default, help=text)
    t.add_argument("--motion-round-trip", action="store_true",
                   help="continuing motion frames go through the VAE and back, as generation re-encodes the "
                        "previous clip's decoded frames")
    t.add_argument("--face-weight", type=float, default=1.0, help="loss weight inside the face box (1: plain MSE)")
    t.add_argument("--lip-weight", type=float, default=1.0,
                   help="loss weight over the lip region, the lower middle of the face box (1: plain MSE)")
    t.add_argument("--cpu", action="store_true", help="train on CPU even when a GPU is present")
