"""The schedulers a checkpoint can be sampled with: one table, read by the CLI, the nodes and the pipeline.

Each name maps to a stock diffusers scheduler class and the options it gets on top of the checkpoint's
own scheduler config (``config.json`` -> ``scheduler``: betas, prediction type, timestep spacing).
Importing this module is cheap: diffusers is imported only when a scheduler is made.
"""

from __future__ import annotations

from typing import Any

SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ddim": ("DDIMScheduler", {}),  # the paper's
    "dpmpp_2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "euler": ("EulerDiscreteScheduler", {}),
}


def make_scheduler(scheduler_config: dict[str, Any], name: str, steps: int):
    """A fresh diffusers scheduler ``name`` built from a checkpoint's scheduler config, set to ``steps`` steps."""
    import diffusers

    if name not in SCHEDULERS:
        raise ValueError(f"scheduler: unknown {name!r}; choose one of {', '.join(SCHEDULERS)}")
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps: {steps!r}; give a whole number of denoising steps >= 1 (the paper uses 40)")
    class_name, extra = SCHEDULERS[name]
    scheduler = getattr(diffusers, class_name).from_config({**scheduler_config, **extra})
    scheduler.set_timesteps(steps)
    return scheduler
