"""The Stable Diffusion versions in miniature, measured (notebook 05): the three versions at matched compute, what
eps- and v-prediction do to brightness, and the v1.x lineage's guidance curves (inpainting:
``ldm_lab.versions.inpainting``).

    table, images = version_table(models, captions, real, encoder, settings)  # FID, KID, CLIP score, intervals
    gaps = brightness_table(models, BRIGHTNESS_PROMPTS, real_by_caption, settings)
    sweep = lineage_sweep(lineage_models, captions, real, encoder, settings)   # guidance 1.5 ... 8

The models are ``ldm_lab.presets.sd_versions``; their training: ``ldm_lab.tasks.targets.sd_versions``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from ldm_lab.compression.verdicts import Verdict
from ldm_lab.conditioning.findings import Estimate, above
from ldm_lab.device import resolve_device
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.diffusion.parameterisation import add_noise, prediction_to_x0
from ldm_lab.metrics import DualEncoder, extract_features, lab_clip_encoder, mean_interval, to_uint8
from ldm_lab.metrics.adherence import guidance_sweep
from ldm_lab.models import LatentDiffusion
from ldm_lab.quality.benchmark import FEATURE_SPACE, held_out_captions, score
from ldm_lab.shipping import load_trained
from ldm_lab.tasks.diffusion import generate

MINIATURES: tuple[str, ...] = ("lab-sd1-like", "lab-sd2-like", "lab-sdxl-like")  # matched compute
BRIGHTNESS_MODELS: tuple[str, ...] = ("lab-sd1-like", "lab-sd2-like", "lab-sd2-like-ztsnr")  # eps, v, v + ZTSNR
LINEAGE: tuple[str, ...] = ("lab-sd1-32px", "lab-sd1-64px", "lab-sd1-cfg")  # SD v1-1 ... v1-3 in miniature
LINEAGE_SCALES: tuple[float, ...] = (1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)  # the model cards' guidance scales
# Emoji that are mostly black or mostly white (names as in the dataset): what Lin et al. 2023 (Fig. 1) show a
# non-zero terminal SNR holds back, since every sample starts from noise of mean zero, mid-grey.
BRIGHTNESS_PROMPTS: tuple[str, ...] = ("black large square", "new moon symbol", "black heart", "medium black circle",
                                       "white large square", "white heart", "medium white circle", "white flower")
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B


def draw(model: LatentDiffusion, prompts: Sequence[str], settings: SamplingSettings, seed: int = 0,
         batch_size: int = 64) -> Tensor:
    """Images [N, C, H, W] in [-1, 1], one per prompt, in batches, from one seeded CPU generator (the same noise
    for every model with the same latent shape)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.cat([generate(model, prompts=list(prompts[start: start + batch_size]), settings=settings,
                               generator=generator).cpu()
                      for start in range(0, len(prompts), batch_size)])


def at_size(images: Tensor, size: int) -> Tensor:
    """``images`` resized to ``size`` x ``size`` (bilinear; unchanged at that size): a 32² model's images beside
    64² ones, as the v1 lineage's 256² checkpoint was compared at 512²."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)


def version_table(models: Mapping[str, LatentDiffusion], captions: Sequence[str], real: Tensor,
                  encoder: DualEncoder, settings: SamplingSettings, *, seed: int = 0,
                  num_resamples: int = 200) -> tuple[pd.DataFrame, dict[str, Tensor]]:
    """One row per model: KID, FID (lab-clip features, against the uint8 ``real`` images) and CLIP score of one
    image per caption, each with its bootstrap 95 % interval, and seconds per image; and the images by model.
    Beside it: ``ldm_lab.quality.benchmark.real_row``, training-split emoji scored the same way."""
    real_features = extract_features(real, FEATURE_SPACE)
    rows, images = [], {}
    for name, model in models.items():
        start = time.perf_counter()
        images[name] = draw(model, captions, settings, seed)
        seconds = (time.perf_counter() - start) / len(captions)
        scores = score(to_uint8(at_size(images[name], real.shape[-1])), captions, real_features, encoder,
                       num_resamples)
        rows.append({"model": name, "prediction": model.preset.prediction.value,
                     "seconds_per_image": seconds, **scores})
    return pd.DataFrame(rows), images


# ----------------------------------------------------------------------------------- eps vs v: brightness
def brightness(images: Tensor) -> Tensor:
    """(b,) mean luma in [0, 1] of RGB images in [-1, 1]."""
    weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return ((images.clamp(-1, 1) + 1) / 2 * weights).sum(1).mean((1, 2))


def brightness_table(models: Mapping[str, LatentDiffusion], prompts: Sequence[str], real: Mapping[str, Tensor],
                     settings: SamplingSettings, *, seeds: int = 16, seed: int = 0,
                     num_resamples: int = 1000) -> pd.DataFrame:
    """One row per model and prompt: the mean brightness of ``seeds`` images drawn for the prompt, with its 95 %
    interval, beside the real emoji's (``real[prompt]``, an image in [-1, 1]) and the gap between them."""
    rows = []
    for name, model in models.items():
        for prompt in prompts:
            generated = brightness(draw(model, [prompt] * seeds, settings, seed))
            truth = float(brightness(real[prompt][None]))
            gap = mean_interval((generated - truth).numpy(), num_resamples=num_resamples, seed=seed)
            rows.append({"model": name, "prediction": model.preset.prediction.value,
                         "zero_terminal_snr": model.schedule.has_zero_terminal_snr, "prompt": prompt,
                         "real": truth, "generated": float(generated.mean()), "gap": gap.estimate,
                         "gap_ci_low": gap.low, "gap_ci_high": gap.high, "seeds": seeds})
    return pd.DataFrame(rows)


