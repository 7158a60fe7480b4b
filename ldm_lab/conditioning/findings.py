"""Notebook 04's "what the papers found vs what we found", computed from the tables it just produced.

Every verdict follows the project's one rule: two estimates whose 95 % intervals are apart differ (the claim
HOLDS or DOES NOT HOLD, by the direction); overlapping intervals are UNDECIDED. The claims:

* guidance buys prompt adherence: CLIP score at the largest guidance scale above CLIP score at w = 1
  (Ho & Salimans 2022; the Stable Diffusion model cards' FID-vs-CLIP curves);
* FID has a minimum at moderate guidance: the best FID between w = 1 and the largest w is below both ends
  (the cards' curves turn up again at large w);
* layout-to-image (LDM §4.3.1) and semantic synthesis (LDM §4.3.2) follow their condition: the generated images
  score above the same images judged against shuffled conditions;
* SDXL's size conditioning (§2.2): a larger requested original size gives sharper images.

And one number the first stage sets: the *ceiling* of a latent model is what real images score after its
autoencoder, ``autoencoded``; a generator decoding through it cannot do better than that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import Tensor

from ldm_lab.compression.verdicts import Verdict
from ldm_lab.device import model_device
from ldm_lab.metrics.adherence import AUTOENCODED
from ldm_lab.metrics.sharpness import sharpness_rises
from ldm_lab.models import LatentDiffusion


@dataclass(frozen=True)
class Estimate:
    """A measured value with its 95 % interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3g} [{self.low:.3g}, {self.high:.3g}]"

    @classmethod
    def of(cls, row: pd.Series, column: str) -> Estimate:
        """``row[column]`` and its bounds ``<column>_ci_low`` / ``<column>_ci_high`` (a guidance-sweep row, or a
        ``baseline_table`` row with ``column="mean"``)."""
        return cls(float(row[column]), float(row[f"{column}_ci_low"]), float(row[f"{column}_ci_high"]))


def above(larger: Estimate, smaller: Estimate) -> bool | None:
    """The one rule: True when ``larger``'s interval lies wholly above ``smaller``'s, False when wholly below,
    None (undecided) when they overlap."""
    if larger.low > smaller.high:
        return True
    if larger.high < smaller.low:
        return False
    return None


def _apart(holds: bool | None) -> str:
    return "intervals overlap" if holds is None else "intervals apart"


# -------------------------------------------------------------------------------------------------- guidance
def _by_scale(sweep: pd.DataFrame) -> pd.DataFrame:
    return sweep.sort_values("guidance_scale").set_index("guidance_scale")


def guidance_raises_clip_score(sweep: pd.DataFrame) -> Verdict:
    """CLIP score at the largest guidance scale of ``guidance_sweep``'s table vs at the smallest (w = 1)."""
    rows = _by_scale(sweep)
    low_w, high_w = rows.index[0], rows.index[-1]
    first, last = Estimate.of(rows.loc[low_w], "clip_score"), Estimate.of(rows.loc[high_w], "clip_score")
    holds = above(last, first)
    return Verdict("guidance raises the CLIP score (prompt adherence)", holds,
                   f"CLIP score {first} at w={low_w:g}, {last} at w={high_w:g}; {_apart(holds)}")


def fid_minimum_at_moderate_guidance(sweep: pd.DataFrame) -> Verdict:
    """The lowest FID between the smallest and the largest scale vs the FID at each end: below both with
    intervals apart holds; above either with intervals apart does not hold; otherwise undecided."""
    claim = "FID is lowest at moderate guidance and rises again at large w"
    rows = _by_scale(sweep)
    if len(rows) < 3:
        return Verdict(claim, None, f"the sweep has no scale between w={rows.index[0]:g} and "
                                    f"w={rows.index[-1]:g} (profile too small)")
    middle = rows.iloc[1:-1]
    best = middle["fid"].idxmin()
    moderate = Estimate.of(rows.loc[best], "fid")
    ends = {w: Estimate.of(rows.loc[w], "fid") for w in (rows.index[0], rows.index[-1])}
    below_ends = [above(end, moderate) for end in ends.values()]   # True: that end's FID is worse (higher)
    holds = True if all(b is True for b in below_ends) else False if any(b is False for b in below_ends) else None
    listing = ", ".join(f"w={w:g} {e}" for w, e in ends.items())
    return Verdict(claim, holds, f"best moderate FID {moderate} at w={best:g}; ends {listing}; "
                                 f"{'intervals apart' if holds is not None else 'some intervals overlap'}")


