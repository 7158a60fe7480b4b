"""Classifier-free guidance (Ho & Salimans 2022) as a wrapper around the model: the guider.

Negative prompts are CFG whose "unconditional" branch is the negative conditioning: the sample is pushed
away from it instead of from the empty prompt.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ldm_lab.diffusion.denoiser import ModelFn

Cond = Mapping[str, Tensor]   # keyword arguments for model_fn, e.g. {"context": ..., "y": ...}


def classifier_free_guidance(uncond: Tensor, cond: Tensor, scale: float) -> Tensor:
    """Ho & Salimans 2022, eq. 6: uncond + w (cond - uncond). w = 1 is the conditional model, w = 0 the
    unconditional one, w > 1 extrapolates away from the unconditional (or negative) prediction."""
    return uncond + scale * (cond - uncond)


def rescale_guidance(guided: Tensor, cond: Tensor, rescale: float) -> Tensor:
    """Lin et al. 2023, §3.4, eqs. 15-16: scale the guided prediction back to the conditional one's
    per-sample standard deviation, then mix with the unrescaled one: phi * rescaled + (1 - phi) * guided.
    Large w inflates the prediction's std and over-exposes images, worst with zero terminal SNR."""
    dims = tuple(range(1, guided.ndim))
    rescaled = guided * (cond.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return rescale * rescaled + (1 - rescale) * guided


def guided_model(model_fn: ModelFn, *, cond: Cond, uncond: Cond | None = None, scale: float = 1.0,
                 rescale: float = 0.0) -> ModelFn:
    """Bind conditioning to ``model_fn`` and apply CFG to its prediction (eps or v), as diffusers does.
    ``uncond`` is the empty or negative conditioning; it is needed only when ``scale != 1``."""
    if scale == 1.0:
        return lambda x, t: model_fn(x, t, **cond)
    if uncond is None:
        raise ValueError(f"guidance_scale={scale} needs unconditional (or negative) conditioning: pass uncond=..., "
                         "e.g. the embedding of the empty prompt, or set guidance_scale=1.0")

    def guided(x: Tensor, t: Tensor) -> Tensor:
        conditional = model_fn(x, t, **cond)
        prediction = classifier_free_guidance(model_fn(x, t, **uncond), conditional, scale)
        return rescale_guidance(prediction, conditional, rescale) if rescale > 0 else prediction

    return guided
