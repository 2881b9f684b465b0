"""EMO Render Video: any length, streamed to an mp4 the core Save Video takes, one clip in memory at a time."""

from __future__ import annotations

import sys
import types
import weakref

import numpy as np
import pytest
import torch

from emo_models.media import probe_video, read_video
from emo_models.render import RenderedClip

from .test_nodes import ONE_PASS, PACK, RecordingBar, bridge, emo_model, encoded, models_dir, run_node, speech  # noqa: F401 (fixtures)


@pytest.fixture
def temp_dir(tmp_path, monkeypatch):
    """The bridge's temp folder (ComfyUI's temp directory in ComfyUI), here an empty tmp_path."""
    monkeypatch.setattr(bridge(), "temp_directory", lambda: str(tmp_path))
    return tmp_path


def test_the_video_has_every_frame_of_the_audio_and_its_soundtrack(emo_model, encoded, temp_dir):  # noqa: F811
    reference, _ = encoded
    emo_audio, audio, frames, fps = run_node("EMOAudioFeatures", emo_model=emo_model, audio=speech(0.5))
    (video,) = run_node("EMORenderVideo", emo_model=emo_model, reference=reference, emo_audio=emo_audio, audio=audio,
                        **ONE_PASS)
    path = video.get_stream_source()
    assert [p.name for p in temp_dir.iterdir()] == [path.rsplit("/", 1)[-1]]  # the finished file alone
    info = probe_video(path)
    assert info["frames"] == frames == 13 and info["fps"] == fps and info["has_audio"] and info["audio_rate"] == 44100
    _, _, sound, _ = read_video(path)
    assert abs(sound.shape[0] - 0.5 * 44100) < 0.05 * 44100
    assert video.get_dimensions() == (64, 64)


def test_the_video_shows_what_emo_sampler_makes(emo_model, encoded, temp_dir, monkeypatch):  # noqa: F811
    import emo_models.media as media

    written, write_video_of = [], media.write_video

    def recording_write_video(path, frames, *args, **kwargs):  # what the node hands the encoder
        frames = list(frames)
        written.extend(frames)
        return write_video_of(path, frames, *args, **kwargs)

    monkeypatch.setattr(media, "write_video", recording_write_video)
    reference, emo_audio = encoded
    (frames, _) = run_node("EMOSampler", emo_model=emo_model, reference=reference, emo_audio=emo_audio, **ONE_PASS)
    (video,) = run_node("EMORenderVideo", emo_model=emo_model, reference=reference, emo_audio=emo_audio,
                        audio=speech(), **ONE_PASS)
    assert len(written) == frames.shape[0] == 8
    assert (torch.stack([torch.as_tensor(f) for f in written]).float() - frames).abs().max() <= 1e-5  # the same frames
    streamed = read_video(video.get_stream_source())[0]
    at_once = read_video(write_video_of(temp_dir / "sampler.mp4", frames, 25.0))[0]  # EMO Sampler -> an mp4
    assert streamed.shape == at_once.shape == (8, 64, 64, 3)
    # libx264 need not give the same bytes for the same frames twice in one process (seen: a few pixels off by
    # ~30 levels after gc), so the files are compared as pictures: PSNR of one against the other
    mse = ((streamed.astype(float) - at_once) ** 2).mean()
    assert mse == 0 or 10 * np.log10(255 ** 2 / mse) >= 35


def test_cancel_stops_within_a_step_and_leaves_no_file(emo_model, encoded, temp_dir, monkeypatch):  # noqa: F811
    reference, emo_audio = encoded
    steps = []
    monkeypatch.setattr(bridge(), "progress_bar", lambda total: RecordingBar(steps, cancel_at=3))
    with pytest.raises(bridge().InterruptProcessingException):
        run_node("EMORenderVideo", emo_model=emo_model, reference=reference, emo_audio=emo_audio, audio=speech(),
                 **ONE_PASS)
    assert [s[0] for s in steps] == [1, 2, 3]  # clip 1 written (2 steps), cancelled after the next step
    assert list(temp_dir.iterdir()) == []
    assert not bridge().processing_interrupted()


def test_the_node_holds_one_clip_at_a_time_however_long_the_audio(temp_dir, monkeypatch):
    clips, alive, peak, written = 40, set(), [0], []

    def fake_render_clips(model, reference, audio, **kwargs):  # 40 clips of 6 frames, each counted while alive
        def clips_():
            for index in range(clips):
                pixels = np.random.default_rng(index).random((6, 3, 16, 16), dtype=np.float32)
                alive.add(index)
                weakref.finalize(pixels, alive.discard, index)
                peak[0] = max(peak[0], len(alive))
                written.append(index)
                yield RenderedClip(index, index * 6, torch.zeros(6, 4, 2, 2), torch.from_numpy(pixels))
        return types.SimpleNamespace(frames_per_clip=6), clips_()

    monkeypatch.setattr(sys.modules[f"{PACK}.nodes.video"], "render_clips", fake_render_clips)
    emo_audio = types.SimpleNamespace(frames=clips * 6, fps=25.0)
    (video,) = run_node("EMORenderVideo", emo_model=None, reference=None, emo_audio=emo_audio, audio=speech(9.6),
                        **ONE_PASS)
    assert written == list(range(clips)) and probe_video(video.get_stream_source())["frames"] == 240
    assert peak[0] <= 2  # the clip being written and the one being made, never more