def brightness_verdict(table: pd.DataFrame, model: str, other: str, prompts: Sequence[str],
                       which: str = "dark") -> Verdict:
    """Does ``model`` come closer than ``other`` to the real brightness of the ``which`` emoji ``prompts``? Per
    prompt, their absolute gaps by the one rule; the claim holds when ``model`` is closer with intervals apart on
    more prompts than ``other`` is."""
    closer, farther = [], []
    for prompt in prompts:
        decided = above(_abs_gap(table, other, prompt), _abs_gap(table, model, prompt))
        (closer if decided else farther if decided is False else []).append(prompt)
    holds = None if len(closer) == len(farther) else len(closer) > len(farther)
    return Verdict(f"{model} draws the {which} emoji closer to their real brightness than {other}", holds,
                   f"closer with intervals apart on {len(closer)} of {len(prompts)} prompts "
                   f"({', '.join(closer) or '-'}), farther on {len(farther)} ({', '.join(farther) or '-'}); the others "
                   "overlap")


def _abs_gap(table: pd.DataFrame, model: str, prompt: str) -> Estimate:
    """|gap| with its interval (the interval folded at 0 when it straddles it)."""
    row = table[(table.model == model) & (table.prompt == prompt)].iloc[0]
    low, high = sorted((abs(row.gap_ci_low), abs(row.gap_ci_high)))
    low = 0.0 if row.gap_ci_low <= 0 <= row.gap_ci_high else low
    return Estimate(abs(float(row.gap)), low, high)


@torch.no_grad()
def x0_estimates(model: LatentDiffusion, images: Tensor, captions: Sequence[str], timesteps: Sequence[int],
                 seed: int = 0) -> Tensor:
    """(len(timesteps), b, C, H, W): the model's one-step estimate of the clean image from ``images`` noised to
    each timestep (decoded): what a sampler's first steps work with. An eps-model's x0 = (x_t - sqrt(1-ab) eps) /
    sqrt(ab) divides its error by sqrt(ab), small at high noise; a v-model's x0 = sqrt(ab) x_t - sqrt(1-ab) v
    does not."""
    z0 = model.encode(images)
    noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(seed)).to(z0)
    cond = model.condition({"caption": list(captions)}, len(images))
    estimates = []
    for timestep in timesteps:
        t = torch.full((len(images),), int(timestep), device=z0.device)
        alpha_bar = model.schedule.alpha_bar_at(t).view(-1, 1, 1, 1).to(z0)
        x_t = add_noise(z0, noise, alpha_bar)
        x0 = prediction_to_x0(model(x_t, t, **cond), model.preset.prediction.value, x_t, alpha_bar)
        estimates.append(model.decode(x0).clamp(-1, 1).cpu())
    return torch.stack(estimates)


# ------------------------------------------------------------------------------------- the v1.x lineage
def lineage_sweep(models: Mapping[str, LatentDiffusion], captions: Sequence[str], real: Tensor,
                  encoder: DualEncoder, settings: SamplingSettings, scales: Sequence[float] = LINEAGE_SCALES, *,
                  seed: int = 0, num_resamples: int = 200) -> pd.DataFrame:
    """The model cards' curves: per model and guidance scale, FID (lab-clip) and CLIP score of one image per
    caption with 95 % intervals (``guidance_sweep``), the same seed at every scale. Images of a model trained
    at another size are resized to the real images' first."""
    tables = []
    for name, model in models.items():
        def at_scale(prompts: Sequence[str], scale: float, model: LatentDiffusion = model) -> Tensor:
            guided = dataclasses.replace(settings, guidance_scale=scale)
            return at_size(draw(model, prompts, guided, seed), real.shape[-1])

        sweep = guidance_sweep(at_scale, captions, real, scales, encoder, num_resamples=num_resamples, seed=seed)
        tables.append(sweep.assign(model=name, resolution=model.preset.resolution[0]))
    return pd.concat(tables, ignore_index=True)


