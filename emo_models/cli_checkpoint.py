"""``init`` and ``inspect``: make a native EMO checkpoint from parts, and say what a weights file is."""

from __future__ import annotations

import argparse

from .cli import add_force_option


def add_init_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``init``."""
    from .config import CONFIGS

    parser.description = ("Assemble a native EMO checkpoint (config.json + one safetensors per component) from "
                          "parts you have. Every part you do not give stays randomly initialised, as do EMO's "
                          "new layers (audio, face locator, speed, reference-attention): train them, or give "
                          "a trained EMO checkpoint to `generate` instead.")
    parser.add_argument("--out", required=True, help="checkpoint folder to write (e.g. models/emo/my-emo)")
    parser.add_argument("--config", default="full", choices=list(CONFIGS),
                        help="model size: full = SD-1.5 at 512x512 as the paper; tiny = tests; demo = the bundled "
                             "demo model's")
    parser.add_argument("--base", default=None, help="SD-1.5 single file or diffusers folder: backbone, ReferenceNet "
                        "and VAE (default: none, random)")
    parser.add_argument("--vae", default=None, help="a VAE file or folder (default: the base model's, else random)")
    parser.add_argument("--motion-module", default=None, help="AnimateDiff mm_sd_v15_v2 .ckpt/.safetensors for the "
                        "temporal modules (default: none, random)")
    parser.add_argument("--audio-encoder", default=None, help="wav2vec2 folder or .safetensors (default: none, random)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random initialisation")
    add_force_option(parser, "the checkpoint files in an existing, non-empty --out folder (other files there "
                     "are kept)")


def run_init(args) -> int:
    """Write a native EMO checkpoint assembled from SD-1.5, AnimateDiff and wav2vec2 parts; the output
    folder is checked before any part is read, and the report says loudly which parts stay random."""
    import torch

    from .config import get_config
    from .loading import assemble, assembly_report, save_pipeline
    from .weights.native import check_checkpoint_output

    check_checkpoint_output(args.out, force=args.force, option="--out")
    torch.manual_seed(args.seed)
    sources = {"base": args.base, "vae": args.vae, "motion_module": args.motion_module,
               "audio_encoder": args.audio_encoder}
    pipeline, reports = assemble(get_config(args.config), **sources)
    print(assembly_report(pipeline, reports, sources))
    sources = {k: str(v) for k, v in sources.items() if v}
    save_pipeline(pipeline, args.out, metadata={"created_by": "emo_models init", "config": args.config,
                                                "sources": sources, "seed": args.seed},
                  force=args.force, option="--out")
    print(f"wrote EMO checkpoint {args.out} ({args.config})")
    return 0


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``inspect``."""
    parser.add_argument("path", help="a weights file (.safetensors, .ckpt, .pth, .bin) or a model folder")


def run_inspect(args) -> int:
    """Describe a weights file or folder."""
    from .weights.inspect import describe

    print(describe(args.path))
    return 0
