"""Singing over music: does isolating the vocals give back the lip sync the band takes away?

Held-out demo-domain clips (identities and voices never seen in training) have their voice mixed, in
the centre, with a seeded synthetic band (emo_models.demo.synthetic_band: drums, bass, chords, panned)
at -3 dB and 0 dB voice-to-band. The bundled demo model animates each portrait from:
- the clean voice (clean_r), the mix (mix_r), and the mix after each separation method (isolated_r);
lip_r is measured as bench/demo_quality.py does (Pearson r of the mouth opening in the frames against
the clip's ground truth). Separation quality: SI-SDR of the isolated vocals (mono) against the clean
voice, beside the mix's own. The last line is the first method's figures, averaged over clips and ratios.

    python bench/singing.py [--clips 8 --seconds 3 --method built-in --method models/.../Kim_Vocal_2.onnx]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_quality import add_held_out_arguments, held_out_renderer, pearson  # noqa: E402

from emo_models.demo.data import held_out_clip  # noqa: E402
from emo_models.demo.synthetic import measure_mouth_opening  # noqa: E402
from emo_models.demo.synthetic_band import mix_voice, synthetic_band  # noqa: E402
from emo_models.vocals import BUILTIN, isolate_vocals, si_sdr  # noqa: E402

RATIOS_DB = (-3.0, 0.0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_held_out_arguments(parser, clips=8, seconds=3.0)
    parser.add_argument("--method", action="append", default=None,
                        help=f"separation method: {BUILTIN!r} or an MDX-Net .onnx path; repeat for several "
                             f"(default: {BUILTIN})")
    args = parser.parse_args(argv)
    methods = args.method or [BUILTIN]
    started = time.time()
    pipeline, render = held_out_renderer(args)
    preset = pipeline.config.generation
    size = pipeline.config.width

    def lip_r(clip, wave) -> float:
        frames = render(clip, np.asarray(wave, np.float32), clip.sample_rate, clip.speed_scale)
        return pearson(measure_mouth_opening(frames, clip.face_box), clip.mouth_open)

    clean, mix, isolated = [], {r: [] for r in RATIOS_DB}, {(m, r): [] for m in methods for r in RATIOS_DB}
    sdr_mix, sdr = {r: [] for r in RATIOS_DB}, {(m, r): [] for m in methods for r in RATIOS_DB}
    for i in range(args.clips):
        clip = held_out_clip(i, seconds=args.seconds, size=size)
        rate = clip.sample_rate
        band = synthetic_band(len(clip.audio) / rate, rate, seed=i)
        clean.append(lip_r(clip, clip.audio))
        line = [f"clip {i:2d}: clean r {clean[-1]:+.3f}"]
        for ratio in RATIOS_DB:
            song = mix_voice(clip.audio, band, ratio)  # (2, T), the voice in the centre
            heard = song.mean(axis=0)
            mix[ratio].append(lip_r(clip, heard))
            sdr_mix[ratio].append(si_sdr(heard, clip.audio))
            line.append(f"{ratio:+g} dB: mix r {mix[ratio][-1]:+.3f} ({sdr_mix[ratio][-1]:+.1f} dB)")
            for method in methods:
                vocals = isolate_vocals(song, rate, method).vocals.mean(axis=0)
                isolated[method, ratio].append(lip_r(clip, vocals))
                sdr[method, ratio].append(si_sdr(vocals, clip.audio))
                line.append(f"{Path(str(method)).name} r {isolated[method, ratio][-1]:+.3f} ({sdr[method, ratio][-1]:+.1f} dB)")
        print(", ".join(line) + f"  [{time.time() - started:.0f} s]", flush=True)

    for method in methods:
        for ratio in RATIOS_DB:
            print(f"{Path(str(method)).name} at {ratio:+g} dB voice-to-band: isolated_r={np.mean(isolated[method, ratio]):.3f} "
                  f"mix_r={np.mean(mix[ratio]):.3f} si_sdr_db={np.mean(sdr[method, ratio]):.2f} "
                  f"(mix {np.mean(sdr_mix[ratio]):.2f})")
    first = methods[0]
    clean_r, mix_r = float(np.mean(clean)), float(np.mean([v for r in RATIOS_DB for v in mix[r]]))
    isolated_r = float(np.mean([v for r in RATIOS_DB for v in isolated[first, r]]))
    si_sdr_db = float(np.mean([v for r in RATIOS_DB for v in sdr[first, r]]))
    recovered = (isolated_r - mix_r) / (clean_r - mix_r) if clean_r != mix_r else float("nan")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; {args.clips} held-out clips of {args.seconds:g} s, {args.steps} "
          f"{preset.scheduler} steps, audio guidance "
          f"{preset.guidance_audio or preset.guidance if args.cfg_audio is None else args.cfg_audio:g}; "
          f"{time.time() - started:.0f} s")
    print(f"compare: isolation ({Path(str(first)).name}) recovers {recovered:.0%} of the lip sync the band takes "
          f"away (target: more than half, isolated_r closer to clean_r than to mix_r); the mix itself scores "
          f"si_sdr {np.mean([v for r in RATIOS_DB for v in sdr_mix[r]]):.2f} dB")
    print(f"singing: clean_r={clean_r:.3f} mix_r={mix_r:.3f} isolated_r={isolated_r:.3f} si_sdr_db={si_sdr_db:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
