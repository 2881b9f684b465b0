"""Property-based specification of the image and audio adapters: for any shape, dtype, value range and
sample rate, each adapter either returns what it documents or raises InputError (its documented error),
never anything else. Examples are derandomised and few, so the suite stays fast and repeatable."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from emo_models.media import fit_image, frame_count, load_image, prepare_waveform, trim_audio
from emo_models.validation import InputError, check_face_mask, check_image, image_tensor
from nodes.boundary import audio_to_waveform, image_to_model, mask_to_model

FAST = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DTYPES = [np.float32, np.float64, np.float16, np.uint8, np.int16, np.int32, np.int64, np.bool_]
VALUES = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.floats(-1.0, 1.0, width=32), st.floats(0.0, 255.0, width=32))


def _representable(value: float, dtype) -> float:
    """``value`` rounded to ``dtype`` (too large for float16 becomes inf, as a cast would make it)."""
    with np.errstate(over="ignore"):
        return float(np.asarray(value).astype(dtype))


@st.composite
def arrays(draw, max_dims=5, max_side=12):
    """Any small array: 0 to ``max_dims`` axes of 0..``max_side``, any of :data:`DTYPES`, any values."""
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=max_side))
    if np.dtype(dtype).kind == "f":
        elements = VALUES.map(lambda v: _representable(v, dtype))
    else:
        elements = None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def image_like(draw):
    """Arrays biased towards image shapes: (B, 3, H, W), (B, H, W, 3), or anything."""
    dtype = draw(st.sampled_from(DTYPES))
    b, h, w = draw(st.integers(0, 2)), draw(st.integers(0, 40)), draw(st.integers(0, 40))
    shape = draw(st.sampled_from([(b, 3, h, w), (b, h, w, 3), (b, h, w), (3, h, w)]))
    elements = VALUES.map(lambda v: _representable(v, dtype)) if np.dtype(dtype).kind == "f" else None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def unit_images(draw, channels_last=False):
    """Mostly valid images: float (B, 3, H, W) (or (B, H, W, 3)) in [0, 1], sometimes with a stray value."""
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16]))
    b, h, w = draw(st.integers(1, 2)), draw(st.integers(14, 40)), draw(st.integers(14, 40))
    shape = (b, h, w, 3) if channels_last else (b, 3, h, w)
    array = draw(hnp.arrays(dtype, shape, elements=st.floats(0.0, 1.0, width=16)))
    if draw(st.booleans()):
        array.flat[draw(st.integers(0, array.size - 1))] = draw(VALUES)
    return array


@st.composite
def speech_like(draw, layouts=("T", "CT", "BCT")):
    """Mostly valid waveforms: float in [-1, 1], 1-2 channels, a few hundred samples, sometimes a stray value."""
    layout = draw(st.sampled_from(layouts))
    channels, samples = draw(st.integers(1, 2)), draw(st.integers(1, 2000))
    shape = {"T": (samples,), "CT": (channels, samples), "BCT": (1, channels, samples)}[layout]
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    array = draw(hnp.arrays(dtype, shape, elements=st.floats(-1.0, 1.0, width=32)))
    if draw(st.booleans()):
        array.flat[draw(st.integers(0, array.size - 1))] = draw(VALUES)
    return array


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def as_tensor(array):
    return torch.from_numpy(np.ascontiguousarray(array))


def works_or_input_error(function, *args, **kwargs):
    """The call's result, or None when it raised InputError; any other exception fails the test."""
    try:
        out = function(*args, **kwargs)
    except InputError:
        event("refused with InputError")
        return None
    event("accepted")
    return out


def assert_unit_images(x, batch=None):
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and x.ndim == 4 and x.shape[1] == 3
    assert torch.isfinite(x).all() and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert batch is None or x.shape[0] == batch


# ---- images --------------------------------------------------------------------------------------

@FAST
@given(st.one_of(unit_images(), image_like(), arrays()))
def test_check_image_accepts_exactly_unit_range_float_images(array):
    image = as_tensor(array)
    out = works_or_input_error(check_image, image)
    if out is not None:
        assert out is image and image.is_floating_point() and image.ndim == 4 and image.shape[1] == 3
        assert min(image.shape[2:]) >= 16 and torch.isfinite(image).all()


