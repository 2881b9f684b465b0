"""Tiny random metric networks written in the published files' formats and key layouts.

Each is the real module (:mod:`emo_models.evaluation`) at a small ``width`` with every parameter
seeded-random (:func:`randomize`), saved as the file users place: pytorch-fid's Inception and VideoGPT's I3D as
``torch.save`` state dicts, SyncNet in torch's legacy (pre-zip) serialization like syncnet_v2.model.
"""

from __future__ import annotations

from pathlib import Path

import torch

TINY_WIDTH = 1 / 16


def randomize(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Seeded default (Kaiming) init for weights, and distinct random BatchNorm scales, shifts and
    running statistics around the identity, so activations stay alive through the deep nets."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
                bound = (3.0 / m.weight[0].numel()) ** 0.5
                m.weight.copy_((torch.rand(m.weight.shape, generator=generator) * 2 - 1) * bound)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.1)
            elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.weight.copy_(1 + 0.1 * torch.randn(n, generator=generator))
                m.bias.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
                m.running_var.copy_(1 + 0.2 * torch.rand(n, generator=generator))
    return module.eval()


def tiny_inception(seed: int = 10, width: float = TINY_WIDTH):
    from emo_models.evaluation.inception import FIDInceptionV3

    return randomize(FIDInceptionV3(width=width), seed)


def tiny_i3d(seed: int = 11, width: float = TINY_WIDTH):
    from emo_models.evaluation.i3d import InceptionI3d

    return randomize(InceptionI3d(width=width), seed)


def tiny_syncnet(seed: int = 12, width: float = TINY_WIDTH, dim: int = 16):
    from emo_models.evaluation.syncnet import SyncNet

    return randomize(SyncNet(embedding_dim=dim, width=width), seed)


def plain_state_dict(module: torch.nn.Module, drop_batches_tracked: bool = True) -> dict[str, torch.Tensor]:
    """The module's tensors, without ``num_batches_tracked`` (the published files predate it)."""
    return {k: v.detach().clone() for k, v in module.state_dict().items()
            if not (drop_batches_tracked and k.endswith("num_batches_tracked"))}


def write_metric_weights(folder: str | Path, metrics=("fid", "fvd", "sync")) -> dict[str, Path]:
    """Write tiny random FID/FVD/SyncNet files under their published names; returns {metric: path}."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    if "fid" in metrics:
        paths["fid"] = folder / "pt_inception-2015-12-05-6726825d.pth"
        torch.save(plain_state_dict(tiny_inception()), paths["fid"])
    if "fvd" in metrics:
        paths["fvd"] = folder / "i3d_pretrained_400.pt"
        torch.save(plain_state_dict(tiny_i3d()), paths["fvd"])
    if "sync" in metrics:
        paths["sync"] = folder / "syncnet_v2.model"
        torch.save(plain_state_dict(tiny_syncnet()), paths["sync"], _use_new_zipfile_serialization=False)
    return paths
