"""``ldm-lab ship``: train the lab models, first stages first, several at a time within a time budget, and ship
each one's EMA weights (fp16) with its manifest entry.

    rows = ship(["lab-emoji", "lab-layout"], ShipConfig(device="cuda", profile="gpu", jobs=12, budget_s=420))
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ldm_lab.checkpoints import read_manifest
from ldm_lab.data import DATASETS
from ldm_lab.data.materialise import materialise
from ldm_lab.device import describe_device, resolve_device
from ldm_lab.paths import checkpoints_dir, runs_dir
from ldm_lab.shipping.export import export_run
from ldm_lab.shipping.jobs import JobResult, TrainJob, job_environment, run_jobs, train_argv
from ldm_lab.shipping.plan import (ShipConfig, first_stage_of, phase_budget_s, plan_phases, run_time_limit_s,
                                   sources_of, starts_from_of, teacher_of, with_dependencies)
from ldm_lab.tasks.targets import get_target
from ldm_lab.training import latest_checkpoint

SUMMARY_FILE = "ship_summary.json"


@dataclass(frozen=True)
class ShipRow:
    """The outcome of one target, for the summary table."""

    name: str
    phase: int
    status: str                              # "shipped", or what went wrong and where to look
    steps: int | None = None
    training_s: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    size_bytes: int | None = None


def ship_command(name: str, config: ShipConfig) -> str:
    """The command that ships ``name`` again the same way (recorded in its manifest entry)."""
    steps = f" --steps {config.steps}" if config.steps else ""
    device = f" --device {config.device}" if config.device else ""
    return f"ldm-lab ship {name} --profile {config.profile}{device}{steps} --budget-s {config.budget_s:.0f}"


def training_device(config: ShipConfig) -> str:
    """Where the runs trained, in words (for CPU runs: the threads each run had)."""
    device = resolve_device(config.device)
    if device.type != "cpu":
        return describe_device(device)
    return (f"cpu ({os.cpu_count()} cores; {config.jobs} runs at a time, {config.threads_per_job} "
            f"thread{'s' * (config.threads_per_job > 1)} each)")


def materialise_datasets(names: Sequence[str], config: ShipConfig, report: Callable[[str], None]) -> None:
    """Build the training data of ``names`` into the cache once, so that no run renders or decodes on the fly."""
    for dataset, size in dict.fromkeys((get_target(n).dataset, get_target(n).resolution) for n in names):
        procedural = DATASETS[dataset].fetch() is None  # generated on demand: as many items as one asks for
        start = time.perf_counter()
        count = config.scenes if procedural else None
        path = materialise(dataset, "train", size, count, progress=False)
        seconds = time.perf_counter() - start
        report(f"data: {path.name} ({path.stat().st_size / 2**20:.0f} MiB) ready in {seconds:.0f} s")


def shipped_files(folder: Path) -> dict[str, Path]:
    """Shipped name -> file, for the manifest entries whose file is there (a copied tree may lack some)."""
    files = {name: folder / entry.file for name, entry in read_manifest(folder).items()}
    return {name: path for name, path in files.items() if path.is_file()}


def first_stage_file(name: str, folder: Path) -> Path | None:
    """The shipped file a latent target trains on (None: pixel space, or its first stage is not shipped)."""
    return shipped_files(folder).get(first_stage_of(name))


def trained_source(source: str | None, runs: Path, folder: Path) -> Path | None:
    """The trained model of ``source`` (a teacher, or the target a fine-tune starts from): its run in this ship,
    else its shipped file (None: no source, or it was neither trained nor shipped)."""
    if source is None:
        return None
    if latest_checkpoint(runs / source) is not None:
        return runs / source
    return shipped_files(folder).get(source)


def missing_input(name: str, runs: Path, folder: Path) -> str | None:
    """Why ``name`` cannot train yet (None: it can): its first stage, its teacher or its starting weights are
    missing."""
    if first_stage_of(name) and not first_stage_file(name, folder):
        return f"its first stage {first_stage_of(name)} was not shipped"
    for role, source in (("teacher", teacher_of(name)), ("starting point", starts_from_of(name))):
        if source and trained_source(source, runs, folder) is None:
            return f"its {role} {source} was neither trained nor shipped"
    return None


def _job(name: str, runs: Path, limit_s: float, config: ShipConfig, folder: Path) -> TrainJob:
    steps = config.steps or get_target(name).steps[config.profile]
    argv = train_argv(name, runs / name, steps=steps, time_limit_s=limit_s, device=config.device,
                      first_stage=first_stage_file(name, folder),
                      teacher=trained_source(teacher_of(name), runs, folder),
                      init_from=trained_source(starts_from_of(name), runs, folder))
    return TrainJob(name, argv, runs / name, runs / f"{name}.log", timeout_s=limit_s + 3 * config.startup_s + 60)


def _export(job: TrainJob, result: JobResult, phase: int, config: ShipConfig, folder: Path,
            export: bool = True) -> ShipRow:
    """Ship a run that checkpointed (even one that then failed); report one that did not. A model trained only as
    another's source (``export`` False: a teacher, or what a fine-tune starts from) is reported, not shipped."""
    if latest_checkpoint(job.run_dir) is None:
        return ShipRow(job.name, phase, f"failed: exit {result.returncode}, no checkpoint (see {job.log})")
    if not export:
        return ShipRow(job.name, phase, f"trained as a source of another model, not shipped (its run: {job.run_dir})")
    try:
        entry = export_run(job.run_dir, ship_command(job.name, config), training_device(config), folder,
                           resolve_device(config.device))
    except Exception as error:  # one bad export must not stop the others; the row says what happened
        return ShipRow(job.name, phase, f"export failed: {type(error).__name__}: {error}"[:300])
    status = "shipped" if result.returncode == 0 else f"shipped, but exit {result.returncode} (see {job.log})"
    return ShipRow(job.name, phase, status, entry.steps, entry.training_seconds, entry.metrics, entry.size_bytes)


