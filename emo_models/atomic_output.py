"""Every file and folder we write appears whole or not at all, with the user's permissions, and never
replaces anything without ``force``.

One owner for output policy, used by the video writer, checkpoint folders and the CLI's preflight:

- :func:`check_output_file` / :func:`check_output_folder`: the checks that can be made before any heavy
  work (a writable folder, a file name with a known extension, not a folder, not one of the inputs,
  nothing there yet unless ``force``). They raise :class:`OutputError` naming the option and the path.
- :func:`atomic_file`: a context manager giving a temporary path beside the target; on a clean exit it is
  written through to the disk (fsync) and renamed onto the target, on any exception (also Ctrl-C and,
  while inside, SIGTERM/SIGHUP) it is removed. An incremental writer (frames streamed as they are made) writes to that path for as long
  as it likes; the target only ever holds a complete file.
- :func:`atomic_folder`: the same for a folder of files; onto an existing folder (with ``force``) only
  the files we write, and stale files of the same names, are replaced; everything else is kept.

Temporary files and folders are created with mode 0666/0777 minus the umask (``os.open``/``os.mkdir``),
so what appears at the target has the permissions any file the user creates would have, not the 0600
of :mod:`tempfile`.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import signal
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path


class OutputError(ValueError):
    """An output path that cannot be written, or whose writing failed; names the option and the path."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived while an output was being written; raised so the temporary file is removed.

    A :class:`KeyboardInterrupt`, so code that already stops cleanly on Ctrl-C stops cleanly on it too.
    ``signum``: the signal; a command line exits with ``128 + signum``.
    """

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


_STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
_DISK_ERRORS = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
                errno.EROFS: "the file system is read-only", errno.EIO: "an input/output error",
                errno.EFBIG: "the file is too large for the file system"}


def _raise_terminated(signum, _frame):
    raise Terminated(signum)


@contextmanager
def stop_signals_as_exceptions() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise :class:`Terminated` instead of killing the process.

    Only where Python would otherwise die at once: in the main thread, for signals whose handler is the
    default one. A handler someone else installed (ComfyUI, accelerate) is left alone; the previous
    handlers are restored on exit, so outside writing a SIGTERM behaves as it always did.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {}
    try:
        for signum in _STOP_SIGNALS:
            if signal.getsignal(signum) is signal.SIG_DFL:
                previous[signum] = signal.signal(signum, _raise_terminated)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _temp_name(target: Path, suffix: str = "") -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(4)}.partial{suffix}")


def _create_temp_file(target: Path) -> Path:
    """An empty file beside ``target`` (same extension, so writers that go by it pick the right format),
    created exclusively with mode 0666 minus the umask."""
    while True:
        temp = _temp_name(target, target.suffix)
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return temp
        except FileExistsError:
            continue


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass


def _publish(temp: Path, target: Path, force: bool, option: str) -> None:
    """Move the finished ``temp`` to ``target``; without ``force`` never over an existing file, even one
    created while we were writing (a hard link fails if the name exists; then the temp is unlinked)."""
    if force:
        os.replace(temp, target)
        return
    try:
        os.link(temp, target)
    except FileExistsError:
        raise OutputError(f"{option}: {target} appeared while writing; nothing was replaced "
                          f"(give force to replace it)") from None
    except OSError:  # a file system without hard links (FAT, some network shares)
        if target.exists():
            raise OutputError(f"{option}: {target} appeared while writing; nothing was replaced "
                              f"(give force to replace it)") from None
        os.replace(temp, target)
        return
    temp.unlink()


def _explain(err: OSError, target: Path, temp: Path, option: str) -> OutputError | None:
    """A failure to write ``temp``/``target`` as an :class:`OutputError` saying what happened; None for an
    OSError about something else (an input read inside the block), which is re-raised as it is."""
    def ours(name) -> bool:
        return name is not None and (str(name) in (str(target), str(target.parent))
                                     or str(name).startswith(str(temp)))

    remedy = "choose another path, then run again"
    if not target.parent.is_dir():
        what = f"its folder {target.parent} disappeared while writing"
        remedy = "keep the folder in place (or choose another path), then run again"
    elif err.errno in _DISK_ERRORS:
        what = _DISK_ERRORS[err.errno]
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            remedy = "free some space or choose another path, then run again"
    elif err.errno in (errno.EACCES, errno.EPERM) and ours(err.filename):
        what = f"permission denied in {target.parent}"
    elif ours(err.filename) or ours(err.filename2):
        what = str(err)
    else:
        return None
    return OutputError(f"{option}: writing {target} failed ({what}); nothing was written there; {remedy}")


@contextmanager
def _staged(target: Path, create: Callable[[], Path], publish: Callable[[Path], None],
            option: str) -> Iterator[Path]:
    """The lifecycle both writers share: ``create()`` a temporary beside ``target``, yield it, then
    ``publish`` it, or remove it on any exception; signals and disk faults handled as documented."""
    with stop_signals_as_exceptions():
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            temp = create()
        except OSError as err:
            raise (_explain(err, target, target, option) or err) from None
        try:
            yield temp
            _flush(temp)
            publish(temp)
        except OSError as err:
            _remove(temp)
            explained = _explain(err, target, temp, option)
            if explained is None:
                raise
            raise explained from err
        except BaseException:
            _remove(temp)
            raise


def _flush(temp: Path) -> None:
    """Write a finished temporary file (or each file of a folder) through to the disk before it is renamed
    into place: a crash just after can then not leave a named but empty or partial file, and the pages a
    later load maps from it are clean, so :func:`~emo_models.residency.release_pages` can hand them back."""
    for path in sorted(temp.iterdir()) if temp.is_dir() else [temp]:
        if path.is_file():
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)


@contextmanager
def atomic_file(path: str | os.PathLike, force: bool = False, option: str = "out") -> Iterator[str]:
    """Yield a temporary file path beside ``path``; it becomes ``path`` when the block ends cleanly.

    On any exception (including Ctrl-C, and SIGTERM/SIGHUP, which become :class:`Terminated` while
    inside) the temporary file is removed and ``path`` is left as it was. Without ``force`` an existing
    ``path`` is never replaced. The parent folder is created if missing. A disk-level failure
    (no space, read-only, folder removed) surfaces as an :class:`OutputError` naming ``option``.
    """
    target = Path(path)
    check_output_file(target, force=force, option=option)
    with _staged(target, lambda: _create_temp_file(target),
                 lambda temp: _publish(temp, target, force, option), option) as temp:
        yield str(temp)


@contextmanager
def atomic_folder(path: str | os.PathLike, force: bool = False, option: str = "out",
                  owned: Callable[[str], bool] | None = None) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; its files become ``path``'s when the block ends cleanly.

    A new ``path`` is the temporary folder renamed. An existing one needs ``force``; then each file we
    wrote replaces its namesake, names ``owned`` accepts that we did not write this time (stale parts of
    an earlier checkpoint) are removed, and every other file or folder in it is kept. The replaced
    files are set aside first and put back if moving the new ones in fails. Cleanup as :func:`atomic_file`.
    """
    target = Path(path)
    check_output_folder(target, force=force, option=option)

    def create() -> Path:
        staging = _temp_name(target)
        os.mkdir(staging, 0o777)  # the umask applies, as to any folder the user makes
        return staging

    def publish(staging: Path) -> None:
        if target.exists():
            _merge_into(staging, target, owned or (lambda name: False))
        else:
            os.rename(staging, target)

    with _staged(target, create, publish, option) as staging:
        yield staging


