"""The diffusion loss: its target per prediction type, and the face/lip region weighting."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import DDPMScheduler
from torch import nn

from emo_models.config import SD15_SCHEDULER
from emo_models.face_region import box_mask
from emo_models.training.train_batch import (
    diffusion_loss,
    latent_loss_weights,
    mask_boxes,
    prediction_target,
    region_weights,
)


def _scheduler(kind: str) -> DDPMScheduler:
    return DDPMScheduler.from_config(dict(SD15_SCHEDULER, prediction_type=kind))


def test_prediction_target_is_noise_velocity_or_latents():
    latents, noise, t = torch.randn(2, 3, 4, 8, 8), torch.randn(2, 3, 4, 8, 8), torch.tensor([10, 900])
    assert torch.equal(prediction_target(_scheduler("epsilon"), latents, noise, t), noise)
    assert torch.equal(prediction_target(_scheduler("sample"), latents, noise, t), latents)
    a = _scheduler("v_prediction").alphas_cumprod[t].view(2, 1, 1, 1, 1)
    velocity = prediction_target(_scheduler("v_prediction"), latents, noise, t)
    torch.testing.assert_close(velocity, a.sqrt() * noise - (1 - a).sqrt() * latents)
    with pytest.raises(ValueError, match="prediction_type 'flow'"):
        prediction_target(SimpleNamespace(config=SimpleNamespace(prediction_type="flow")), latents, noise, t)


def test_region_weights_mark_face_box_and_its_lip_region():
    mask = torch.cat([box_mask((16.0, 10.0, 48.0, 50.0), 64, 64), torch.zeros(1, 1, 64, 64)])
    boxes = mask_boxes(mask)
    assert boxes[0].tolist() == [16, 10, 48, 50] and boxes[1].tolist() == [0, 0, 64, 64]
    w = region_weights(boxes[:1], 64, 64, face=2.0, lip=10.0)[0, 0]
    assert w[0, 0] == 1 and w[15, 20] == 2 and w[45, 32] == 10 and w[45, 17] == 2 and w[55, 32] == 1
    latent = latent_loss_weights(mask, (16, 16), 2.0, 10.0)
    assert latent.shape == (2, 1, 1, 16, 16) and latent[0].max() == 10 and latent[0].min() == 1
    assert latent_loss_weights(mask, (16, 16), 1.0, 1.0) is None


class _Offset(nn.Module):
    """A 'denoiser' whose prediction is the true target plus a fixed error map (1, 1, 1, h, w)."""

    def __init__(self, target, error):
        super().__init__()
        self.target, self.error = target, error

    def forward(self, latents, *args, **kwargs):
        return self.target + self.error


def test_lip_weight_makes_an_error_on_the_lips_cost_more_than_the_same_error_elsewhere():
    scheduler = _scheduler("epsilon")
    mask = box_mask((16.0, 10.0, 48.0, 50.0), 64, 64)
    noise = torch.randn(1, 2, 4, 16, 16)
    inputs = {"target": torch.randn(1, 2, 4, 16, 16), "reference_latents": None, "face_mask": mask,
              "audio_windows": None, "speed": None, "motion_latents": None}
    randomness = {"noise": noise, "timesteps": torch.tensor([500]), "uniform": torch.ones(1, 2)}
    on_lips, off_face = torch.zeros(1, 1, 1, 16, 16), torch.zeros(1, 1, 1, 16, 16)
    on_lips[..., 10, 8], off_face[..., 1, 1] = 1.0, 1.0

    def loss(error, **weights):
        return diffusion_loss(_Offset(noise, error), scheduler, inputs, randomness, **weights).item()

    assert loss(on_lips) == pytest.approx(loss(off_face))  # plain MSE: position does not matter
    assert loss(on_lips, face_weight=2.0, lip_weight=10.0) == pytest.approx(10 * loss(off_face, face_weight=2.0,
                                                                                      lip_weight=10.0))
