"""The evaluation maths against closed forms, and SyncNet's offset search on known shifts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from emo_models.evaluation.frechet import frechet_distance, frechet_distance_of_features, gaussian_statistics
from emo_models.evaluation.syncnet import SyncNet, mfcc, sync_embeddings, sync_scores
from emo_models.evaluation.weights import find_weights, load_metric_net
from tests.metric_files import plain_state_dict, tiny_syncnet


def random_spd(dim: int, seed: int) -> np.ndarray:
    a = np.random.default_rng(seed).normal(size=(dim, dim))
    return a @ a.T / dim + 0.1 * np.eye(dim)


def test_frechet_distance_of_identical_sets_is_zero():
    features = np.random.default_rng(0).normal(size=(300, 64))
    assert frechet_distance_of_features(features, features) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_gaussians_is_the_closed_form():
    # diagonal covariances: d² = |μ1-μ2|² + Σ (√a_i - √b_i)²
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([3.0, -1.0, 2.0])
    expected = 9 + 4 + 0 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 0.5) ** 2
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-12)
    # full covariances: the textbook tr(Σ1 + Σ2 - 2 sqrtm(Σ1 Σ2)) computed with scipy's general sqrtm
    s1, s2 = random_spd(20, 1), random_spd(20, 2)
    m1, m2 = np.random.default_rng(3).normal(size=(2, 20))
    textbook = (m1 - m2) @ (m1 - m2) + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert frechet_distance(m1, s1, m2, s2) == pytest.approx(textbook, rel=1e-9)


def test_frechet_distance_of_samples_approaches_the_gaussians_distance():
    rng = np.random.default_rng(4)
    s1, s2 = random_spd(4, 5), random_spd(4, 6)
    m1, m2 = np.zeros(4), np.array([1.0, 0.0, -1.0, 0.5])
    x = rng.multivariate_normal(m1, s1, size=200_000)
    y = rng.multivariate_normal(m2, s2, size=200_000)
    assert frechet_distance_of_features(x, y) == pytest.approx(frechet_distance(m1, s1, m2, s2), rel=0.02)


def test_frechet_distance_with_fewer_samples_than_dimensions_is_finite():
    rng = np.random.default_rng(7)
    x, y = rng.normal(size=(10, 400)), rng.normal(size=(12, 400)) + 0.5
    value = frechet_distance_of_features(x, y)
    assert np.isfinite(value) and value > 0


def test_gaussian_statistics_refuses_a_single_sample():
    with pytest.raises(ValueError, match="at least 2"):
        gaussian_statistics(np.zeros((1, 8)))


def _lip_branch_reads_centre_frame_brightness(net: SyncNet) -> None:
    """Make the lip branch output (mean pixel value of the window's centre frame, 0, 0, ...)."""
    with torch.no_grad():
        for p in list(net.netcnnlip.parameters()) + list(net.netfclip.parameters()):
            p.zero_()
        convs = [m for m in net.netcnnlip if isinstance(m, nn.Conv3d)]
        convs[0].weight[0, :, 2] = 1.0 / (3 * 49)
        for conv in convs[1:-1]:
            k = conv.kernel_size[-1] // 2
            conv.weight[0, 0, 0, k, k] = 1.0
        convs[-1].weight[0, 0] = 1.0 / 36
        for bn in [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)] + [net.netfclip[1]]:
            bn.weight.fill_(1.0)
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0)
        net.netfclip[0].weight[0, 0] = 1.0
        net.netfclip[3].weight[0, 0] = 1.0


def _speech_like(seconds: float, seed: int) -> np.ndarray:
    """Noise bursts whose loudness changes every 40 ms (one video frame): (T,) at 16 kHz."""
    rng = np.random.default_rng(seed)
    frames = int(seconds * 25)
    envelope = np.repeat(rng.uniform(0.02, 0.6, size=frames), 640)
    tone = np.sin(2 * np.pi * rng.uniform(120, 300, size=frames).repeat(640) * np.arange(frames * 640) / 16000)
    return (envelope * (0.5 * rng.normal(size=frames * 640) + tone) / 2).astype(np.float32)


