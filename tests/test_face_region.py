"""The face region: one box grammar, mask<->box, the portrait's fit applied to masks, the locator-mask policy."""

from __future__ import annotations

import logging

import pytest
import torch

from emo_models.face_region import (
    FaceBox,
    box_mask,
    frame_portrait,
    locator_mask,
    mask_box,
    parse_box,
)
from emo_models.preset import GenerationPreset


def test_one_grammar_fractions_or_pixels_or_auto():
    assert parse_box("0.25,0.1,0.75,0.6") == FaceBox((0.25, 0.1, 0.75, 0.6), fractions=True)
    assert parse_box("128, 50, 384, 300") == FaceBox((128.0, 50.0, 384.0, 300.0), fractions=False)
    assert parse_box("0.25;0.1;0.75;0.6").fractions and parse_box("") is None and parse_box("auto") is None
    assert parse_box(None) is None
    assert parse_box("0.25,0.1,0.75,0.6").pixels(200, 100) == (50.0, 10.0, 150.0, 60.0)
    assert parse_box("10,20,900,90").pixels(200, 100) == (10.0, 20.0, 200.0, 90.0)  # clipped to the image


@pytest.mark.parametrize("text, message", [
    ("1,2", r"--face-box: '1,2'; give four numbers x0,y0,x1,y1 as fractions"),
    ("a,b,c,d", r"--face-box: 'a,b,c,d'; give four numbers"),
    ("0.5,0.1,0.25,0.6", r"--face-box: '0.5,0.1,0.25,0.6' is not a box; give x0 < x1 and y0 < y1"),
    ("-5,0,10,10", r"is not a box; .*none negative"),
    ("nan,0,1,1", r"give four numbers"),
])
def test_bad_boxes_are_refused_naming_the_option(text, message):
    with pytest.raises(ValueError, match=message):
        parse_box(text, "--face-box")


def test_box_to_mask_and_back():
    mask = box_mask((3.0, 5.0, 20.0, 9.0), 16, 32)
    assert mask.shape == (1, 1, 16, 32) and mask.sum() == 17 * 4
    assert mask_box(mask) == (3.0, 5.0, 20.0, 9.0)
    assert mask_box(torch.cat([box_mask((0, 0, 2, 2), 8, 8), box_mask((5, 5, 8, 8), 8, 8)])) == (0.0, 0.0, 8.0, 8.0)
    with pytest.raises(ValueError, match=r"^mask: the mask is empty"):
        mask_box(torch.zeros(1, 8, 8))


@pytest.mark.parametrize("crop", ["center", "pad", "stretch"])
def test_a_mask_goes_through_the_portraits_fit_like_the_portrait(crop):
    image = torch.full((1, 3, 80, 120), 0.5)
    image[..., 20:50, 70:100] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]  # a red square
    portrait = frame_portrait(image, 64, 64, crop=crop, detect=False)
    red = (portrait.image[0, 0] > 0.75) & (portrait.image[0, 1] < 0.25)
    region = portrait.fit.mask(box_mask((70, 20, 100, 50), 80, 120))[0, 0] > 0.5
    assert red.sum() > 20 and (red & region).sum() / (red | region).sum() > 0.8


def test_the_locator_mask_is_the_given_mask_else_the_box_else_the_detected_face_else_the_default(caplog):
    from tests.test_nodes import astronaut

    photo = astronaut(128).permute(0, 3, 1, 2)
    preset = GenerationPreset(face_expand=2.0)
    detected = frame_portrait(photo, 64, 64)
    assert detected.face is not None and not detected.face_given
    tight = locator_mask(detected, GenerationPreset(face_expand=1.0))
    grown = locator_mask(detected, preset)
    assert 0 < tight.sum() < grown.sum() and tight[0, 0, 12, 27] == 1  # the face, grown by face_expand
    given = frame_portrait(photo, 64, 64, face_box=parse_box("0,0,0.25,0.25"))
    assert locator_mask(given, preset)[0, 0, :16, :16].all() and locator_mask(given, preset).sum() == 256
    painted = torch.zeros(1, 1, 128, 128)
    painted[..., 64:, 64:] = 1
    fitted = locator_mask(given, preset, mask=painted)  # a given mask wins, fitted like the portrait (128 -> 64)
    assert torch.equal(fitted > 0.5, box_mask((32, 32, 64, 64), 64, 64) > 0.5)
    noise = torch.rand(1, 3, 64, 64)
    with caplog.at_level(logging.WARNING, logger="emo_models"):
        default = locator_mask(frame_portrait(noise, 64, 64), preset)
    assert torch.equal(default, box_mask((12.8, 12.8, 51.2, 51.2), 64, 64))
    assert "no face found in the 64x64 portrait; using the checkpoint's default face region 0.2,0.2,0.8,0.8" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="emo_models"):  # a checkpoint whose faces are not detected: silent
        locator_mask(frame_portrait(noise, 64, 64, detect=False), GenerationPreset(detect_face=False))
    assert caplog.text == ""


def test_a_face_crop_centres_the_face_and_without_one_says_what_to_give():
    from tests.test_nodes import astronaut

    photo = astronaut(128).permute(0, 3, 1, 2)
    face = frame_portrait(photo, 64, 64, crop="face", crop_expand=1.5)
    assert face.fit.box is not None and not torch.allclose(face.image, frame_portrait(photo, 64, 64).image)
    with pytest.raises(ValueError, match=r"image: no face found in the 64x64 image; give the face region"):
        frame_portrait(torch.rand(1, 3, 64, 64), 64, 64, crop="face")
    with pytest.raises(ValueError, match=r"^crop: 'zoom'; choose one of center, face, pad, stretch"):
        frame_portrait(photo, 64, 64, crop="zoom")
