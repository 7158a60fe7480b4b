"""The paper's conclusions, checked against our numbers: each claim gets a verdict computed from a results
table, in plain words, with the numbers that decided it.

LDM §4.1 (Fig. 6, Tab. 6): LDM-{4..16} strike the best balance between efficiency and quality; LDM-1 (pixels)
trains and samples several times slower and is far behind after the same steps; LDM-32 stalls early, its
first stage having compressed away what the diffusion model would need. LDM Tab. 8: reconstruction gets worse
as f grows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

MIDDLE = (4, 8, 16)  # LDM-{4..16}
SEVERAL_TIMES = 2.0  # "several times slower": at most half the throughput (paper, Tab. 6: 2.9x and 3.7x)


@dataclass(frozen=True)
class Verdict:
    """A claim of the paper and whether our table bears it out."""

    claim: str
    holds: bool | None  # None: the table cannot decide (e.g. a factor or a second checkpoint is missing)
    evidence: str       # the numbers that decided it

    def __str__(self) -> str:
        word = {True: "HOLDS", False: "DOES NOT HOLD", None: "UNDECIDED"}[self.holds]
        return f"{word}: {self.claim} -- {self.evidence}"


def _fid(row: pd.Series) -> str:
    return f"{row.fid:.2f} [{row.fid_ci_low:.2f}, {row.fid_ci_high:.2f}]"


def at_common_step(table: pd.DataFrame) -> tuple[int, pd.DataFrame]:
    """The last step every LDM-f reached, and each f's row there: its latest row at or before that step, or,
    for a factor with no row that early (a table of final checkpoints that stopped at different steps), its
    earliest row. The rows keep their ``step`` column, so verdicts can say when each was measured."""
    common = int(table.groupby("f")["step"].max().min())
    ordered = table.sort_values("step")
    early = ordered[ordered.step <= common].groupby("f").tail(1)
    late = ordered[~ordered.f.isin(early.f)].groupby("f").head(1)
    return common, pd.concat([early, late]).set_index("f").sort_index()


def _when(rows: pd.DataFrame) -> str:
    """"at step 3000", or each model's step when they differ."""
    steps = rows.step.astype(int)
    if steps.nunique() == 1:
        return f"at step {steps.iloc[0]}"
    return "at steps " + ", ".join(f"{step} (LDM-{f})" for f, step in steps.items())


def throughputs(table: pd.DataFrame) -> pd.DataFrame:
    """Train and sample samples/s per f (the first measured value of each f's rows)."""
    return table.groupby("f")[["train_samples_per_s", "sample_samples_per_s"]].first()


def best_balance(table: pd.DataFrame) -> Verdict:
    """LDM-{4..16}: the lowest FID at the common step, and faster sampling than LDM-1."""
    claim = "LDM-{4..16} give the best balance of quality and speed"
    _, rows = at_common_step(table)
    best = int(rows.fid.idxmin())
    listing = ", ".join(f"LDM-{f} {_fid(row)}" for f, row in rows.iterrows())
    evidence = f"FID {_when(rows)}: {listing}; best LDM-{best}"
    if best not in MIDDLE:
        return Verdict(claim, False, evidence)
    sampling = throughputs(table).sample_samples_per_s
    speedup = sampling[best] / sampling[1] if 1 in sampling.index else math.nan
    if math.isnan(speedup):
        return Verdict(claim, None, evidence + "; LDM-1's sampling speed is not in the table")
    return Verdict(claim, bool(speedup > 1), evidence + f", which samples {speedup:.1f}x as fast as LDM-1")


def pixel_model_slow(table: pd.DataFrame) -> Verdict:
    """LDM-1 trains and samples at most 1 / ``SEVERAL_TIMES`` as fast as LDM-4 and LDM-8."""
    claim = "LDM-1 trains and samples several times slower than LDM-4 and LDM-8"
    speed = throughputs(table)
    if not {1, 4, 8} <= set(speed.dropna().index):
        return Verdict(claim, None, "throughput of LDM-1, LDM-4 or LDM-8 not measured")
    ratios = {(kind, f): speed.loc[f, kind] / speed.loc[1, kind] for kind in speed.columns for f in (4, 8)}
    evidence = "; ".join(f"LDM-{f} {kind.split('_')[0]}s {ratio:.1f}x as fast" for (kind, f), ratio in ratios.items())
    return Verdict(claim, all(ratio >= SEVERAL_TIMES for ratio in ratios.values()),
                   evidence + " (paper, Tab. 6: 2.9x training, 3.7x sampling)")


