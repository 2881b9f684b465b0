"""Specification of emo_models.media: image, audio and video I/O on real files."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image
from skimage import data

from emo_models import media


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()  # (512, 512, 3) uint8, a real photo with a face


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory, astronaut) -> str:
    path = tmp_path_factory.mktemp("img") / "astronaut.png"
    Image.fromarray(astronaut).save(path)
    return str(path)


def tone(seconds: float, rate: int, freq: float = 220.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def leftovers(folder) -> list[str]:
    return sorted(os.listdir(folder))


# ---- images --------------------------------------------------------------------------------------


def test_rgb_png_loads_as_1x3xHxW_in_unit_range(astronaut_png, astronaut):
    image = media.load_image(astronaut_png)
    assert image.shape == (1, 3, 512, 512) and image.dtype == torch.float32
    expected = torch.from_numpy(astronaut).permute(2, 0, 1)[None].float() / 255
    assert torch.equal(image, expected)


def test_rgba_is_composited_onto_white(tmp_path, astronaut):
    alpha = np.zeros((512, 512), np.uint8)
    alpha[:, 256:] = 255
    alpha[:10, :10] = 128
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([astronaut, alpha]), "RGBA").save(path)
    image = media.load_image(path)[0]
    assert torch.all(image[:, 20:, :256] == 1.0)  # transparent -> white
    assert torch.equal(image[:, :, 256:], torch.from_numpy(astronaut[:, 256:]).permute(2, 0, 1).float() / 255)
    half = astronaut[0, 0] / 255 * (128 / 255) + (1 - 128 / 255)
    assert np.allclose(image[:, 0, 0].numpy(), half, atol=1e-6)


def test_grayscale_and_16_bit_become_rgb(tmp_path, astronaut):
    gray = np.asarray(Image.fromarray(astronaut).convert("L"))
    Image.fromarray(gray).save(tmp_path / "l.png")
    image = media.load_image(tmp_path / "l.png")
    assert image.shape == (1, 3, 512, 512)
    assert torch.equal(image[0, 0], image[0, 1]) and torch.equal(image[0, 0], image[0, 2])
    assert torch.equal(image[0, 0], torch.from_numpy(gray.copy()).float() / 255)

    deep = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(deep).save(tmp_path / "i16.png")
    image = media.load_image(tmp_path / "i16.png")
    assert image.shape == (1, 3, 48, 64)
    assert float(image.min()) == 0.0 and float(image.max()) == 1.0


def test_palette_transparency_and_cmyk_become_rgb(tmp_path, astronaut):
    palette = Image.fromarray(astronaut).quantize(16)
    palette.info["transparency"] = 0
    palette.save(tmp_path / "p.png", transparency=0)
    image = media.load_image(tmp_path / "p.png")
    index0 = np.asarray(palette) == 0
    assert index0.any() and torch.all(image[0][:, torch.from_numpy(index0)] == 1.0)

    Image.fromarray(astronaut).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    image = media.load_image(tmp_path / "cmyk.jpg")
    assert image.shape == (1, 3, 512, 512)
    assert (image[0].permute(1, 2, 0).numpy() * 255 - astronaut).__abs__().mean() < 6


def test_exif_orientation_is_applied_to_non_square_photo(tmp_path, astronaut):
    wide = astronaut[100:300]  # 200 high, 512 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    Image.fromarray(wide).save(tmp_path / "rot.jpg", exif=exif, quality=95)
    Image.fromarray(wide).save(tmp_path / "wide.png")
    assert media.load_image(tmp_path / "rot.jpg").shape == (1, 3, 512, 200)
    assert media.load_image(tmp_path / "wide.png").shape == (1, 3, 200, 512)


@pytest.fixture
def small_side_bound(monkeypatch):
    """Make the decode bound 128 px so 'huge' images are small enough for a unit test."""
    monkeypatch.setattr(media, "MAX_IMAGE_SIDE", 128)


def test_an_image_over_the_side_bound_is_reduced_while_decoding_and_says_so(tmp_path, astronaut, small_side_bound):
    Image.fromarray(astronaut[:, :384]).save(tmp_path / "big.png")  # 384 wide, 512 high -> factor 4
    with pytest.warns(UserWarning, match=r"big.png is 384x512; read at 96x128 \(images are reduced while decoding "
                                         r"to at most 128 pixels on their longest side\)"):
        image = media.load_image(tmp_path / "big.png")
    expected = Image.fromarray(astronaut[:, :384]).reduce(4)
    assert torch.equal(image[0], torch.from_numpy(np.array(expected)).permute(2, 0, 1).float() / 255)
    assert media.image_size(tmp_path / "big.png") == (384, 512)


def test_reduced_images_keep_exif_orientation_16_bits_and_transparency(tmp_path, astronaut, small_side_bound):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    Image.fromarray(astronaut[100:300]).save(tmp_path / "rot.jpg", exif=exif, quality=95)  # 512 wide, 200 high
    with pytest.warns(UserWarning, match="read at"):
        assert media.load_image(tmp_path / "rot.jpg").shape == (1, 3, 128, 50)
    assert media.image_size(tmp_path / "rot.jpg") == (200, 512)

    deep = np.full((300, 300), 40000, np.uint16)
    Image.fromarray(deep).save(tmp_path / "i16.png")
    with pytest.warns(UserWarning, match="read at 100x100"):
        image = media.load_image(tmp_path / "i16.png")
    assert torch.allclose(image, torch.full_like(image, 40000 / 65535))

    palette = Image.fromarray(astronaut).quantize(16)
    palette.save(tmp_path / "p.png", transparency=0)
    with pytest.warns(UserWarning, match="read at 128x128"):
        image = media.load_image(tmp_path / "p.png")
    assert image.shape == (1, 3, 128, 128) and float(image.max()) == 1.0  # transparent pixels: white


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height (no pixel data): what a decompression bomb looks like."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("width,height", [(13000, 13000), (20000, 20000), (100000, 2000)])
def test_an_image_over_the_pixel_bound_is_refused_from_its_header(tmp_path, width, height):
    path = _png_header_only(tmp_path / "bomb.png", width, height)
    with pytest.raises(ValueError, match=r"image: .*bomb.png (is \d+x\d+ \(\d+ megapixels\), )?(is )?above the 160 "
                                         r"megapixels this reads.*; downscale it to at most 4096 pixels"):
        media.load_image(path)


def test_missing_or_unreadable_image_is_refused_naming_the_path(tmp_path):
    with pytest.raises(ValueError, match=r"image: .*nope\.png does not exist"):
        media.load_image(tmp_path / "nope.png")
    (tmp_path / "junk.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=r"image: could not read .*junk\.png"):
        media.load_image(tmp_path / "junk.png")


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.rand(1, 64, 64, 3), r"photo: expected shape \(B, 3, H, W\).*permute"),
        (torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), r"photo: expected a float tensor.*uint8"),
        (torch.rand(0, 3, 64, 64), r"photo: empty tensor"),
        (torch.rand(1, 3, 8, 64), r"photo: 64x8 pixels is too small.*16x16"),
        (torch.full((1, 3, 32, 32), float("nan")), r"photo: contains NaN"),
        (torch.rand(1, 3, 32, 32) * 2 - 1, r"photo: values span .*expected \[0, 1\].*from_model_range"),
        (np.zeros((1, 3, 32, 32), np.float32), r"photo: expected a torch.Tensor"),
    ],
)
def test_check_image_names_the_input_and_what_was_expected(bad, message):
    with pytest.raises(ValueError, match=message):
        media.check_image(bad, name="photo")


def test_check_image_returns_a_valid_image_unchanged():
    image = torch.rand(2, 3, 16, 20)
    assert media.check_image(image) is image


def test_fit_center_crops_the_middle_and_is_deterministic(astronaut_png):
    image = media.load_image(astronaut_png)
    out = media.fit_image(image, 128, 64)
    assert out.shape == (1, 3, 64, 128)
    assert torch.equal(out, media.fit_image(image, 128, 64))
    # the middle 512x256 band, scaled by 1/4
    band = media.fit_image(image[:, :, 128:384, :], 128, 64, mode="stretch")
    assert torch.allclose(out, band)
    assert 0 <= float(out.min()) and float(out.max()) <= 1


def test_fit_pad_keeps_everything_and_pads_with_edge_mean_or_white(astronaut_png):
    image = media.load_image(astronaut_png)[:, :, :256, :]  # 512 wide, 256 high
    out = media.fit_image(image, 64, 64, mode="pad")
    assert out.shape == (1, 3, 64, 64)
    edge = torch.cat([image[..., 0, :], image[..., -1, :], image[..., :, 0], image[..., :, -1]], -1).mean(-1)
    assert torch.allclose(out[0, :, 0, 0], edge[0]) and torch.allclose(out[0, :, -1, -1], edge[0])
    white = media.fit_image(image, 64, 64, mode="pad", fill="white")
    assert torch.all(white[:, :, :16] == 1.0) and torch.all(white[:, :, 48:] == 1.0)
    assert torch.allclose(white[:, :, 16:48], out[:, :, 16:48])


def test_fit_stretch_ignores_aspect():
    assert media.fit_image(torch.rand(2, 3, 40, 100), 64, 32, mode="stretch").shape == (2, 3, 32, 64)


def test_face_box_centres_the_crop_on_the_face_and_stays_inside_the_image():
    ramp = torch.linspace(0, 1, 400).expand(1, 3, 200, 400).contiguous()  # value = x / 399
    # a 40x40 box around x = 300: grown to a square of 40 -> crop x in [280, 320)
    out = media.fit_image(ramp, 32, 32, box=(280, 80, 320, 120))
    assert abs(float(out.mean()) - 300 / 399) < 0.01
    # a box at the right edge: the crop is pushed back inside the image
    out = media.fit_image(ramp, 32, 32, box=(390, 0, 400, 10))
    assert abs(float(out.mean()) - 395 / 399) < 0.01
    # a box taller than the image: the square crop shrinks to the image height, centred on the box
    out = media.fit_image(ramp, 32, 32, box=(100, -50, 200, 250))
    assert abs(float(out.mean()) - 150 / 399) < 0.01
    with pytest.raises(ValueError, match=r"box: .*outside the 400x200 image"):
        media.fit_image(ramp, 32, 32, box=(500, 0, 600, 10))
    with pytest.raises(ValueError, match=r"needs mode 'center'"):
        media.fit_image(ramp, 32, 32, mode="pad", box=(0, 0, 10, 10))


def test_model_range_round_trips():
    x = torch.rand(2, 3, 16, 16)
    y = media.to_model_range(x)
    assert float(y.min()) >= -1 and float(y.max()) <= 1
    assert torch.allclose(media.from_model_range(y), x, atol=1e-6)
    assert float(media.from_model_range(torch.tensor([1.5, -3.0])).max()) == 1.0


# ---- audio ---------------------------------------------------------------------------------------


def test_stereo_44k_wav_loads_as_mono_16k(tmp_path):
    left, right = tone(1.5, 44100, amp=0.5), np.zeros(int(1.5 * 44100), np.float32)
    soundfile.write(tmp_path / "speech.wav", np.stack([left, right], axis=1), 44100)
    wave = media.load_audio(tmp_path / "speech.wav")
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - 24000) <= 1
    assert abs(float(np.abs(wave[100:-100]).max()) - 0.25) < 0.01  # channels averaged


def test_flac_ogg_and_audio_inside_mp4_load(tmp_path):
    soundfile.write(tmp_path / "a.flac", tone(1.0, 22050), 22050)
    soundfile.write(tmp_path / "a.ogg", tone(1.0, 48000), 48000)
    assert abs(len(media.load_audio(tmp_path / "a.flac", sample_rate=8000)) - 8000) <= 1
    assert abs(len(media.load_audio(tmp_path / "a.ogg")) - 16000) <= 1
    media.write_video(tmp_path / "v.mp4", np.zeros((10, 32, 32, 3), np.uint8), 10, tone(1.0, 16000), 16000)
    wave = media.load_audio(tmp_path / "v.mp4")  # soundfile cannot read mp4: decoded by a fallback
    assert 15000 <= len(wave) <= 18000 and float(np.abs(wave).max()) > 0.3


def test_missing_audio_file_is_refused_naming_the_path(tmp_path):
    with pytest.raises(ValueError, match=r"audio: .*gone\.wav does not exist"):
        media.load_audio(tmp_path / "gone.wav")


def test_prepare_waveform_takes_comfy_audio_batch_mixes_and_resamples():
    stereo = torch.from_numpy(np.stack([tone(2.0, 44100), tone(2.0, 44100)]))[None]  # (1, 2, T)
    wave = media.prepare_waveform(stereo, 44100)
    assert wave.shape == (32000,) and wave.dtype == np.float32
    assert media.prepare_waveform(tone(1.0, 16000), 16000).shape == (16000,)


@pytest.mark.parametrize(
    ("wave", "rate", "message"),
    [
        (
            np.zeros(16000, np.float32),
            16000,
            r"^voice: silent \(peak 0\); give a clip with speech or singing",
        ),
        (np.full(16000, 1e-5, np.float32), 16000, r"^voice: silent \(peak 1e-05\)"),
        (np.zeros((1, 2, 0), np.float32), 16000, r"^voice: empty \(0 samples\)"),
        (np.array([0.1, np.nan, 0.2], np.float32), 16000, r"^voice: 1 samples are NaN or inf"),
        (torch.tensor([0.5, float("inf")]), 16000, r"^voice: 1 samples are NaN or inf"),
        (tone(1.0, 16000), 0, r"^voice: sample rate 0 must be positive"),
        (np.zeros((16000, 2), np.float32), 16000, r"^voice: shape \(16000, 2\) looks like \(T, C\)"),
    ],
)
def test_unusable_audio_is_refused_naming_the_input(wave, rate, message):
    with pytest.raises(ValueError, match=message):
        media.prepare_waveform(wave, rate, name="voice")


def test_trim_audio_cuts_seconds_and_refuses_an_empty_span():
    wave = np.arange(16000 * 3, dtype=np.float32)
    assert np.array_equal(media.trim_audio(wave, 16000, 1.0, 0.5), wave[16000:24000])
    assert len(media.trim_audio(wave, 16000, 2.5)) == 8000
    assert len(media.trim_audio(wave, 16000, 2.5, 10.0)) == 8000  # cut at the end
    assert media.trim_audio(torch.zeros(2, 48000), 16000, 0.0, 1.0).shape == (2, 16000)
    with pytest.raises(ValueError, match=r"audio: 4 s to 5 s holds no samples of the 3\.000 s clip"):
        media.trim_audio(wave, 16000, 4.0, 1.0)
    with pytest.raises(ValueError, match=r"audio: 3 s to the end holds no samples"):
        media.trim_audio(wave, 16000, 3.0)


def test_frame_count_rounds_halves_up_not_to_even():
    assert media.frame_count(16000, 16000, 25) == 25
    assert media.frame_count(1600, 16000, 25) == round(2.5 + 0.5)  # 2.5 frames -> 3 (round() gives 2)
    assert media.frame_count(5600, 16000, 25) == 9  # 8.75
    assert media.frame_count(2240, 16000, 25) == 4  # 3.5 -> 4 (round() also 4)
    assert media.frame_count(600, 16000, 25) == 1  # 0.9375
    assert media.frame_count(0, 16000, 25) == 0
    assert media.frame_count(48048, 48000, 30000 / 1001) == 30  # exactly 30 NTSC frames


# ---- video ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def portrait_frames(astronaut) -> np.ndarray:
    small = np.asarray(Image.fromarray(astronaut).resize((64, 64), Image.BICUBIC))
    return np.stack([np.roll(small, 2 * i, axis=1) for i in range(25)])  # (25, 64, 64, 3)


def test_written_video_reads_back_with_exact_frames_h264_and_audio(tmp_path, portrait_frames):
    audio = tone(3.0, 16000)  # longer than the 1 s of video: cut to it
    path = media.write_video(tmp_path / "out.mp4", portrait_frames, 25, audio, 16000)
    assert path == str(tmp_path / "out.mp4") and leftovers(tmp_path) == ["out.mp4"]
    info = media.probe_video(path)
    assert info["frames"] == 25 and info["fps"] == 25.0 and info["codec"] == "h264"
    assert (info["width"], info["height"]) == (64, 64) and abs(info["duration"] - 1.0) < 1e-6
    assert info["has_audio"] and info["audio_rate"] == 16000
    frames, fps, wave, rate = media.read_video(path)
    assert frames.shape == (25, 64, 64, 3) and frames.dtype == np.uint8 and fps == 25.0
    # yuv420p chroma subsampling alone costs ~3.4 levels on this busy 64x64 picture; crf 18 adds ~1
    assert np.abs(frames.astype(int) - portrait_frames).mean() < 6
    assert rate == 16000 and 16000 <= len(wave) <= 16000 + 2048  # AAC pads to whole 1024-sample frames


def test_video_without_audio_and_from_float_torch_frames(tmp_path):
    frames = torch.rand(7, 3, 48, 40).permute(0, 2, 3, 1)  # (F, H, W, 3) float in [0, 1]
    path = media.write_video(tmp_path / "silent.mp4", frames, 12.5)
    info = media.probe_video(path)
    assert (
        info["frames"] == 7 and info["fps"] == 12.5 and not info["has_audio"] and info["audio_rate"] is None
    )
    assert media.read_video(path)[2:] == (None, None)


def test_odd_sizes_are_padded_to_even(tmp_path):
    frames = np.random.default_rng(0).integers(0, 255, (5, 33, 31, 3), dtype=np.uint8)
    info = media.probe_video(media.write_video(tmp_path / "odd.mp4", frames, 25, tone(0.2, 44100), 44100))
    assert (info["width"], info["height"], info["frames"]) == (32, 34, 5)


def test_frames_from_a_generator_are_streamed(tmp_path, portrait_frames):
    path = media.write_video(tmp_path / "gen.mp4", (f for f in portrait_frames[:9]), 25, tone(1, 16000))
    assert media.probe_video(path)["frames"] == 9


def _failing_frames(frames, error):
    yield from frames
    raise error


@pytest.mark.parametrize("error", [RuntimeError("decoder died"), KeyboardInterrupt()])
def test_failure_mid_write_leaves_no_file_and_no_partial(tmp_path, portrait_frames, error):
    with pytest.raises(type(error)):
        media.write_video(
            tmp_path / "out.mp4", _failing_frames(portrait_frames[:5], error), 25, tone(1, 16000)
        )
    assert leftovers(tmp_path) == []


def test_a_frame_of_the_wrong_size_fails_cleanly_and_keeps_the_old_file(tmp_path, portrait_frames):
    old = media.write_video(tmp_path / "out.mp4", portrait_frames[:3], 25)
    before = open(old, "rb").read()
    frames = list(portrait_frames[:4]) + [np.zeros((32, 64, 3), np.uint8)]
    with pytest.raises(ValueError, match=r"frames: frame 4 is 64x32, frame 0 is 64x64"):
        media.write_video(tmp_path / "out.mp4", frames, 25)
    assert leftovers(tmp_path) == ["out.mp4"] and open(old, "rb").read() == before


@pytest.mark.parametrize(
    ("frames", "message"),
    [
        (np.zeros((0, 32, 32, 3), np.uint8), r"frames: no frames"),
        (np.zeros((4, 3, 32, 32), np.float32), r"frames: shape \(4, 3, 32, 32\); expected \(F, H, W, 3\)"),
        (np.full((2, 32, 32, 3), np.nan, np.float32), r"frames: frame 0 contains NaN"),
    ],
)
def test_bad_frames_are_refused_before_anything_is_written(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        media.write_video(tmp_path / "out.mp4", frames, 25)
    assert leftovers(tmp_path) == []


def test_the_h264_encoder_is_a_software_one():
    assert media.h264_encoder() in ("libx264", "libopenh264")
