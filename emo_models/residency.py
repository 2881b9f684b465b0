"""Weights resident while their part runs, not while it waits.

On the CPU a loaded checkpoint's weights are its files themselves, mapped into memory (safetensors and
``torch.load(mmap=True)`` map them privately): every page that was read stays resident. At full size the
parts that run once per clip or video (VAE, audio encoder, ReferenceNet: ~4 GB) would otherwise sit in
the process through all the denoising steps that never read them. :func:`release_pages` asks the kernel
to reclaim such pages (``madvise(MADV_PAGEOUT)``, Linux 5.4+): the values stay in the file and are read
back, identical, on the next use. Only pages mapped from a regular file are advised: weights in anonymous
memory (cast to another dtype, built at random, on a GPU) are left alone, so nothing is sent to swap (but
weights changed in place after loading, as training does, are private copies the kernel may swap out on a
machine with swap: the render path, which calls this, never changes weights); on other systems it does
nothing. The kernel reclaims only clean pages that one mapping holds: pages of a
file loaded twice at once (two live pipelines, another process) or just written and not yet on disk stay
(:mod:`emo_models.atomic_output` writes checkpoints through to the disk).
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Iterable

import torch

MADV_PAGEOUT = 21  # linux/mman.h
_NOT_FILES = ("/dev/", "/memfd:", "/SYSV")  # shared memory: its pages would go to swap


def file_mappings() -> list[tuple[int, int]]:
    """(start, end) addresses of this process's memory mapped from regular files (/proc/self/maps; none
    where it cannot be read, e.g. a sandbox without /proc)."""
    spans = []
    try:
        maps = open("/proc/self/maps")
    except OSError:
        return spans
    with maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[4] != "0" and fields[5].startswith("/") and \
                    not fields[5].startswith(_NOT_FILES):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                spans.append((start, end))
    return spans


def weight_spans(modules: Iterable[torch.nn.Module | None]) -> list[tuple[int, int]]:
    """(start, end) addresses of the CPU parameters and buffers of ``modules`` (None skipped), merged."""
    storages = [t.untyped_storage() for module in modules if module is not None
                for t in (*module.parameters(), *module.buffers()) if t.device.type == "cpu" and t.numel()]
    spans = sorted((s.data_ptr(), s.data_ptr() + s.nbytes()) for s in storages)
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def release_pages(*modules: torch.nn.Module | None) -> int:
    """Hand the kernel back the resident pages of these modules' file-mapped CPU weights -> bytes advised
    (0 when none are file-mapped, or off Linux). Values never change: a later read maps the file's pages
    again. Pages shared with a neighbouring tensor of the same file are read back by that tensor's next use."""
    if not sys.platform.startswith("linux"):
        return 0
    files = file_mappings()
    page = os.sysconf("SC_PAGE_SIZE")
    madvise = _madvise()
    advised = 0
    for start, end in weight_spans(modules):
        for file_start, file_end in files:
            low, high = max(start, file_start), min(end, file_end)
            if low >= high:
                continue
            low -= low % page  # mappings are page-aligned, so this stays inside the file's mapping
            high = min(file_end, high + -high % page)
            if madvise(low, high - low, MADV_PAGEOUT) == 0:
                advised += high - low
    return advised


def _madvise():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    return libc.madvise