def pixel_model_behind(table: pd.DataFrame) -> Verdict:
    """LDM-1's FID at the common step is worse than the best of LDM-{4..16} with the intervals apart ("far"
    behind); worse within overlapping intervals is undecided; as good or better does not hold."""
    claim = "after the same training steps, LDM-1 is far behind LDM-{4..16}"
    _, rows = at_common_step(table)
    middle = rows.loc[[f for f in MIDDLE if f in rows.index]]
    if 1 not in rows.index or middle.empty:
        return Verdict(claim, None, "LDM-1 or every LDM-{4..16} is missing from the table")
    best = middle.fid.idxmin()
    separated = rows.fid_ci_low[1] > middle.fid_ci_high[best]
    evidence = (f"FID {_when(rows.loc[[1, best]])}: LDM-1 {_fid(rows.loc[1])} vs LDM-{best} "
                f"{_fid(middle.loc[best])}; the intervals {'do not' if separated else 'do'} overlap")
    holds = True if separated else (False if rows.fid[1] <= middle.fid[best] else None)
    return Verdict(claim, holds, evidence)


def relative_improvement(table: pd.DataFrame, f: int, step: int) -> float:
    """How much LDM-f's FID fell over the second half of its first ``step`` steps, as a share of its FID at the
    halfway checkpoint; NaN without a checkpoint at or before half the steps."""
    rows = table[(table.f == f) & (table.step <= step)].set_index("step").sort_index()
    early = rows.fid[rows.index <= step / 2]
    return (early.iloc[-1] - rows.fid.iloc[-1]) / early.iloc[-1] if len(early) else math.nan


def large_factor_stalls(table: pd.DataFrame) -> Verdict:
    """LDM-32 improves less over the second half of training than the best middle model, and ends worse."""
    claim = "LDM-32 stalls early: it stops improving while LDM-{4..16} still do, and ends behind them"
    step, rows = at_common_step(table)
    middle = [f for f in MIDDLE if f in rows.index]
    undecided = Verdict(claim, None, "needs LDM-32, an LDM-{4..16}, and their checkpoints at half and all of the "
                                     f"{step} steps every model reached")
    if 32 not in rows.index or not middle:
        return undecided
    best = int(rows.loc[middle].fid.idxmin())
    gain_32, gain_best = relative_improvement(table, 32, step), relative_improvement(table, best, step)
    if math.isnan(gain_32) or math.isnan(gain_best):
        return undecided
    evidence = (f"FID fell by {gain_32:.0%} (LDM-32) and {gain_best:.0%} (LDM-{best}) from step {step // 2} to "
                f"{step}; at step {step}: LDM-32 {_fid(rows.loc[32])}, LDM-{best} {_fid(rows.loc[best])}")
    return Verdict(claim, bool(gain_32 < gain_best and rows.fid[32] > rows.fid[best]), evidence)


def check_conclusions(table: pd.DataFrame) -> list[Verdict]:
    """Every claim of LDM §4.1 against an ablation table (columns of ``AblationRow``: f, step, fid, fid_ci_low,
    fid_ci_high, train_samples_per_s, sample_samples_per_s)."""
    return [check(table) for check in (best_balance, pixel_model_slow, pixel_model_behind, large_factor_stalls)]


def reconstruction_falls_with_f(table: pd.DataFrame, metric: str = "psnr") -> list[Verdict]:
    """LDM Tab. 8, per regulariser: reconstruction ``metric`` (higher is better: psnr, ssim) falls as f grows.
    Lists the pairs of neighbouring factors where it does not."""
    verdicts = []
    for regularizer, rows in table.sort_values("f").groupby("regularizer"):
        values = rows.set_index("f")[metric]
        inversions = [f"f={a} {values[a]:.3g} < f={b} {values[b]:.3g}"
                      for a, b in zip(values.index[:-1], values.index[1:]) if values[a] < values[b]]
        listing = ", ".join(f"f={f}: {value:.3g}" for f, value in values.items())
        evidence = listing + (f"; rises at {'; '.join(inversions)}" if inversions else "")
        verdicts.append(Verdict(f"{regularizer.upper()} reconstruction ({metric}) gets worse as f grows",
                                not inversions, evidence))
    return verdicts
