"""Weights resident only while their part runs (emo_models/residency.py): file-mapped pages of the parts
that run once per clip are handed back before the denoising steps, with the values unchanged."""

from __future__ import annotations

import builtins
import gc
import os
import struct
import sys

import numpy as np
import pytest
import torch

from emo_models.loading import load_pipeline
from emo_models.model import STEP_PARTS
from emo_models.render import RenderSettings, render
from emo_models.residency import file_mappings, release_pages, weight_spans

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page residency is read from /proc")


def resident_fraction(module: torch.nn.Module) -> float:
    """Share of the pages holding ``module``'s weights that are mapped in this process (/proc/self/pagemap bit 63)."""
    page = os.sysconf("SC_PAGE_SIZE")
    present = total = 0
    with open("/proc/self/pagemap", "rb") as pagemap:
        for start, end in weight_spans([module]):
            first, last = start // page, (end - 1) // page
            pagemap.seek(first * 8)
            entries = struct.unpack(f"{last - first + 1}Q", pagemap.read((last - first + 1) * 8))
            present += sum(entry >> 63 for entry in entries)
            total += len(entries)
    return present / total


def weights_of(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.fixture
def loaded(checkpoint):
    """The tiny checkpoint as generate loads it: weights mapped from its safetensors files, all read once.
    Pages mapped twice (the same file loaded by two live pipelines) are shared and stay: the kernel only
    reclaims a page one mapping holds, so each test's pipeline is collected before the next loads."""
    gc.collect()
    pipeline, _ = load_pipeline(checkpoint)
    yield pipeline
    del pipeline
    gc.collect()


def test_released_parts_leave_memory_with_their_values_intact(loaded):
    refnet = loaded.model.reference_net
    assert resident_fraction(refnet) < 0.05 and resident_fraction(loaded.model.backbone) < 0.05  # read by the load's check
    before = {name: weights_of(part) for name, part in (("model", loaded.model), ("vae", loaded.vae))}  # mapped in again
    assert resident_fraction(refnet) == 1.0 and resident_fraction(loaded.model.backbone) == 1.0

    advised = loaded.release_clip_parts()

    assert advised >= sum(t.nbytes for t in refnet.state_dict().values())
    for part in (refnet, loaded.vae, loaded.audio_encoder, loaded.model.audio_projection, loaded.model.face_locator):
        assert resident_fraction(part) < 0.05, type(part).__name__
    for name in STEP_PARTS:  # the steps' own weights stay
        if getattr(loaded.model, name) is not None:
            assert resident_fraction(getattr(loaded.model, name)) > 0.9, name
    after = {"model": loaded.model.state_dict(), "vae": loaded.vae.state_dict()}  # read back from the files
    assert all(torch.equal(before[part][k], after[part][k]) for part in before for k in before[part])
    assert resident_fraction(refnet) == 1.0


def test_weights_not_mapped_from_a_file_are_left_alone(tiny_pipeline):
    module = tiny_pipeline.model.reference_net  # built at random: anonymous memory, nothing to hand back
    before = weights_of(module)
    assert release_pages(module) == 0
    assert resident_fraction(module) == 1.0
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())


def test_a_render_after_release_equals_one_from_weights_in_memory(loaded, portrait, speech_wave):
    """The render path releases the per-clip parts before every clip's steps; the frames equal those of the
    same weights held in anonymous memory (where nothing is released), bit for bit, clip after clip."""
    settings = RenderSettings.from_config(loaded.config, steps=2, seed=5)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 12:52, 12:52] = 1

    def frames(pipeline):
        reference = pipeline.encode_reference(portrait)
        audio = pipeline.encode_audio(speech_wave[:int(16000 * 0.9)], 16000)
        return render(pipeline, reference, audio, mask, settings).frames

    mapped = frames(loaded)
    assert resident_fraction(loaded.model.reference_net) < 0.05  # released by the last clip
    for part in (loaded.model, loaded.vae, loaded.audio_encoder):  # the same values, copied into anonymous memory
        for tensor in (*part.parameters(), *part.buffers()):
            tensor.data = tensor.data.clone()
    assert loaded.release_clip_parts() == 0
    np.testing.assert_array_equal(mapped.numpy(), frames(loaded).numpy())


def test_without_proc_nothing_is_advised(loaded, monkeypatch):
    """A sandbox without /proc: nothing is advised, and the render path goes on."""
    real_open = builtins.open

    def no_proc(path, *args, **kwargs):
        if path == "/proc/self/maps":
            raise PermissionError(path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    assert file_mappings() == [] and loaded.release_clip_parts() == 0
