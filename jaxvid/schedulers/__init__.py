"""Noise schedule, DDIM and LCM as pure, jittable functions."""

from jaxvid.schedulers.ddim import ddim_inverse_step, ddim_inverse_timesteps, ddim_step, ddim_timesteps
from jaxvid.schedulers.lcm import lcm_invert, lcm_scalings, lcm_step, lcm_timesteps
from jaxvid.schedulers.schedule import (NoiseSchedule, add_noise, make_schedule, predict_x0_eps, schedule_from_config,
                                        training_target)

__all__ = [
    "NoiseSchedule",
    "add_noise",
    "ddim_inverse_step",
    "ddim_inverse_timesteps",
    "ddim_step",
    "ddim_timesteps",
    "lcm_invert",
    "lcm_scalings",
    "lcm_step",
    "lcm_timesteps",
    "make_schedule",
    "predict_x0_eps",
    "schedule_from_config",
    "training_target",
]
