"""The paper's conclusions, checked against our numbers: each claim gets a verdict computed from a results
table, in plain words, with the numbers that decided it.

LDM §4.1 (Fig. 6, Tab. 6): LDM-{4..16} strike the best balance between efficiency and quality; LDM-1 (pixels)
trains and samples several times slower and is far behind after the same steps; LDM-32 stalls early, its
first stage having compressed away what the diffusion model would need. LDM Tab. 8: reconstruction gets worse
as f grows.

One rule decides every verdict: two numbers are compared by their 95 % intervals. Intervals apart -> the claim
holds or does not hold, whichever way they lie; intervals that overlap -> undecided (``order``). Point estimates
only pick which models to compare (e.g. the best of LDM-{4..16}); they never decide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import pandas as pd

MIDDLE = (4, 8, 16)  # LDM-{4..16}
SEVERAL_TIMES = 2.0  # "several times slower": at most half the throughput (paper, Tab. 6: 2.9x and 3.7x)


@dataclass(frozen=True)
class Verdict:
    """A claim of the paper and whether our table bears it out."""

    claim: str
    holds: bool | None  # None: the table cannot decide (e.g. a factor or a second checkpoint is missing)
    evidence: str       # the numbers that decided it
    metric: str | None = None   # the one metric the claim is about, where it is about one (e.g. "kid")

    @property
    def word(self) -> str:
        """HOLDS, DOES NOT HOLD or UNDECIDED."""
        return {True: "HOLDS", False: "DOES NOT HOLD", None: "UNDECIDED"}[self.holds]

    def __str__(self) -> str:
        return f"{self.word}: {self.claim} -- {self.evidence}"


Z_95 = NormalDist().inv_cdf(0.975)  # 1.96: half-width of a 95 % normal interval, in standard errors


def order(a: tuple[float, float], b: tuple[float, float]) -> int:
    """The one verdict rule on two intervals ``(low, high)``: -1 if ``a`` lies wholly below ``b``, +1 if wholly
    above, 0 if they overlap (then nothing is decided)."""
    if a[1] < b[0]:
        return -1
    if a[0] > b[1]:
        return 1
    return 0


def fid_bounds(row: pd.Series) -> tuple[float, float]:
    """The FID interval of an ``AblationRow``."""
    return float(row.fid_ci_low), float(row.fid_ci_high)


def mean_bounds(mean: float, std: float, count: int) -> tuple[float, float]:
    """95 % interval of a mean over ``count`` items with spread ``std`` (normal approximation:
    mean +- 1.96 std / sqrt(count))."""
    half = Z_95 * std / math.sqrt(count)
    return mean - half, mean + half


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
    """LDM-{4..16}: at the common step the best of them (lowest FID) is better than every model outside the
    range with the FID intervals apart, and it samples faster than LDM-1. A model outside the range better with
    the intervals apart: does not hold; any interval overlapping the best one's: undecided."""
    claim = "LDM-{4..16} give the best balance of quality and speed"
    _, rows = at_common_step(table)
    listing = ", ".join(f"LDM-{f} {_fid(row)}" for f, row in rows.iterrows())
    middle = [f for f in MIDDLE if f in rows.index]
    outside = [f for f in rows.index if f not in MIDDLE]
    if not middle or not outside:
        return Verdict(claim, None, f"FID {_when(rows)}: {listing}; needs an LDM-{{4..16}} and a model outside "
                                    "that range")
    best = int(rows.loc[middle].fid.idxmin())
    orders = {f: order(fid_bounds(rows.loc[f]), fid_bounds(rows.loc[best])) for f in outside}
    better = [f for f, side in orders.items() if side < 0]
    overlapping = [f for f, side in orders.items() if side == 0]
    evidence = f"FID {_when(rows)}: {listing}; best of LDM-{{4..16}}: LDM-{best}"
    if better:
        return Verdict(claim, False, evidence + "; " + ", ".join(f"LDM-{f}" for f in better)
                       + " better, intervals apart")
    if overlapping:
        return Verdict(claim, None, evidence + "; intervals overlap with " + ", ".join(f"LDM-{f}" for f in overlapping))
    sampling = throughputs(table).sample_samples_per_s
    speedup = sampling[best] / sampling[1] if 1 in sampling.index else math.nan
    if math.isnan(speedup):
        return Verdict(claim, None, evidence + ", ahead of the rest with intervals apart; LDM-1's sampling speed "
                                               "is not in the table")
    return Verdict(claim, bool(speedup > 1), evidence + f", ahead of the rest with intervals apart, and samples "
                                                        f"{speedup:.1f}x as fast as LDM-1")


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
    """LDM-1's FID at the common step against the best of LDM-{4..16}: worse with the intervals apart ("far"
    behind) holds, better with the intervals apart does not, overlapping intervals leave it undecided."""
    claim = "after the same training steps, LDM-1 is far behind LDM-{4..16}"
    _, rows = at_common_step(table)
    middle = rows.loc[[f for f in MIDDLE if f in rows.index]]
    if 1 not in rows.index or middle.empty:
        return Verdict(claim, None, "LDM-1 or every LDM-{4..16} is missing from the table")
    best = middle.fid.idxmin()
    side = order(fid_bounds(rows.loc[1]), fid_bounds(middle.loc[best]))
    evidence = (f"FID {_when(rows.loc[[1, best]])}: LDM-1 {_fid(rows.loc[1])} vs LDM-{best} "
                f"{_fid(middle.loc[best])}; the intervals {'do' if side == 0 else 'do not'} overlap")
    return Verdict(claim, {1: True, -1: False, 0: None}[side], evidence)