def ship_phase(names: Sequence[str], phase: int, limit_s: float, config: ShipConfig, folder: Path, runs: Path,
               report: Callable[[str], None], sources_only: Collection[str] = ()) -> list[ShipRow]:
    """Train one phase's targets concurrently, then ship each (``sources_only``: train, do not ship)."""
    missing = {name: why for name in names if (why := missing_input(name, runs, folder))}
    rows = [ShipRow(name, phase, f"skipped: {why}") for name, why in missing.items()]
    jobs = [_job(name, runs, limit_s, config, folder) for name in names if name not in missing]
    report(f"phase {phase}: {len(jobs)} runs, {config.jobs} at a time, {limit_s:.0f} s of training each")
    results = run_jobs(jobs, config.jobs, job_environment(config.profile, config.threads_per_job), report)
    return rows + [_export(job, result, phase, config, folder, export=job.name not in sources_only)
                   for job, result in zip(jobs, results)]


def ship(names: Sequence[str], config: ShipConfig, report: Callable[[str], None] = print) -> list[ShipRow]:
    """Train ``names`` (plus the first stages, teachers and starting models they need that are not shipped yet)
    and ship them and the first stages into ``config.checkpoints`` (a source added for another model -- a teacher,
    or what a fine-tune starts from -- trains, but does not ship).
    Returns one row per target; a failed target never stops the others."""
    start = time.perf_counter()
    folder = config.checkpoints or checkpoints_dir()
    runs = config.runs or runs_dir() / "ship" / time.strftime("%Y%m%d-%H%M%S")
    planned = with_dependencies(names, shipped_files(folder))
    sources_only = {source for name in planned for source in sources_of(name) if source not in names}
    phases = plan_phases(planned)
    report(f"ship {sum(map(len, phases))} targets in {config.budget_s:.0f} s on {training_device(config)}: "
           + " | ".join(f"phase {i}: {', '.join(p)}" for i, p in enumerate(phases)))
    if config.materialise:
        materialise_datasets([n for p in phases for n in p], config, report)
    rows = []
    for index, phase in enumerate(phases):
        remaining = config.budget_s - (time.perf_counter() - start)
        budget = phase_budget_s(remaining, index, phases, config.first_stage_share)
        rows += ship_phase(phase, index, run_time_limit_s(budget, len(phase), config), config, folder, runs, report,
                           sources_only)
    (runs / SUMMARY_FILE).write_text(json.dumps([dataclasses.asdict(row) for row in rows], indent=1))
    report(summary_table(rows) + f"\n{time.perf_counter() - start:.0f} s in all; runs and logs in {runs}")
    return rows


def summary_table(rows: Sequence[ShipRow]) -> str:
    """One line per target: status, steps, training seconds, final loss, held-out scores, file size."""
    lines = [f"{'target':24s} {'ph':>2s} {'steps':>7s} {'train s':>8s} {'loss':>8s} {'MiB':>5s}  held-out / status"]
    for row in rows:
        scores = ", ".join(f"{k.removeprefix('val_')} {v:.4g}" for k, v in row.metrics.items() if k.startswith("val_"))
        loss = row.metrics.get("train_loss_final")
        lines.append(f"{row.name:24s} {row.phase:>2d} {row.steps or 0:>7d} {row.training_s or 0:>8.0f} "
                     f"{loss if loss is not None else float('nan'):>8.4f} {(row.size_bytes or 0) / 2**20:>5.1f}  "
                     + (scores if row.status == "shipped" else f"{scores} {row.status}".strip()))
    return "\n".join(lines)
