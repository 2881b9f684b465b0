"""Outputs: a file or folder appears whole or not at all, with the user's permissions, and nothing that
exists is replaced without force; every refusal comes before any work and names the option and path."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from emo_models import atomic_output
from emo_models.atomic_output import OutputError, Terminated, atomic_file, atomic_folder, check_output_file
from emo_models.media import check_video_output, write_video

FRAMES = np.zeros((3, 16, 16, 3), np.uint8)


def names(folder) -> list[str]:
    return sorted(p.name for p in Path(folder).iterdir())


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_written_files_and_folders_get_the_users_umask_not_0600(tmp_path, umask_027):
    video = write_video(tmp_path / "talk.mp4", FRAMES, 25)
    assert stat.S_IMODE(os.stat(video).st_mode) == 0o640
    with atomic_folder(tmp_path / "ckpt") as staging:
        (staging / "config.json").write_text("{}")
    assert stat.S_IMODE(os.stat(tmp_path / "ckpt").st_mode) == 0o750
    assert names(tmp_path) == ["ckpt", "talk.mp4"]


def test_an_existing_file_is_replaced_only_with_force(tmp_path):
    out = tmp_path / "talk.mp4"
    out.write_bytes(b"mine")
    with pytest.raises(OutputError, match=r"^out: .*talk.mp4 already exists; give --force \(force=True\)"):
        write_video(out, FRAMES, 25, force=False)
    assert out.read_bytes() == b"mine" and names(tmp_path) == ["talk.mp4"]
    write_video(out, FRAMES, 25, force=True)
    assert out.read_bytes()[4:8] == b"ftyp" and names(tmp_path) == ["talk.mp4"]


def test_a_file_that_appears_while_writing_is_not_replaced(tmp_path):
    out = tmp_path / "talk.mp4"
    with pytest.raises(OutputError, match="appeared while writing; nothing was replaced"):
        with atomic_file(out) as partial:
            Path(partial).write_bytes(b"new")
            out.write_bytes(b"someone else's")
    assert out.read_bytes() == b"someone else's" and names(tmp_path) == ["talk.mp4"]


@pytest.mark.parametrize("fault,message", [
    (OSError(errno.ENOSPC, "No space left on device"), "no space left on the device"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded"),
    (ValueError("frames: frame 2 is 8x8"), "frame 2 is 8x8"),
    (KeyboardInterrupt(), None),
])
def test_a_fault_while_writing_leaves_nothing_at_the_output(tmp_path, fault, message):
    out = tmp_path / "talk.mp4"
    with pytest.raises(type(fault) if not isinstance(fault, OSError) else OutputError, match=message):
        with atomic_file(out) as partial:
            Path(partial).write_bytes(b"half")
            raise fault
    assert names(tmp_path) == []


def test_the_folder_removed_while_writing_is_reported_and_leaves_nothing(tmp_path):
    out = tmp_path / "sub" / "talk.mp4"
    with pytest.raises(OutputError, match=r"its folder .*sub disappeared while writing\); nothing was written there; keep the folder"):
        with atomic_file(out) as partial:
            Path(partial).write_bytes(b"half")
            shutil.rmtree(tmp_path / "sub")
    assert names(tmp_path) == []


def test_sigterm_while_writing_raises_terminated_removes_the_temp_and_restores_the_handler(tmp_path):
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    with pytest.raises(Terminated) as stopped:
        with atomic_file(tmp_path / "talk.mp4") as partial:
            Path(partial).write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGTERM)
    assert stopped.value.signum == signal.SIGTERM and isinstance(stopped.value, KeyboardInterrupt)
    assert names(tmp_path) == [] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_someone_elses_sigterm_handler_is_left_alone(tmp_path):
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with atomic_file(tmp_path / "talk.mp4") as partial:
            Path(partial).write_bytes(b"whole")
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen == [signal.SIGTERM] and (tmp_path / "talk.mp4").read_bytes() == b"whole"


def test_outside_the_main_thread_no_handler_is_installed(tmp_path):
    handlers = []

    def write():
        with atomic_file(tmp_path / "talk.mp4") as partial:
            handlers.append(signal.getsignal(signal.SIGTERM))
            Path(partial).write_bytes(b"whole")

    thread = threading.Thread(target=write)
    thread.start()
    thread.join()
    assert handlers == [signal.SIG_DFL] and names(tmp_path) == ["talk.mp4"]


def test_sigterm_to_a_process_writing_a_video_leaves_nothing(tmp_path):
    script = textwrap.dedent(f"""
        import sys, numpy as np
        from emo_models.media import write_video
        def frames():
            for i in range(100000):
                if i == 5:
                    print("writing", flush=True)
                yield np.zeros((64, 64, 3), np.uint8)
        write_video({str(tmp_path / "talk.mp4")!r}, frames(), 25)
    """)
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode != 0 and names(tmp_path) == []


# ---- preflight -------------------------------------------------------------------------------------

def _fifo(path):
    os.mkfifo(path)
    return path


def _inside_a_file(folder):
    (folder / "a.png").write_bytes(b"x")
    return folder / "a.png" / "talk.mp4"


@pytest.mark.parametrize("make,message", [
    (lambda d: d, r"is a folder; give a file path inside it, e\.g\. .*out\.mp4"),
    (lambda d: d / "talk", "has no extension; the video writer makes .mp4, .m4v, .mov, .mkv files"),
    (lambda d: d / "talk.gif", "has extension '.gif'; the video writer makes .mp4, .m4v, .mov, .mkv files"),
    (lambda d: d / "talk.webm", "has extension '.webm'"),
    (lambda d: d / "talk.txt", "has extension '.txt'"),
    (lambda d: _fifo(d / "pipe.mp4"), "exists and is not a regular file"),
    (_inside_a_file, "a.png is a file, not a folder"),
    (lambda d: d / "face.mp4", "is also an input of this run"),
])
def test_output_paths_the_writer_cannot_use_are_refused_before_any_work(tmp_path, make, message):
    (tmp_path / "face.mp4").write_bytes(b"input")
    target = make(tmp_path)
    before = names(tmp_path)
    with pytest.raises(OutputError, match=message) as err:
        check_video_output(target, inputs=[tmp_path / "face.mp4"], force=True, option="--out")
    assert str(err.value).startswith("--out: ") and names(tmp_path) == before


def test_an_unwritable_folder_is_refused_before_any_work(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, mode=0o777):
        if Path(path).parent == tmp_path and flags & os.O_CREAT:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, mode)

    monkeypatch.setattr(atomic_output.os, "open", read_only)
    with pytest.raises(OutputError, match=r"cannot write in .* \(it is not writable by you\); choose a folder"):
        check_output_file(tmp_path / "new" / "talk.mp4", option="--out")
    assert names(tmp_path) == []


def test_a_read_only_file_system_is_named(tmp_path, monkeypatch):
    def read_only(path, flags, mode=0o777):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(atomic_output.os, "open", read_only)
    with pytest.raises(OutputError, match=r"the file system is read-only"):
        check_video_output(tmp_path / "talk.mp4")


# ---- folders ---------------------------------------------------------------------------------------

def test_an_existing_folder_needs_force_and_keeps_files_we_did_not_write(tmp_path):
    folder = tmp_path / "run"
    (folder / "checkpoint-3").mkdir(parents=True)
    (folder / "config.json").write_text("old")
    (folder / "stale.safetensors").write_text("old part")
    with pytest.raises(OutputError, match="already exists and is not empty; give --force"):
        with atomic_folder(folder):
            pass
    with atomic_folder(folder, force=True, owned=lambda name: name.endswith((".json", ".safetensors"))) as staging:
        (staging / "config.json").write_text("new")
    assert names(folder) == ["checkpoint-3", "config.json"] and (folder / "config.json").read_text() == "new"
    assert names(tmp_path) == ["run"]


def test_a_failed_merge_puts_every_replaced_file_back(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    for name in ("a.json", "b.json", "keep.txt"):
        (folder / name).write_text("old " + name)
    real_replace, moves = os.replace, []

    def flaky(src, dst):
        moves.append(dst)
        if Path(dst) == folder / "b.json" and "partial" in str(src) and ".old" not in str(src):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(atomic_output.os, "replace", flaky)
    with pytest.raises(OutputError, match="no space left on the device"):
        with atomic_folder(folder, force=True) as staging:
            (staging / "a.json").write_text("new a")
            (staging / "b.json").write_text("new b")
    assert {p.name: p.read_text() for p in folder.iterdir()} == {
        "a.json": "old a.json", "b.json": "old b.json", "keep.txt": "old keep.txt"}
    assert names(tmp_path) == ["run"]


# ---- incremental writing -----------------------------------------------------------------------------

def test_frames_pushed_clip_by_clip_become_one_video_with_its_audio(tmp_path):
    from emo_models.media import VideoWriter, probe_video

    wave = (0.3 * np.sin(np.arange(16000) / 7)).astype(np.float32)
    with VideoWriter(tmp_path / "talk.mp4", fps=25, audio=wave, sample_rate=16000) as video:
        assert names(tmp_path)[0].startswith(".talk.mp4.")  # only a hidden temporary file so far
        for clip in range(5):
            video.write(np.full((5, 32, 32, 3), clip * 40, np.uint8))
        video.write(torch.zeros(32, 32, 3))  # one frame, float
    info = probe_video(tmp_path / "talk.mp4")
    assert (info["frames"], info["has_audio"], names(tmp_path)) == (26, True, ["talk.mp4"])


@pytest.mark.parametrize("stop", ["error", "sigterm", "no frames"])
def test_a_stream_stopped_midway_leaves_nothing(tmp_path, stop):
    from emo_models.media import VideoWriter

    expected = {"error": RuntimeError, "sigterm": Terminated, "no frames": ValueError}[stop]
    with pytest.raises(expected):
        with VideoWriter(tmp_path / "talk.mp4", fps=25) as video:
            if stop != "no frames":
                video.write(np.zeros((4, 32, 32, 3), np.uint8))
            if stop == "error":
                raise RuntimeError("decoder died")
            if stop == "sigterm":
                os.kill(os.getpid(), signal.SIGTERM)
    assert names(tmp_path) == [] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_every_file_is_on_the_disk_before_it_gets_its_name(tmp_path, monkeypatch):
    """fsync before the rename: a crash just after cannot leave a named but empty file, and a checkpoint
    loaded right after saving maps clean pages (which emo_models.residency can hand back)."""
    synced = []
    real_fsync = os.fsync

    def fsync(descriptor):
        synced.append((os.readlink(f"/proc/self/fd/{descriptor}"), (tmp_path / "ckpt").exists(),
                       (tmp_path / "one.bin").exists()))
        real_fsync(descriptor)

    monkeypatch.setattr(atomic_output.os, "fsync", fsync)
    with atomic_folder(tmp_path / "ckpt") as staging:
        (staging / "a.safetensors").write_bytes(b"a" * 10)
        (staging / "b.safetensors").write_bytes(b"b" * 10)
    with atomic_file(tmp_path / "one.bin") as temp:
        Path(temp).write_bytes(b"c")
    assert len(synced) == 3
    folder_files, (_, _, file_named) = synced[:2], synced[2]
    assert [Path(path).name for path, _, _ in folder_files] == ["a.safetensors", "b.safetensors"]
    assert not any(folder_named for _, folder_named, _ in folder_files) and not file_named  # synced, then named
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["a.safetensors", "b.safetensors"]
