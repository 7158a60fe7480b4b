"""The student's timesteps and sampler (ADD §3.1 and §4): N = 4 fixed timesteps, the first at pure noise.

ADD trains its student at the timesteps T_student = {tau_1, ..., tau_N}, N = 4, with tau_N = 1000 ("enforce
zero-terminal SNR during training, as the model should start from pure noise during inference"). SDXL-Turbo's
diffusers release visits them with trailing spacing: 4 steps are (999, 749, 499, 249), 2 steps (999, 499), one
step 999. Other step counts would visit timesteps the student never trained at, so they are refused.

Sampling is the official few-step sampler: Euler-ancestral substeps (eta = 1) at the student's timesteps, no
guidance (SDXL-Turbo's demo and its diffusers pipeline both sample with guidance_scale = 0 / 1).
"""

from __future__ import annotations

from ldm_lab.diffusion import SamplingSettings, spaced_timesteps

STUDENT_TRAIN_STEPS = 4        # N, the student's training timesteps (ADD §3.1: "we choose N = 4")
TURBO_SAMPLER = "turbo_euler_ancestral"  # SDXL-Turbo's Euler-ancestral substep sampler, at our explicit timesteps


def student_timesteps(steps: int, num_train_timesteps: int = 1000,
                      train_steps: int = STUDENT_TRAIN_STEPS) -> tuple[int, ...]:
    """The timesteps a student trained at ``train_steps`` trailing timesteps visits in ``steps`` sampling steps,
    noisiest first: 4 -> (999, 749, 499, 249), 2 -> (999, 499), 1 -> (999,) for the paper's N = 4."""
    trained = trailing(train_steps, num_train_timesteps)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"student steps must be a whole number >= 1, not {steps!r}")
    visited = trailing(steps, num_train_timesteps) if steps <= num_train_timesteps else ()
    if not visited or not set(visited) <= set(trained):
        usable = [n for n in range(1, train_steps + 1) if set(trailing(n, num_train_timesteps)) <= set(trained)]
        raise ValueError(f"a student trained at the timesteps {trained} cannot sample in {steps} steps: they would "
                         f"visit {visited or 'more timesteps than the schedule has'}, which it never trained at. "
                         f"Use steps in {usable}, or train a student with ADDConfig(student_steps={steps}).")
    return visited


def trailing(steps: int, num_train_timesteps: int) -> tuple[int, ...]:
    """Trailing spacing (Lin et al. 2023, Tab. 2), as SDXL-Turbo's scheduler: the first step is t = T - 1."""
    return tuple(int(t) for t in spaced_timesteps(num_train_timesteps, steps, "trailing"))


def student_sampling(steps: int = 1, seed: int | None = None, num_train_timesteps: int = 1000,
                     train_steps: int = STUDENT_TRAIN_STEPS) -> SamplingSettings:
    """How a student draws: Euler-ancestral (eta = 1) at its timesteps, no guidance. At one step this is a
    single x0 prediction from pure noise (the step lands on sigma = 0)."""
    timesteps = student_timesteps(steps, num_train_timesteps, train_steps)
    return SamplingSettings(sampler=TURBO_SAMPLER, steps=len(timesteps), timesteps=timesteps, guidance_scale=1.0,
                            seed=seed)