@FAST
@given(st.one_of(unit_images(), unit_images(channels_last=True), image_like(), arrays()))
def test_the_api_image_adapter_gives_one_unit_range_bchw_or_input_error(array):
    out = works_or_input_error(image_tensor, as_tensor(array) if array.dtype != np.uint16 else array)
    if out is not None:
        assert_unit_images(out, batch=1)
        if array.dtype == np.uint8:  # 0..255 by its dtype: divided, never clipped
            assert torch.allclose(out.flatten().sort().values * 255,
                                  torch.from_numpy(array.astype(np.float32)).flatten().sort().values, atol=1e-3)


@FAST
@given(st.one_of(unit_images(), image_like()), st.integers(-4, 80), st.integers(-4, 80), st.sampled_from(["center", "pad", "stretch", "zoom"]),
       st.one_of(st.none(), st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=0, max_size=5)))
def test_fit_image_gives_the_target_size_in_unit_range_or_input_error(array, width, height, mode, box):
    image = as_tensor(array)
    out = works_or_input_error(fit_image, image, width, height, mode=mode, box=box)
    if out is not None:
        assert out.shape == (image.shape[0], 3, height, width)
        assert torch.isfinite(out).all() and float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@FAST
@given(st.one_of(unit_images(channels_last=True), image_like(), arrays()))
def test_node_image_boundary_gives_unit_range_bchw_or_input_error(array):
    out = works_or_input_error(image_to_model, as_tensor(array))
    if out is not None:
        assert_unit_images(out, batch=array.shape[0])


@FAST
@given(st.one_of(arrays(max_dims=4), st.integers(), st.text(max_size=3)))
def test_node_mask_boundary_gives_b1hw_in_unit_range_or_input_error(value):
    mask = as_tensor(value) if isinstance(value, np.ndarray) else value
    out = works_or_input_error(mask_to_model, mask)
    if out is not None:
        assert out.ndim == 4 and out.shape[1] == 1 and out.dtype == torch.float32
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


@st.composite
def masks_and_sizes(draw):
    """(mask array, height, width): half of them a mask of that size in [0, 1] or bool, half anything."""
    height, width = draw(st.integers(1, 20)), draw(st.integers(1, 20))
    if draw(st.booleans()):
        return draw(arrays(max_dims=4, max_side=20)), height, width
    shape = draw(st.sampled_from([(height, width), (1, height, width), (1, 1, height, width)]))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.bool_]))
    elements = None if dtype is np.bool_ else st.floats(0.0, 1.0, width=32)
    return draw(hnp.arrays(dtype, shape, elements=elements)), height, width


@FAST
@given(masks_and_sizes())
def test_face_mask_check_gives_b1hw_of_the_images_aspect_or_input_error(case):
    array, height, width = case
    out = works_or_input_error(check_face_mask, as_tensor(array), height, width)
    if out is not None:
        h, w = array.shape[-2:]
        assert out.ndim == 4 and out.shape[1:] == (1, h, w) and abs((w / h) / (width / height) - 1) <= 0.02
        assert out.dtype == torch.float32 and float(out.min()) >= 0 and float(out.max()) <= 1


MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16", "F", "CMYK"]
FORMATS = {"PNG": ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"), "JPEG": ("L", "RGB", "CMYK"),
           "WEBP": ("RGB", "RGBA"), "GIF": ("L", "P"), "BMP": ("1", "L", "P", "RGB"),
           "TIFF": ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16", "F", "CMYK")}


@st.composite
def image_files(draw):
    """Bytes of a small image in a real format and mode, possibly truncated or replaced by noise."""
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(FORMATS[fmt]))
    w, h = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    pixels = draw(hnp.arrays(np.uint8, (h, w, 4)))
    im = Image.fromarray(pixels, "RGBA").convert(mode if mode not in ("I", "I;16", "F") else "L")
    im = im.convert(mode) if im.mode != mode else im
    buffer = io.BytesIO()
    im.save(buffer, format=fmt)
    data = buffer.getvalue()
    damage = draw(st.sampled_from(["none", "truncate", "noise"]))
    if damage == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif damage == "noise":
        data = draw(st.binary(max_size=200))
    return fmt, mode, data


