"""Make the Hallo parity fixture committed as tests/fixtures/hallo_micro/ (configs + Hallo's outputs, < 1 MB).

    /tmp/hallo-venv/bin/python bench/hallo_fixture.py OUT_DIR [--seed 0] [--input-seed 1234]
        [--tool DIR]   (default $HALLO_REFERENCE_TOOL or /work/shared/tools/hallo-reference)

Runs the hallo-reference tool (its README: a copy of Hallo's public code outside this repository,
never committed) unchanged, except for one size preset: ``make_random_release.build_spec`` is
wrapped so its ``--tiny`` spec shrinks further — 128x128 pixels (the deepest level stays 2x2: at 1x1
a GroupNorm group holds one value and rounding noise dominates), 8 frames per clip (Hallo's own code
for other clip lengths), UNet width 32 at all four levels with one layer per block (every module type still present; the tool's ``--tiny`` run, 32/64/128/128 with
two layers, is the one that exercises the narrower audio-module widths), cross-attention and audio
width 32, a 32-wide VAE — and weights are stored in fp16, as Hallo ships net.pth. Hallo's own modules then run on that release
(``reference_outputs.py``: audio, one CFG forward, 2 clips x 2 DDIM steps).

OUT_DIR receives the release's config files and ``harness.json`` (the weights, several MB, are not
kept: tests/hallo_tool_release.py rebuilds them bit for bit from the seed; FIXTURE.json records their
digests) and ``reference.safetensors`` holding the inputs and the compared outputs
except the decoded video (3 MB; the second clip's latents already depend on the first clip's decode).
The SD-1.5 UNet weights and the motion-module file are left out: Hallo's net.pth overrides both, so
neither is read (a test checks a release without them loads).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

DEFAULT_TOOL = os.environ.get("HALLO_REFERENCE_TOOL", "/work/shared/tools/hallo-reference")
KEPT_FILES = ("stable-diffusion-v1-5/unet/config.json", "sd-vae-ft-mse/config.json", "wav2vec/wav2vec2-base-960h/config.json",
              "wav2vec/wav2vec2-base-960h/preprocessor_config.json",
              "wav2vec/wav2vec2-base-960h/feature_extractor_config.json", "harness.json")
WEIGHT_FILES = ("hallo/net.pth", "sd-vae-ft-mse/diffusion_pytorch_model.safetensors",
                "wav2vec/wav2vec2-base-960h/model.safetensors")
KEPT_TENSORS = ("inputs.image_u8", "inputs.source_image_face_region", "inputs.source_image_face_emb",
                "inputs.full_mask", "inputs.face_mask", "inputs.lip_mask", "inputs.waveform", "a.audio_emb",
                "a.audio_length", "b.init_latents", "b.audio_proj_out", "b.noise_pred", "c.timesteps")


def micro_spec(build_spec):
    """The tool's --tiny spec made smaller (sizes above); everything else (constants, kwargs) kept."""
    def build(variant: str, hallo_src: str) -> dict:
        spec = build_spec("tiny", hallo_src)
        ch = [32, 32, 32, 32]
        spec["variant"] = "micro"
        spec["n_sample_frames"] = 8
        spec["unet_config"].update(block_out_channels=ch, layers_per_block=1, cross_attention_dim=32)
        spec["unet_additional_kwargs"]["audio_attention_dim"] = 32
        spec["vae_config"].update(block_out_channels=[32, 32, 32, 32], layers_per_block=1)
        spec["face_locator_kwargs"] = {"conditioning_embedding_channels": ch[0]}
        spec["audio_proj_kwargs"].update(intermediate_dim=32, output_dim=32)
        return spec
    return build


def keep_tensor(name: str) -> bool:
    return name.startswith(KEPT_TENSORS) or (name.startswith("c.clip") and name.endswith(".latents_after"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--seed", type=int, default=0, help="weights seed")
    parser.add_argument("--input-seed", type=int, default=1234, help="inputs seed (image, masks, audio)")
    parser.add_argument("--tool", type=Path, default=DEFAULT_TOOL)
    args = parser.parse_args(argv)
    if not (args.tool / "make_random_release.py").is_file():
        parser.error(f"--tool {args.tool}: no make_random_release.py there; give the hallo-reference tool's folder")
    sys.path.insert(0, str(args.tool))
    import make_random_release
    import reference_outputs
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    make_random_release.build_spec = micro_spec(make_random_release.build_spec)
    work = Path(tempfile.mkdtemp(prefix="hallo-micro-"))
    try:
        release, reference = work / "release", work / "reference.safetensors"
        make_random_release.main([str(release), "--seed", str(args.seed), "--tiny", "--dtype", "fp16"])
        reference_outputs.main([str(release), str(reference), "--input-seed", str(args.input_seed), "--no-bank"])
        out = Path(args.out)
        if out.exists():
            shutil.rmtree(out)
        for rel in KEPT_FILES:
            source, target = release / rel, out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.hallo_tool_release import weights_digest

        digests = {rel: weights_digest(release / rel) for rel in WEIGHT_FILES}
        with safe_open(str(reference), "pt") as f:
            metadata = f.metadata()
        tensors = {k: v for k, v in load_file(str(reference)).items() if keep_tensor(k)}
        save_file(tensors, str(out / "reference.safetensors"), metadata=metadata)
        sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*")) if p.is_file()}
        (out / "FIXTURE.json").write_text(json.dumps({
            "made_by": "bench/hallo_fixture.py", "seed": args.seed, "input_seed": args.input_seed,
            "hallo_commit": json.loads(metadata["harness"])["hallo_commit"], "bytes": sizes,
            "total_bytes": sum(sizes.values()),
            "rebuilt_at_test_time": {"by": "tests/hallo_tool_release.py write_tool_release (the tool's seeded fill)",
                                     "weights_sha256": digests}}, indent=2) + "\n")
        print(f"wrote {out}: {sum(sizes.values()) / 1e6:.2f} MB in {len(sizes)} files")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HALLO_SRC", "/tmp/hallo-src")
    sys.exit(main())
