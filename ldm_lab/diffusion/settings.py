"""How a sample is drawn, in one place: the sampler, the noise levels it visits, guidance and the noise seed.

    settings = SamplingSettings(sampler="euler_ancestral", steps=30, guidance_scale=5.0, seed=0)
    x0 = sample(model_fn, noise, settings, cond=..., uncond=...)
    images = generate(model, prompts=["red apple"], settings=settings)

Every function that samples takes one of these whole; its defaults are the package's only sampling defaults.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ldm_lab.diffusion.discretisation import FINAL_SIGMAS, TIMESTEP_SPACINGS, FinalSigma, TimestepSpacing
from ldm_lab.diffusion.samplers import SamplerSpec, SamplerStep, get_sampler
from ldm_lab.names import unknown_name_error


@dataclass(frozen=True)
class SamplingSettings:
    """Everything about drawing a sample except the model, its conditioning and the starting noise.

    The defaults: DPM-Solver++(2M) (Lu et al. 2022b), good at few steps, with 20 steps at trailing timesteps
    (Lin et al. 2023, Tab. 2: the first step starts at t = T - 1) and no guidance."""

    sampler: str | SamplerSpec | SamplerStep = "dpmpp_2m"  # a name in ldm_lab.diffusion.SAMPLERS, or an update
                                       # rule such as EulerAncestral(eta=0.5)
    steps: int = 20                    # sampler steps (model calls: twice as many for "heun"; ignored with timesteps)
    guidance_scale: float = 1.0        # classifier-free guidance w (Ho & Salimans 2022, eq. 6); 1: no guidance
    guidance_rescale: float = 0.0      # phi of Lin et al. 2023's guidance rescale (§3.4), in [0, 1]; 0: off
    eta: float | None = None           # ancestral samplers' fresh noise (DDIM's eta, Song et al. 2021 eq. 16): 0 is
                                       # DDIM, 1 is DDPM; None: the sampler's own (ddim 0, ddpm/euler_ancestral 1)
    timestep_spacing: TimestepSpacing | str = "trailing"  # which timesteps the steps visit (see spaced_timesteps)
    steps_offset: int = 0              # added to "leading" timesteps (SD 1.x's scheduler config: 1)
    timesteps: tuple[float, ...] | None = None  # explicit (possibly fractional) timesteps, noisiest first;
                                       # they override steps and spacing
    final_sigma: FinalSigma | str | None = None  # where the last step lands: "zero" (the clean sample) or
                                       # "sigma_min" (x_t at ab_0, as the official DDIM); None: the sampler's own
    seed: int | None = None            # seed of the noise sampling draws (start noise, ancestral steps) when no
                                       # generator is passed; None: torch's global generator

    def __post_init__(self) -> None:
        if isinstance(self.sampler, str):
            get_sampler(self.sampler)  # an unknown name fails here, with the valid ones listed
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ValueError(f"steps must be a whole number >= 1, not {self.steps!r}")
        for name in ("guidance_scale", "guidance_rescale"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be a finite number, not {getattr(self, name)}: a NaN or infinite "
                                 "scale turns every image into NaN (black). Use guidance_scale=1 for no guidance.")
        if not 0.0 <= self.guidance_rescale <= 1.0:
            raise ValueError(f"guidance_rescale must be in [0, 1] (0: off; 0.7 is Lin et al.'s choice), "
                             f"not {self.guidance_rescale}")
        if self.eta is not None and not (math.isfinite(self.eta) and self.eta >= 0):
            raise ValueError(f"eta must be a finite number >= 0 (0: DDIM, 1: DDPM), not {self.eta}")
        if self.timestep_spacing not in TIMESTEP_SPACINGS:
            raise unknown_name_error("timestep spacing", self.timestep_spacing, TIMESTEP_SPACINGS)
        if self.final_sigma is not None and self.final_sigma not in FINAL_SIGMAS:
            raise unknown_name_error("final sigma", self.final_sigma, FINAL_SIGMAS,
                                     advice="final_sigma=None keeps the sampler's own.")
        if self.timesteps is not None:
            object.__setattr__(self, "timesteps", tuple(self.timesteps))  # hashable, and equal however given

    def sampler_spec(self) -> SamplerSpec:
        """The registered sampler, with ``eta`` applied to its update rule when given."""
        spec = get_sampler(self.sampler)
        if self.eta is None:
            return spec
        if not (dataclasses.is_dataclass(spec.step) and "eta" in {f.name for f in dataclasses.fields(spec.step)}):
            raise ValueError(f"eta={self.eta} sets an ancestral sampler's fresh noise, but {self.sampler_name} has "
                             "none: use ddim, ddpm, euler_ancestral or turbo_euler_ancestral, or leave eta=None.")
        return dataclasses.replace(spec, step=dataclasses.replace(spec.step, eta=self.eta))

    @property
    def sampler_name(self) -> str:
        """The sampler's registry name, or its update rule written out."""
        return self.sampler if isinstance(self.sampler, str) else repr(self.sampler)

    def generator(self) -> torch.Generator | None:
        """A CPU generator seeded with ``seed`` (the same noise on every device), or None without a seed."""
        return None if self.seed is None else torch.Generator().manual_seed(self.seed)

    def describe(self) -> str:
        """One line for result records: sampler, steps, guidance and seed, then any other field that differs
        from its default."""
        words = [f"sampler={self.sampler_name}", f"steps={self.steps}", f"guidance={self.guidance_scale:g}"]
        if self.seed is not None:
            words.append(f"seed={self.seed}")
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name not in ("sampler", "steps", "guidance_scale", "seed") and value != field.default:
                words.append(f"{field.name}={value.value if isinstance(value, FinalSigma) else value}")
        return " ".join(words)