@pytest.mark.parametrize("shift", [-4, 0, 3])
def test_sync_offset_is_found_for_video_shifted_by_known_frames(tmp_path, shift):
    """Video whose frame j shows (as brightness) the audio embedding of window j - 2 - shift: the
    picture lags the sound by ``shift`` frames, so SyncNet's search must report offset ``shift``."""
    net = tiny_syncnet(dim=8)
    _lip_branch_reads_centre_frame_brightness(net)
    wave = _speech_like(2.4, seed=1)
    coefficients = torch.from_numpy(mfcc(wave))
    count = len(wave) // 640 - 5
    with torch.no_grad():  # audio windows sliced here, by the protocol: MFCC frames 4i .. 4i+20
        audio = net.eval().forward_aud(torch.stack([coefficients[None, :, 4 * i:4 * i + 20] for i in range(count)]))
        # make the audio embedding 1-D, spread over brightness 30..220
        s = audio[:, 0]
        scale = 190.0 / float(s.max() - s.min())
        head = net.netfcaud[3]
        head.weight[0] *= scale
        head.bias[0] = head.bias[0] * scale + 30.0 - scale * float(s.min())
        head.weight[1:] = 0
        head.bias[1:] = 0
        target = net.forward_aud(torch.stack([coefficients[None, :, 4 * i:4 * i + 20] for i in range(count)]))[:, 0]
    path = tmp_path / "syncnet_v2.model"
    torch.save(plain_state_dict(net), path, _use_new_zipfile_serialization=False)
    loaded = load_metric_net(find_weights("sync", [tmp_path]), SyncNet.from_state_dict, "SyncNet")

    brightness = np.zeros(len(wave) // 640)  # black where the shifted audio has no window: SyncNet pads with 0
    for j in range(len(brightness)):
        if 0 <= j - 2 - shift < count:
            brightness[j] = float(target[j - 2 - shift])
    crops = np.repeat(np.round(brightness).astype(np.uint8), 224 * 224 * 3).reshape(-1, 224, 224, 3)
    scores = sync_scores(*sync_embeddings(loaded, crops, wave))
    assert scores["offset"] == shift
    assert scores["sync_d"] < 1.0  # only uint8 rounding separates picture and sound at the true offset
    assert scores["sync_c"] > 10.0


def test_sync_crop_is_the_face_box_grown_by_crop_scale_and_shifted_to_the_mouth():
    """run_pipeline.py's crop: half-size s = 25 px for a 50 px box centred at (75, 75) -> rows
    75-s .. 75+1.8s, columns 75-1.4s .. 75+1.4s, BGR, resized to 224x224; grey 110 past the edges."""
    import cv2

    from emo_models.evaluation.syncnet import sync_crops

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, size=(15, 200, 200, 3), dtype=np.uint8)
    boxes = [(50.0, 50.0, 100.0, 100.0)] * 15
    boxes[7] = (0.0, 0.0, 200.0, 200.0)  # one wild detection: the 13-frame median filter ignores it
    crops = sync_crops(frames, boxes)
    assert crops.shape == (15, 224, 224, 3)
    for i in (0, 7, 14):
        expected = cv2.resize(np.ascontiguousarray(frames[i, 50:120, 40:110, ::-1]), (224, 224))
        np.testing.assert_array_equal(crops[i], expected)
    np.testing.assert_array_equal(sync_crops(frames[:3], boxes[:3])[1], cv2.resize(
        np.ascontiguousarray(frames[1, 50:120, 40:110, ::-1]), (224, 224)))  # short clips too
    corner = sync_crops(frames[:1], [(0.0, 0.0, 50.0, 50.0)])[0]
    assert (corner[:20, :20] == 110).all()  # the crop reaches above and left of the frame: padding


def test_fvd_reads_non_overlapping_16_frame_clips_centre_cropped_to_224(tmp_path):
    from emo_models.evaluation.metrics import FVDFeatures, fvd_clips
    from emo_models.evaluation.videos import Video
    from tests.metric_files import write_metric_weights

    frames = np.repeat(np.arange(40, dtype=np.uint8)[:, None, None, None] * 6, 120 * 160 * 3).reshape(40, 120, 160, 3)
    clips = fvd_clips(frames)
    assert clips.shape == (2, 3, 16, 224, 224)  # frames 32..39 are no whole clip
    assert float(clips[1, 0, 0].mean()) == pytest.approx(16 * 6 / 255 * 2 - 1, abs=1e-5)
    fvd = FVDFeatures(write_metric_weights(tmp_path, ("fvd",))["fvd"], "cpu")
    assert fvd(Video("short", tmp_path / "short.mp4", frames[:10], 25.0, None)).shape[0] == 0
