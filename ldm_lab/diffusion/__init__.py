"""Diffusion engine: schedules, parameterisations, losses, samplers, guidance and editing (LDM §3)."""

from ldm_lab.diffusion.denoiser import Denoiser
from ldm_lab.diffusion.discretisation import (TIMESTEP_SPACINGS, FinalSigma, karras_sigmas, spaced_sigmas,
                                              spaced_timesteps)
from ldm_lab.diffusion.editing import ImageEdit, concat_inpainting_model
from ldm_lab.diffusion.experts import Expert, sample_experts
from ldm_lab.diffusion.guidance import classifier_free_guidance, guided_model, rescale_guidance
from ldm_lab.diffusion.losses import DiffusionLoss, DistillationLoss, RectifiedFlowLoss, min_snr_weight
from ldm_lab.diffusion.oracle import GaussianOracle
from ldm_lab.diffusion.samplers import (SAMPLERS, TURBO_DEMO_TIMESTEPS, ConsistencyMultistep, DPMSolverPP2M, Euler,
                                        EulerAncestral, Heun, SamplerSpec, run_sampler)
from ldm_lab.diffusion.sampling import compare_samplers, sample
from ldm_lab.diffusion.parameterisation import Prediction
from ldm_lab.diffusion.schedules import BETA_SCHEDULES, NoiseSchedule, Schedule, make_schedule
from ldm_lab.diffusion.settings import SamplingSettings

__all__ = [
    "BETA_SCHEDULES", "SAMPLERS", "TIMESTEP_SPACINGS", "TURBO_DEMO_TIMESTEPS", "ConsistencyMultistep",
    "DPMSolverPP2M", "Denoiser", "DiffusionLoss", "DistillationLoss", "Euler", "EulerAncestral", "Expert", "FinalSigma",
    "GaussianOracle", "Heun", "ImageEdit", "NoiseSchedule", "Prediction", "RectifiedFlowLoss", "SamplerSpec",
    "SamplingSettings", "Schedule", "classifier_free_guidance", "compare_samplers", "concat_inpainting_model",
    "guided_model", "karras_sigmas", "make_schedule", "min_snr_weight", "rescale_guidance", "run_sampler", "sample",
    "sample_experts", "spaced_sigmas", "spaced_timesteps",
]