def fid_drop(table: pd.DataFrame, f: int, step: int) -> tuple[float, float, float] | None:
    """How far LDM-f's FID fell over the second half of its first ``step`` steps: (drop, low, high), the bounds
    the differences of the two checkpoints' interval ends (a conservative interval); None without a checkpoint
    at or before half the steps."""
    rows = table[(table.f == f) & (table.step <= step)].sort_values("step")
    early = rows[rows.step <= step / 2]
    if early.empty or len(rows) < 2:
        return None
    half, end = early.iloc[-1], rows.iloc[-1]
    return (float(half.fid - end.fid), float(half.fid_ci_low - end.fid_ci_high),
            float(half.fid_ci_high - end.fid_ci_low))


def large_factor_stalls(table: pd.DataFrame) -> Verdict:
    """LDM-32 improves less over the second half of training than the best middle model and ends worse, both
    with intervals apart (holds); improving more, or ending better, with intervals apart does not hold; any
    overlap leaves it undecided."""
    claim = "LDM-32 stalls early: it stops improving while LDM-{4..16} still do, and ends behind them"
    step, rows = at_common_step(table)
    middle = [f for f in MIDDLE if f in rows.index]
    undecided = Verdict(claim, None, "needs LDM-32, an LDM-{4..16}, and their checkpoints at half and all of the "
                                     f"{step} steps every model reached")
    if 32 not in rows.index or not middle:
        return undecided
    best = int(rows.loc[middle].fid.idxmin())
    drop_32, drop_best = fid_drop(table, 32, step), fid_drop(table, best, step)
    if drop_32 is None or drop_best is None:
        return undecided
    gains = order(drop_32[1:], drop_best[1:])                       # -1: LDM-32 improved less
    ends = order(fid_bounds(rows.loc[32]), fid_bounds(rows.loc[best]))  # +1: LDM-32 ends worse
    evidence = (f"FID fell by {drop_32[0]:.2f} [{drop_32[1]:.2f}, {drop_32[2]:.2f}] (LDM-32) and {drop_best[0]:.2f} "
                f"[{drop_best[1]:.2f}, {drop_best[2]:.2f}] (LDM-{best}) from step {step // 2} to {step}; at step "
                f"{step}: LDM-32 {_fid(rows.loc[32])}, LDM-{best} {_fid(rows.loc[best])}")
    if gains > 0 or ends < 0:
        return Verdict(claim, False, evidence)
    return Verdict(claim, True if (gains < 0 and ends > 0) else None, evidence)


def check_conclusions(table: pd.DataFrame) -> list[Verdict]:
    """Every claim of LDM §4.1 against an ablation table (columns of ``AblationRow``: f, step, fid, fid_ci_low,
    fid_ci_high, train_samples_per_s, sample_samples_per_s)."""
    return [check(table) for check in (best_balance, pixel_model_slow, pixel_model_behind, large_factor_stalls)]


LOWER_IS_BETTER = frozenset({"rfid", "fid", "kid"})  # metrics where a larger number is a worse reconstruction