@FAST
@given(image_files())
def test_load_image_reads_any_real_file_as_unit_rgb_or_input_error(tmp_path_factory, case):
    fmt, mode, data = case
    path = tmp_path_factory.mktemp("img") / f"face.{fmt.lower()}"
    path.write_bytes(data)
    out = works_or_input_error(load_image, path)
    if out is not None:
        assert_unit_images(out, batch=1)


# ---- audio ---------------------------------------------------------------------------------------

RATES = st.one_of(st.sampled_from([8000, 16000, 22050, 44100, 48000]), st.integers(-10, 200_000),
                  st.sampled_from([0, 1, 1_000_001, 16000.0, 22050.5]), st.floats(allow_nan=True, allow_infinity=True),
                  st.none(), st.booleans())


@FAST
@given(st.one_of(speech_like(), arrays(max_dims=4, max_side=64)), RATES)
def test_prepare_waveform_gives_finite_mono_at_16k_or_input_error(array, rate):
    out = works_or_input_error(prepare_waveform, array, rate, 16000)
    if out is not None:
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.ndim == 1
        assert out.size > 0 and np.isfinite(out).all()


@FAST
@given(st.one_of(speech_like(), arrays(max_dims=3, max_side=64)))
def test_prepare_waveform_takes_torch_tensors_like_arrays(array):
    if array.dtype == np.uint16:  # torch has no uint16 tensors to give
        return
    out = works_or_input_error(prepare_waveform, as_tensor(array), 16000)
    if out is not None:
        assert out.dtype == np.float32 and out.ndim == 1 and out.size > 0 and np.isfinite(out).all()


@st.composite
def comfy_audio(draw):
    """AUDIO dicts as nodes receive them, well-formed or not."""
    kind = draw(st.sampled_from(["dict", "dict", "dict", "missing", "not a dict"]))
    if kind == "not a dict":
        return draw(st.one_of(st.none(), st.integers(), st.text(max_size=3)))
    waveform = draw(st.one_of(speech_like().map(as_tensor), speech_like(("BCT",)).map(as_tensor),
                              arrays(max_dims=4, max_side=16).map(as_tensor),
                              arrays(max_dims=3, max_side=16),
                              st.lists(st.floats(width=32), max_size=4), st.text(max_size=3)))
    audio = {"waveform": waveform, "sample_rate": draw(RATES)}
    if kind == "missing":
        audio.pop(draw(st.sampled_from(["waveform", "sample_rate"])))
    return audio


@FAST
@given(comfy_audio(), st.booleans())
def test_node_audio_boundary_gives_bct_float_and_a_positive_rate_or_input_error(audio, silence_ok):
    out = works_or_input_error(audio_to_waveform, audio, silence_ok=silence_ok)
    if out is not None:
        wave, rate = out
        assert wave.ndim == 3 and wave.dtype == torch.float32 and wave.shape[-1] > 0 and torch.isfinite(wave).all()
        assert isinstance(rate, int) and rate > 0


SECONDS = st.one_of(st.floats(0.0, 0.05), st.floats(allow_nan=True, allow_infinity=True))


@FAST
@given(st.one_of(speech_like(), arrays(max_dims=3, max_side=40)), st.one_of(RATES.filter(is_int), st.integers(-5, 50)),
       SECONDS, SECONDS)
def test_trim_audio_gives_a_non_empty_span_or_input_error(array, rate, start, duration):
    out = works_or_input_error(trim_audio, array, rate, start, duration)
    if out is not None:
        assert out.shape[:-1] == array.shape[:-1] and 0 < out.shape[-1] <= array.shape[-1]


@FAST
@given(st.integers(0, 10**9), st.integers(-5, 200_000), st.floats(allow_nan=True, allow_infinity=True))
def test_frame_count_is_a_non_negative_int_or_input_error(samples, rate, fps):
    out = works_or_input_error(frame_count, samples, rate, fps)
    if out is not None:
        assert isinstance(out, int) and out >= 0
        assert abs(out - samples * fps / rate) <= 0.5 + 1e-9 * max(1.0, samples * fps / rate)


def test_the_properties_have_teeth():
    """The helper lets only InputError through: any other error fails the property."""
    with pytest.raises(ZeroDivisionError):
        works_or_input_error(lambda: 1 / 0)