# ------------------------------------------------------------------------------------------------- adherence
def _row(table: pd.DataFrame, metric: str, condition: str) -> pd.Series:
    rows = table[(table["metric"] == metric) & (table["condition"] == condition)]
    if rows.empty:
        raise ValueError(f"no row {condition!r} for {metric!r} in the table; it has "
                         f"{sorted(set(zip(table['metric'], table['condition'])))}")
    return rows.iloc[0]


def follows_condition(table: pd.DataFrame, metric: str, claim: str) -> Verdict:
    """``metric`` of the generated images vs the same images against shuffled conditions (a ``layout_report``
    or ``mask_report`` table)."""
    shuffled = next(c for c in table["condition"] if c.startswith("generated, shuffled"))
    generated, chance = (Estimate.of(_row(table, metric, c), "mean") for c in ("generated", shuffled))
    holds = above(generated, chance)
    return Verdict(claim, holds, f"{metric} {generated} generated vs {chance} against {shuffled.split(', ')[1]}; "
                                 f"{_apart(holds)}")


def ceiling_sentence(table: pd.DataFrame, metric: str, model: str) -> str:
    """The decoder's ceiling in words, from a report with the ``AUTOENCODED`` row: what the first stage alone
    makes of the real scenes, and where the generated images stand against that (by the one rule)."""
    real, ceiling, generated = (Estimate.of(_row(table, metric, c), "mean")
                                for c in ("real images", AUTOENCODED, "generated"))
    share = f"{generated.value / ceiling.value:.0%} of it" if ceiling.value > 0 else "the ceiling is 0"
    where = {True: "above the ceiling, intervals apart: this decoder loses what the metric looks for in real "
                   "scenes more than the generator does, so the ceiling does not bound this model",
             False: "below the ceiling, intervals apart: the diffusion model, not the decoder, holds the score down",
             None: "level with the ceiling (intervals overlap): as far as this measurement tells, the model reaches "
                   "what its decoder allows"}[above(generated, ceiling)]
    return (f"{model}: real scenes score {metric} {real}; the same scenes through {model}'s first stage alone "
            f"(encode, decode) score {ceiling}, {ceiling.value / real.value:.0%} of the real score: what this "
            f"decoder makes of perfect latents. The generated images score {generated} ({share}): {where}.")


@torch.no_grad()
def autoencoded(model: LatentDiffusion, images: Tensor, seed: int = 0) -> Tensor:
    """Real images ``[N, C, H, W]`` in [-1, 1] after the model's first stage, D(E(x)) (E samples the KL
    posterior, seeded): what the decoder makes of a perfect latent."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        device = model_device(model)
        return model.decode(model.encode(images.to(device))).clamp(-1, 1).cpu()


def size_sharpens(table: pd.DataFrame, of: str = "images") -> Verdict:
    """SDXL §2.2: a larger requested original size gives sharper images (``ldm_lab.metrics.sharpness``'s table
    and its verdict ``sharpness_rises``: with shared noise, the paired difference of the ends above 0 and no step
    between neighbouring sizes below 0). ``of`` names what was measured, e.g. the latents before the decoder."""
    table = table.sort_values("original_size")
    listing = ", ".join(f"{int(row.original_size)}: {row.sharpness:.3g}" for row in table.itertuples())
    holds = sharpness_rises(table)
    first, last = table.iloc[0], table.iloc[-1]
    if "difference" in table:
        side = "above 0" if last.difference_ci_low > 0 else "below 0" if last.difference_ci_high < 0 else "spans 0"
        ends = (f"paired difference {int(last.original_size)} - {int(first.original_size)}: {last.difference:.3g} "
                f"[{last.difference_ci_low:.3g}, {last.difference_ci_high:.3g}], {side}")
        falling = table.iloc[1:][table["step_ci_high"].iloc[1:] < 0]
        if side == "above 0" and len(falling):
            ends += "; but sharpness falls, intervals apart, from the size before to " + ", ".join(
                f"{int(row.original_size)} ({row.step:.3g} [{row.step_ci_low:.3g}, {row.step_ci_high:.3g}])"
                for row in falling.itertuples())
    else:
        ends = f"ends' {_apart(holds)}"
    return Verdict(f"a larger requested original size gives sharper {of}", holds,
                   f"sharpness by requested size, {listing}; {ends}")


def findings_table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """One row per claim: the claim, the verdict word and the numbers that decided it."""
    return pd.DataFrame([{"claim": v.claim, "verdict": v.word, "evidence": v.evidence} for v in verdicts])


__all__ = ["Estimate", "above", "autoencoded", "ceiling_sentence", "fid_minimum_at_moderate_guidance", "findings_table",
           "follows_condition", "guidance_raises_clip_score", "size_sharpens"]
