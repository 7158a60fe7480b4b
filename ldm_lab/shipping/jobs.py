"""Training runs as subprocesses (``python -m ldm_lab.cli train ...``), several at a time, each with its own
log. A run that fails or hangs stops only itself: the others go on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

STOP_GRACE_S = 60.0   # after SIGTERM, the seconds a run gets to write its checkpoint before SIGKILL


@dataclass(frozen=True)
class TrainJob:
    """One ``ldm-lab train`` run."""

    name: str               # the target
    argv: tuple[str, ...]   # the full command
    run_dir: Path
    log: Path               # its stdout and stderr
    timeout_s: float        # then SIGTERM (the trainer checkpoints and exits), SIGKILL STOP_GRACE_S later


@dataclass(frozen=True)
class JobResult:
    name: str
    returncode: int         # 0: finished or stopped by its time limit, checkpointed
    seconds: float          # wall time of the process


def train_argv(name: str, run_dir: Path, *, steps: int, time_limit_s: float, device: str | None,
               first_stage: str | Path | None, teacher: str | Path | None = None,
               init_from: str | Path | None = None) -> tuple[str, ...]:
    """The ``ldm-lab train`` command line of one run."""
    argv = [sys.executable, "-m", "ldm_lab.cli", "train", name, "--out", str(run_dir), "--steps", str(steps),
            "--time-limit", f"{time_limit_s:.0f}"]
    argv += ["--device", device] if device else []
    argv += ["--first-stage", str(first_stage)] if first_stage else []
    argv += ["--teacher", str(teacher)] if teacher else []
    argv += ["--init-from", str(init_from)] if init_from else []
    return tuple(argv)


def job_environment(profile: str, threads: int) -> dict[str, str]:
    """The runs' environment: the profile, a fair share of CPU threads, unbuffered output, sparse progress bars
    (a log line every 30 s instead of ten a second)."""
    return {**os.environ, "LDM_LAB_PROFILE": profile, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
            "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "30"}


def run_job(job: TrainJob, env: dict[str, str]) -> JobResult:
    """Run ``job`` to its end, or stop it when it overruns its timeout."""
    job.log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(job.log, "w", encoding="utf-8") as log:
        log.write(" ".join(job.argv) + "\n")
        log.flush()
        process = subprocess.Popen(job.argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            returncode = process.wait(job.timeout_s)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)
            try:
                returncode = process.wait(STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                returncode = process.wait()
    return JobResult(job.name, returncode, time.perf_counter() - start)


def last_progress(run_dir: Path) -> str:
    """``step N loss L`` from a running job's metrics log ("starting" before its first line)."""
    try:
        record = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[-1])
        return f"step {record['step']} loss {record['loss']:.3g}"
    except (OSError, IndexError, ValueError, KeyError):
        return "starting"


def run_jobs(jobs: Sequence[TrainJob], concurrency: int, env: dict[str, str],
             report: Callable[[str], None] = print, heartbeat_s: float = 30.0) -> list[JobResult]:
    """Run ``jobs``, ``concurrency`` at a time; report each end, and every ``heartbeat_s`` the running jobs'
    progress. Results come back in the order of ``jobs``."""
    results: dict[str, JobResult] = {}
    with ThreadPoolExecutor(concurrency) as pool:
        pending = {pool.submit(run_job, job, env): job for job in jobs}
        while pending:
            done, _ = wait(pending, timeout=heartbeat_s, return_when=FIRST_COMPLETED)
            for future in done:
                job, result = pending.pop(future), future.result()
                results[job.name] = result
                outcome = "ok" if result.returncode == 0 else f"FAILED (exit {result.returncode}, see {job.log})"
                report(f"  {job.name}: {outcome} after {result.seconds:.0f} s, {last_progress(job.run_dir)}")
            if not done:
                started = [job for job in pending.values() if job.log.exists()]
                report("  running: " + ", ".join(f"{job.name} {last_progress(job.run_dir)}" for job in started)
                       + f" ({len(pending) - len(started)} queued)")
    return [results[job.name] for job in jobs]