def _merge_into(staging: Path, target: Path, owned: Callable[[str], bool]) -> None:
    """Move staging's entries into ``target`` (replacing namesakes) and drop stale ``owned`` names."""
    new = sorted(p.name for p in staging.iterdir())
    stale = sorted(p.name for p in target.iterdir() if p.name not in new and owned(p.name))
    aside = _temp_name(target, ".old")
    os.mkdir(aside, 0o700)
    moved: list[str] = []
    try:
        for name in new + stale:
            if (target / name).exists() or (target / name).is_symlink():
                os.replace(target / name, aside / name)
        for name in new:
            os.replace(staging / name, target / name)
            moved.append(name)
    except BaseException:
        for name in moved:
            _remove(target / name)
        for entry in aside.iterdir():
            os.replace(entry, target / entry.name)
        _remove(aside)
        raise
    _remove(aside)
    _remove(staging)


def _existing_ancestor(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_writable_folder(folder: Path, target: Path, option: str) -> None:
    """Refuse when ``target``'s folder (or the nearest part of it that exists) cannot take a new file."""
    existing = _existing_ancestor(folder)
    if not existing.is_dir():
        raise OutputError(f"{option}: {target} cannot be created: {existing} is a file, not a folder; "
                          "choose a path inside a folder")
    probe = _temp_name(existing / "probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError as err:
        reason = _DISK_ERRORS.get(err.errno, "it is not writable by you" if err.errno in (errno.EACCES, errno.EPERM)
                                  else str(err))
        raise OutputError(f"{option}: cannot write in {existing} ({reason}); choose a folder you can write to") \
            from None
    os.unlink(probe)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(path: str | os.PathLike, *, suffixes: Iterable[str] | None = None,
                      inputs: Iterable[str | os.PathLike] = (), force: bool = False, option: str = "out",
                      kind: str = "file") -> Path:
    """Refuse, before any heavy work, an output file path that cannot (or must not) be written; return it.

    suffixes: the extensions the writer can produce (lower case, with the dot), or None for any;
    inputs: paths read by the same run (writing onto one of them is refused even with ``force``);
    force: allow replacing an existing file. Raises :class:`OutputError` naming ``option``.
    """
    target = Path(path)
    if not str(path).strip():
        raise OutputError(f"{option}: empty path; give a {kind} path such as out/talk.mp4")
    allowed = None if suffixes is None else list(dict.fromkeys(suffixes))
    if target.is_dir():
        example = target / f"out{allowed[0] if allowed else ''}"
        raise OutputError(f"{option}: {target} is a folder; give a file path inside it, e.g. {example}")
    if allowed is not None:
        if target.suffix.lower() not in allowed:
            have = f"extension {target.suffix!r}" if target.suffix else "no extension"
            raise OutputError(f"{option}: {target} has {have}; the {kind} writer makes {', '.join(allowed)} "
                              f"files, end the name with one of them")
    for source in inputs:
        if _same_file(target, Path(source)) or target.resolve() == Path(source).resolve():
            raise OutputError(f"{option}: {target} is also an input of this run; write to another path")
    if target.exists() or target.is_symlink():
        mode = target.lstat().st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise OutputError(f"{option}: {target} exists and is not a regular file; choose another path")
        if not force:
            raise OutputError(f"{option}: {target} already exists; give --force (force=True) to replace it, "
                              "or choose another path")
    _check_writable_folder(target.parent, target, option)
    return target


def check_output_folder(path: str | os.PathLike, *, force: bool = False, option: str = "out") -> Path:
    """Refuse, before any heavy work, an output folder that cannot (or must not) be written; return it.

    A folder that exists and is not empty needs ``force`` (then only the files we write are replaced,
    see :func:`atomic_folder`); a file at ``path`` is refused. Raises :class:`OutputError` naming ``option``.
    """
    target = Path(path)
    if not str(path).strip():
        raise OutputError(f"{option}: empty path; give a folder path such as models/emo/mine")
    if target.exists() and not target.is_dir():
        raise OutputError(f"{option}: {target} is a file, not a folder; give a folder path")
    if target.is_dir() and any(target.iterdir()) and not force:
        raise OutputError(f"{option}: {target} already exists and is not empty; give --force (force=True) to "
                          "replace the files this writes there (other files in it are kept), or choose a new folder")
    _check_writable_folder(target if target.is_dir() else target.parent, target, option)
    return target