def _bounds_of(rows: pd.DataFrame, metric: str) -> pd.Series:
    """Per row, the 95 % interval of ``metric``: its ``<metric>_ci_low`` / ``_ci_high`` columns (rFID's
    bootstrap interval), else the interval of its mean from ``<metric>_std`` and ``num_samples`` (PSNR, SSIM)."""
    if {f"{metric}_ci_low", f"{metric}_ci_high"} <= set(rows.columns):
        return rows.apply(lambda row: (float(row[f"{metric}_ci_low"]), float(row[f"{metric}_ci_high"])), axis=1)
    needed = {metric, f"{metric}_std", "num_samples"}
    if not needed <= set(rows.columns):
        raise ValueError(f"the table needs columns {sorted(needed)} (or {metric}_ci_low and {metric}_ci_high) to put "
                         f"an interval on {metric}; it has {sorted(rows.columns)}. Make it with "
                         "ldm_lab.compression.rows_frame of evaluate_first_stage rows.")
    return rows.apply(lambda row: mean_bounds(row[metric], row[f"{metric}_std"], int(row.num_samples)), axis=1)


def reconstruction_falls_with_f(table: pd.DataFrame, metric: str = "psnr", min_f: int = 1,
                                max_f: int | None = None) -> list[Verdict]:
    """LDM Tab. 8, per regulariser: reconstruction gets worse at every doubling of f from ``min_f`` up to
    ``max_f`` (None: the largest): ``metric`` falls (psnr, ssim) or rises (rfid, ``LOWER_IS_BETTER``). Holds when
    every neighbouring pair worsens with the intervals apart, does not hold when one improves with the intervals
    apart, else undecided; the evidence lists the pairs that improve or overlap."""
    worse = 1 if metric in LOWER_IS_BETTER else -1       # the side of order(b, a) when f = b reconstructs worse
    verdicts = []
    chosen = table[(table.f >= min_f) & (table.f <= (max_f or table.f.max()))]
    for regularizer, rows in chosen.sort_values("f").groupby("regularizer"):
        rows = rows.set_index("f")
        bounds, values = _bounds_of(rows, metric), rows[metric]
        pairs = list(zip(values.index[:-1], values.index[1:]))
        sides = {(a, b): order(bounds[b], bounds[a]) for a, b in pairs}
        better = [f"f={a} {values[a]:.3g} -> f={b} {values[b]:.3g}" for (a, b), side in sides.items()
                  if side == -worse]
        ties = [f"f={a} and f={b}" for (a, b), side in sides.items() if side == 0]
        listing = ", ".join(f"f={f}: {values[f]:.3g} [{low:.3g}, {high:.3g}]" for f, (low, high) in bounds.items())
        evidence = (listing + (f"; improves at {'; '.join(better)}" if better else "")
                    + (f"; intervals overlap at {', '.join(ties)}" if ties else ""))
        holds = False if better else (None if ties or not pairs else True)
        span = (f" from f={min_f}" if min_f > 1 else "") + (f" up to f={max_f}" if max_f else "")
        verdicts.append(Verdict(f"{regularizer.upper()} reconstruction ({metric}) gets worse as f grows{span}",
                                holds, evidence, metric))
    return verdicts


def kl_ahead_of_vq(table: pd.DataFrame, metric: str = "psnr", factors: Sequence[int] = (4, 8, 16)) -> Verdict:
    """LDM Tab. 8: at equal f the KL first stage reconstructs better than the VQ one (``metric`` higher is
    better). Holds when KL is ahead with the intervals apart at every f of ``factors`` in the table, does not
    hold when VQ is ahead with the intervals apart at one, else undecided."""
    claim = f"KL reconstructs better than VQ at equal f ({metric}, f in {list(factors)})"
    rows = table[table.f.isin(factors)]
    paired = sorted(set(rows[rows.regularizer == "kl"].f) & set(rows[rows.regularizer == "vq"].f))
    if not paired:
        return Verdict(claim, None, "needs a KL and a VQ first stage at one of these factors")
    bounds = _bounds_of(rows, metric)
    at = {(r, f): (value, bounds[i]) for i, r, f, value in zip(rows.index, rows.regularizer, rows.f, rows[metric])}
    sides = {f: order(at[("kl", f)][1], at[("vq", f)][1]) for f in paired}
    words = {1: "KL ahead", -1: "VQ ahead", 0: "intervals overlap"}
    evidence = "; ".join(f"f={f}: KL {at[('kl', f)][0]:.3g} vs VQ {at[('vq', f)][0]:.3g} ({words[side]})"
                         for f, side in sides.items())
    if any(side < 0 for side in sides.values()):
        return Verdict(claim, False, evidence)
    return Verdict(claim, True if all(side > 0 for side in sides.values()) else None, evidence)