def lineage_verdicts(sweep: pd.DataFrame, order: Sequence[str] = LINEAGE) -> list[Verdict]:
    """The model card's reading of its curves, on ours: every checkpoint trades FID for CLIP score as guidance
    grows (CLIP score at the largest scale above the smallest's), and each later checkpoint has the lower FID at
    more scales than the one before it (intervals apart, scale by scale)."""
    verdicts = []
    for name in order:
        rows = sweep[sweep.model == name].sort_values("guidance_scale")
        if rows.empty:
            continue
        low, high = Estimate.of(rows.iloc[0], "clip_score"), Estimate.of(rows.iloc[-1], "clip_score")
        verdicts.append(Verdict(f"{name}: guidance raises the CLIP score", above(high, low),
                                f"w={rows.iloc[0].guidance_scale:g}: {low}, w={rows.iloc[-1].guidance_scale:g}: {high}"))
    for earlier, later in zip(order, order[1:]):
        better = _scales_better(sweep, later, earlier)
        worse = _scales_better(sweep, earlier, later)
        if better is None:
            continue
        holds = None if len(better) == len(worse) else len(better) > len(worse)
        verdicts.append(Verdict(f"{later} has a lower FID than {earlier}", holds,
                                f"lower with intervals apart at w = {', '.join(f'{w:g}' for w in better) or '-'}; "
                                f"higher at w = {', '.join(f'{w:g}' for w in worse) or '-'}"))
    return verdicts


def _scales_better(sweep: pd.DataFrame, model: str, other: str) -> list[float] | None:
    """The guidance scales where ``model``'s FID interval lies wholly below ``other``'s (None: one is missing)."""
    a, b = (sweep[sweep.model == name].set_index("guidance_scale") for name in (model, other))
    if a.empty or b.empty:
        return None
    return [w for w in a.index.intersection(b.index)
            if above(Estimate.of(b.loc[w], "fid"), Estimate.of(a.loc[w], "fid"))]


def interval_verdict(table: pd.DataFrame, key: str, a: str, b: str, metric: str, lower_is_better: bool = True
                     ) -> Verdict:
    """"``a`` is better than ``b`` on ``metric``" for two rows of a table (found by their ``key`` column) with
    ``<metric>_ci_low`` / ``_ci_high`` columns, by the one rule: intervals apart decide, overlapping ones do not."""
    rows = table.set_index(key)
    first, second = Estimate.of(rows.loc[a], metric), Estimate.of(rows.loc[b], metric)
    holds = above(second, first) if lower_is_better else above(first, second)
    return Verdict(f"{a} beats {b} on {metric}", holds, f"{first} vs {second}", metric)


LINEAGE_SAMPLING = SamplingSettings(steps=20)  # the package's sampler (DPM-Solver++ 2M, trailing), 20 steps


def record_lineage(run_dirs: Sequence[str | Path], out: str | Path, *, num_samples: int | None = None,
                   scales: Sequence[float] = LINEAGE_SCALES, settings: SamplingSettings = LINEAGE_SAMPLING,
                   num_resamples: int = 200, device: str | torch.device | None = None,
                   report: Callable[[str], None] = print) -> pd.DataFrame:
    """``lineage_sweep`` of the newest checkpoint of each lineage run (EMA weights), one image per held-out caption
    (the first ``num_samples`` of them; None: all 354), written to the CSV file ``out`` (replacing it): the curve
    notebook 05 plots, measured where the runs live, since only the last stage of the lineage ships."""
    device = resolve_device(device)
    models = {}
    for run_dir in run_dirs:
        run = load_trained(run_dir, device)
        if run.target.name not in LINEAGE:
            raise ValueError(f"{run_dir} trained {run.target.name}, not a stage of the v1.x lineage "
                             f"({', '.join(LINEAGE)}): pass the run folders of those targets.")
        models[run.target.name] = run.model.eval()
    real, captions = held_out_captions(1)
    captions = captions[:num_samples] if num_samples else captions
    sweep = lineage_sweep(models, captions, real, lab_clip_encoder(device), settings, scales,
                          num_resamples=num_resamples)
    for row in sweep.itertuples():
        report(f"{row.model} w={row.guidance_scale:g}: FID {row.fid:.1f} [{row.fid_ci_low:.1f}, {row.fid_ci_high:.1f}]"
               f", CLIP score {row.clip_score:.2f}")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    sweep.to_csv(out, index=False)
    return sweep
