"""The option table and the Python API's tensor checks: every refusal names the input, the value, what is
expected and what to do; what is accepted on purpose is accepted."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

from emo_models.config import demo_config, full_config, tiny_config
from emo_models.devices import resolve_device
from emo_models.media import prepare_waveform
from emo_models.options import OPTIONS, check_frame_size, check_option, markdown_table
from emo_models.render import RenderSettings
from emo_models.validation import InputError, check_face_mask, image_tensor, size_multiple


def flag(name: str) -> str:
    return OPTIONS[name].flag


# ---- options ---------------------------------------------------------------------------------------

OPTION_CASES = [  # (option, value, label, exact message)
    ("fps", 0, "--fps", "--fps: 0 is below the minimum 1. It is the video frame rate in frames per second; "
                        "give 1 to 120"),
    ("fps", 1000, "--fps", "--fps: 1000 is above the maximum 120. It is the video frame rate in frames per second; "
                           "give 1 to 120"),
    ("fps", float("inf"), "--fps", "--fps: inf is not a finite number. It is the video frame rate in frames per "
                                   "second; give 1 to 120"),
    ("width", 0, "--width", "--width: 0 is below the minimum 16. It is the video width in pixels, a multiple of "
                            "the model's latent block (64 at SD-1.5 size; up to twice the 512 it was trained at); "
                            "give 16 to 1024"),
    ("cfg", -1, "--cfg", "--cfg: -1 is below the minimum 1. It is the guidance scale, unconditional vs full: 2 "
                         "passes per step (1 = off); give 1 to 20"),
    ("cfg", float("nan"), "--cfg", "--cfg: nan is not a number. It is the guidance scale, unconditional vs full: 2 "
                                   "passes per step (1 = off); give 1 to 20"),
    ("speed", 1e30, "--speed", "--speed: 1e+30 is above the maximum 4. It is the head motion in degrees per frame "
                               "(speech 0.1-1.0, singing 1.0-1.3); give 0 to 4"),
    ("seed", 2**70, "--seed", "--seed: 1180591620717411303424 is above the maximum 18446744073709551615. It is the "
                              "noise seed (the same seed and inputs give the same video); give 0 to "
                              "18446744073709551615, e.g. 0"),
    ("seed", -1, "seed", "seed: -1 is below the minimum 0. It is the noise seed (the same seed and inputs give the "
                         "same video); give 0 to 18446744073709551615, e.g. 0"),
    ("steps", 0, "steps", "steps: 0 is below the minimum 1. It is the denoising steps per clip (paper: 40; at most "
                          "the scheduler's 1000 training timesteps); give 1 to 1000"),
    ("steps", 2.5, "steps", "steps: 2.5 is not a whole number. It is the denoising steps per clip (paper: 40; at "
                            "most the scheduler's 1000 training timesteps); give 1 to 1000"),
    ("steps", True, "steps", "steps: True is not a number. It is the denoising steps per clip (paper: 40; at most "
                             "the scheduler's 1000 training timesteps); give 1 to 1000"),
    ("upscale", 0, "--upscale", "--upscale: 0 is below the minimum 1. It is the enlargement of the frames in the "
                                "mp4, nearest neighbour (4: 64x64 becomes 256x256); give 1 to 16"),
    ("motion_frames", 17, "motion_frames", "motion_frames: 17 is above the maximum 16. It is the frames of the "
                                           "previous clip each clip continues from (paper: 4); give 0 to 16"),
    ("duration", -0.5, "duration", "duration: -0.5 is below the minimum 0. It is the length of the audio span in "
                                   "seconds (0 = to the end); give 0 to 86400, e.g. 0"),
]


@pytest.mark.parametrize("name,value,label,message", OPTION_CASES)
def test_an_option_out_of_range_is_refused_naming_it_with_its_range(name, value, label, message):
    with pytest.raises(InputError) as err:
        check_option(name, value, label)
    assert str(err.value) == message


@pytest.mark.parametrize("name,value,expected", [
    ("fps", 25, 25.0), ("fps", np.float32(29.97), float(np.float32(29.97))), ("steps", 40.0, 40),
    ("seed", np.int64(7), 7), ("seed", 2**64 - 1, 2**64 - 1), ("speed", 0, 0.0), ("cfg", 1, 1.0),
])
def test_values_in_range_come_back_as_the_options_kind(name, value, expected):
    out = check_option(name, value)
    assert out == expected and type(out) is OPTIONS[name].kind


def test_the_cli_parses_through_the_same_table():
    parser = argparse.ArgumentParser(prog="generate", exit_on_error=False)
    for name in ("fps", "seed", "steps"):
        parser.add_argument(OPTIONS[name].flag, type=OPTIONS[name].parse)
    assert parser.parse_args(["--fps", "30", "--seed", "0x10", "--steps", "12"]) == argparse.Namespace(
        fps=30.0, seed=16, steps=12)
    for argv, message in ((["--fps", "0"], "0 is below the minimum 1. It is the video frame rate"),
                          (["--fps", "fast"], "'fast' is not a number. It is the video frame rate"),
                          (["--steps", "2.5"], "'2.5' is not a whole number. It is the denoising steps")):
        with pytest.raises(argparse.ArgumentError, match=message):
            parser.parse_args(argv)


def test_node_inputs_declare_the_same_ranges():
    kind, spec = OPTIONS["cfg_audio"].node_input(default=3.5, step=0.1)
    assert kind == "FLOAT" and (spec["min"], spec["max"], spec["default"], spec["step"]) == (1.0, 20.0, 3.5, 0.1)
    assert spec["tooltip"].startswith("guidance towards the audio") and "1 to 20" in spec["tooltip"]
    assert OPTIONS["seed"].node_input()[1]["max"] == 0xFFFFFFFFFFFFFFFF
    kind, spec = OPTIONS["steps"].node_input(unset=0)  # a widget's "from the checkpoint" sits below the range
    assert (kind, spec["min"], spec["max"], spec["default"]) == ("INT", 0, 1000, 0)
    assert spec["tooltip"].endswith("; 0 = from the checkpoint")
    assert OPTIONS["steps"].unset_to_none(0, 0) is None and OPTIONS["steps"].unset_to_none(12, 0) == 12
    assert OPTIONS["cfg"].unset_to_none(0.5, 0.0) == 0.5  # below the range but not unset: checked, refused


def test_sizes_must_be_multiples_of_the_models_latent_block():
    assert [size_multiple(c()) for c in (full_config, tiny_config, demo_config)] == [64, 16, 8]
    assert check_frame_size(full_config(), 512, 448) == (512, 448)
    assert check_frame_size(full_config(), None, None) == (512, 512)  # None: the checkpoint's
    with pytest.raises(InputError, match=r"^--width: 4096 is above the maximum 1024"):
        check_frame_size(full_config(), 4096, 4096, flag)
    with pytest.raises(InputError, match=r"^height: 500 is not a multiple of 64 \(this model's latent block\); "
                                         r"give e\.g\. 448 or 512$"):
        check_frame_size(full_config(), 512, 500)


def test_settings_are_checked_together_against_the_model():
    tiny = tiny_config()  # f=4, n=2, temporal window 32, 1000 training timesteps
    with pytest.raises(InputError, match=r"^--frames-per-clip \+ --motion-frames: 31 \+ 2 frames exceed this "
                                         r"model's temporal window of 32; lower one of them"):
        RenderSettings.from_config(tiny, frames_per_clip=31, label=flag)
    tiny.scheduler = {**tiny.scheduler, "num_train_timesteps": 100}
    with pytest.raises(InputError, match=r"^steps: 200 is more than this model's 100 training timesteps; give 1 to "
                                         r"100$"):
        RenderSettings.from_config(tiny, steps=200)
    with pytest.raises(InputError, match=r"^speed\[2\]: 9 is above the maximum 4"):
        RenderSettings.from_config(tiny, speed=np.array([0.5, 1.0, 9.0]))
    assert RenderSettings.from_config(tiny, steps=12.0, cfg=2).steps == 12  # as the option's kind


def test_the_table_renders_as_markdown_with_every_option():
    table = markdown_table().splitlines()
    assert table[0] == "| option | range | default | meaning |" and len(table) == 2 + len(OPTIONS)
    assert "| `--fps` | 1 to 120 | from the checkpoint |" in markdown_table()
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert markdown_table() in readme, "README's option table differs from emo_models.options.OPTIONS"


# ---- tensors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("image,message", [
    (torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.int16), r"^image: torch.int16 pixels; give float in \[0, 1\] "
                                                              r"or uint8 0..255$"),
    (torch.rand(1, 3, 64, 64) * 255, r"^image: values span \[.*\]; expected \[0, 1\] \(use from_model_range for "
                                     r"\[-1, 1\] images, divide by 255 for 0..255\)$"),
    (torch.rand(2, 3, 64, 64), r"^image: a batch of 2 images; give one portrait \(1, 3, H, W\)$"),
    (torch.rand(1, 3, 8, 64), r"^image: 64x8 pixels is too small; give an image of at least 16x16$"),
    ("face.png", r"^image: expected a torch.Tensor or numpy array \(1, 3, H, W\) in \[0, 1\], got str$"),
])
def test_a_portrait_the_models_cannot_read_is_refused_with_the_remedy(image, message):
    with pytest.raises(InputError, match=message):
        image_tensor(image)


def test_portraits_are_accepted_channels_last_uint8_and_unbatched():
    pixels = torch.randint(0, 256, (40, 48, 3), dtype=torch.uint8)
    expected = pixels.permute(2, 0, 1)[None].float() / 255
    for image in (pixels, pixels[None], pixels.numpy(), expected[0], expected, expected.permute(0, 2, 3, 1).double()):
        out = image_tensor(image)
        assert out.shape == (1, 3, 40, 48) and out.dtype == torch.float32 and torch.allclose(out, expected)


@pytest.mark.parametrize("wave,message", [
    (np.zeros((16000, 2), np.float32) + 0.1, r"^audio: shape \(16000, 2\) looks like \(T, C\); expected \(C, T\), "
                                             r"transpose the waveform \(wave.T\)$"),
    (np.full(16000, np.nan, np.float32), r"^audio: 16000 samples are NaN or inf; re-export or re-decode the clip$"),
    (np.zeros(16000, np.float32), r"^audio: silent \(peak 0\); give a clip with speech or singing$"),
    (np.zeros(0, np.float32), r"^audio: empty \(0 samples\); give a clip with speech or singing$"),
])
def test_a_waveform_the_encoder_cannot_read_is_refused_with_the_remedy(wave, message):
    with pytest.raises(InputError, match=message):
        prepare_waveform(wave, 16000)


def test_waveforms_of_any_amplitude_and_integer_pcm_are_accepted():
    pcm = (np.sin(np.arange(1600) / 5) * 20000).astype(np.int16)
    out = prepare_waveform(pcm, 16000)
    assert out.dtype == np.float32 and out.shape == (1600,) and float(np.abs(out).max()) > 19000


@pytest.mark.parametrize("mask,message", [
    (torch.ones(1, 1, 32, 64), r"^face_mask: 64x32 pixels; it is drawn on the 64x64 image, so give it that size "
                               r"\(or the same aspect ratio\)$"),
    (torch.ones(2, 3, 64, 64), r"^face_mask: shape \(2, 3, 64, 64\); expected a mask \(H, W\), \(B, H, W\) or "
                               r"\(B, 1, H, W\)$"),
    (torch.full((64, 64), 255.0), r"^face_mask: values span \[255, 255\]; expected \[0, 1\] \(divide 0..255 by 255\)$"),
    (torch.full((64, 64), 255, dtype=torch.uint8), r"^face_mask: \(64, 64\) of torch.uint8; expected float"),
    (torch.full((64, 64), float("nan")), r"^face_mask: contains NaN or inf"),
    ("mask.png", r"^face_mask: expected a torch.Tensor \(1, 1, H, W\) in \[0, 1\], got str$"),
])
def test_a_face_mask_of_another_shape_or_range_is_refused(mask, message):
    with pytest.raises(InputError, match=message):
        check_face_mask(mask, 64, 64)


def test_face_masks_are_accepted_as_bool_numpy_batches_or_the_same_aspect_at_another_size():
    for mask in (torch.ones(64, 64, dtype=torch.bool), torch.ones(1, 64, 64), torch.ones(2, 1, 64, 64),
                 np.ones((64, 64), np.float32), torch.ones(1, 1, 32, 32)):
        out = check_face_mask(mask, 64, 64)
        assert out.ndim == 4 and out.shape[1] == 1 and out.dtype == torch.float32 and float(out.min()) == 1.0


# ---- devices ---------------------------------------------------------------------------------------

def test_a_gpu_that_is_not_there_is_refused_before_loading(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match=r"^--device: 'cuda' asked for, but this machine has no usable cuda device "
                                         r"\(torch .*\); use cpu or auto, or install a torch build for your GPU$"):
        resolve_device("cuda", "--device")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(InputError, match=r"^--device: 'cuda:1' asked for, but there is only 1 cuda device \(0 to 0\)$"):
        resolve_device("cuda:1", "--device")
    assert resolve_device("cuda:0") == torch.device("cuda:0") and resolve_device("auto") == torch.device("cuda")
    assert resolve_device(" CPU ") == torch.device("cpu")
