"""``init``, ``convert`` and ``inspect``: make a native EMO checkpoint from parts or from an open family's
release, and say what a weights file is."""

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


def add_convert_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``convert`` (the family table: emo_models.families.FAMILIES)."""
    from .families import FAMILIES

    variants = sorted({v for family in FAMILIES.values() for v in family.variants})
    parser.description = ("Convert an open EMO-family release, as its users download it, to a native EMO "
                          "checkpoint folder (config.json with the family's generation preset + one safetensors per "
                          "component), keeping the release's precisions. The release folder itself also loads "
                          "directly; a native folder loads faster and needs no .pth unpickling.")
    parser.add_argument("--from", dest="family", required=True, choices=sorted(FAMILIES),
                        help="the family whose release SOURCE is")
    parser.add_argument("source", help="the release folder (e.g. EchoMimic's pretrained_weights/, Hallo's "
                                       "pretrained_models/)")
    parser.add_argument("out", help="native checkpoint folder to write (e.g. ComfyUI/models/emo/echomimic)")
    parser.add_argument("--variant", default=None, choices=variants or None,
                        help="which weight set of the release (EchoMimic: standard, or acc = the *_acc.pth 6-step "
                             "weights); default: the standard one, else the only one present")


def run_convert(args) -> int:
    """Write a family release as a native EMO checkpoint folder."""
    from .loading import convert_release

    out, reports = convert_release(args.family, args.source, args.out, variant=args.variant)
    for report in reports:
        print(report)
    print(f"wrote EMO checkpoint {out} (from {args.family}{f' {args.variant}' if args.variant else ''} release "
          f"{args.source})")
    return 0


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``inspect``."""
    parser.add_argument("path", help="a weights file (.safetensors, .ckpt, .pth, .bin) or a model folder")


def run_inspect(args) -> int:
    """Describe a weights file or folder."""
    from .weights.inspect import describe

    print(describe(args.path))
    return 0
