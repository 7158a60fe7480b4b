"""Benchmarks (not tests), run by ``ldm-lab bench [TARGET ...]`` and ``ldm-lab bench-unet``.

``bench_target`` measures what a training target costs on a device: train throughput (samples/s of a whole
optimizer step: loss forward, backward, AdamW step), sample throughput (samples/s through a sampler at a given
number of steps, guidance included) and peak memory. Rows go to ``data/results/bench.csv`` with the device,
torch version and commit.

``unet`` times our U-Net against diffusers' ``UNet2DConditionModel`` with the same config and the same
weights: one training step (forward + backward) and one inference forward. The two are timed in turns, so
that a busy machine slows both alike, and the best of the repeats is reported (as ``timeit`` advises: the
slower runs measure the other processes, not the code).
"""

from __future__ import annotations

import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from ldm_lab.convert.unet import unet_config_to_diffusers, unet_from_diffusers
from ldm_lab.data import build_dataset, collate
from ldm_lab.device import resolve_device
from ldm_lab.diffusion import SamplingSettings
from ldm_lab.nn.unet import UNetConfig
from ldm_lab.paths import git_commit, results_dir
from ldm_lab.tasks import DiffusionTarget, get_target
from ldm_lab.tasks.diffusion import generate_like
from ldm_lab.training import TrainConfig, build_optimizer

# SD 1.5's layout at a fifth of the width: conv projections, 8 heads, cross-attention at three levels.
BENCH_UNET = UNetConfig(model_channels=64, context_dim=256)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(step: Callable[[], None], device: torch.device) -> float:
    _synchronize(device)
    start = time.perf_counter()
    step()
    _synchronize(device)
    return time.perf_counter() - start


def _train_step(model: nn.Module, run: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        run().square().mean().backward()
    return step


def _inference(run: Callable[[], torch.Tensor]) -> Callable[[], None]:
    def step() -> None:
        with torch.no_grad():
            run()
    return step


def bench_unet(config: UNetConfig = BENCH_UNET, batch: int = 16, size: int = 32, tokens: int = 77,
               repeats: int = 5, device: str | torch.device | None = None) -> dict[str, dict[str, float]]:
    """Best-of-``repeats`` seconds of a training step and an inference forward, ours vs diffusers, same weights."""
    from diffusers import UNet2DConditionModel  # an optional dependency (the test extra): imported when used

    device = resolve_device(device)
    torch.manual_seed(0)
    theirs = UNet2DConditionModel(**unet_config_to_diffusers(config)).to(device)
    ours = unet_from_diffusers(theirs)
    x = torch.randn(batch, config.in_channels, size, size, device=device)
    t = torch.randint(0, 1000, (batch,), device=device)
    context = torch.randn(batch, tokens, config.context_dim, device=device)
    runs = {"ours": (ours, lambda: ours(x, t, context)),
            "diffusers": (theirs, lambda: theirs(x, t, context).sample)}
    steps = {(name, "train_step"): _train_step(model, run) for name, (model, run) in runs.items()}
    steps.update({(name, "inference"): _inference(run) for name, (_, run) in runs.items()})
    times: dict[tuple[str, str], list[float]] = {key: [] for key in steps}
    for step in steps.values():  # warm-up: allocator, kernels, SDPA backend choice
        step()
    for _ in range(repeats):
        for key, step in steps.items():
            times[key].append(_time(step, device))
    result = {kind: {name: min(times[name, kind]) for name in runs}
              for kind in ("train_step", "inference")}
    for kind in result:
        result[kind]["ratio"] = result[kind]["ours"] / result[kind]["diffusers"]
    return result


# --- training targets: train and sample throughput, peak memory -------------------------------------------

@dataclass(frozen=True)
class BenchRow:
    """One row of ``data/results/bench.csv``."""

    target: str                    # training target (``ldm-lab train`` name)
    device: str                    # "cpu", "cuda", "mps"
    device_name: str               # GPU model, or the CPU's platform description
    threads: int                   # torch CPU threads
    batch_size: int
    train_samples_per_s: float     # median over the timed optimizer steps
    sampler: str                   # "" for targets that do not sample (autoencoders)
    sample_steps: int
    guidance_scale: float
    sample_samples_per_s: float    # NaN for targets that do not sample
    peak_memory_mb: float
    memory_kind: str               # "cuda_max_allocated" or "cpu_peak_rss_growth" (see ``PeakMemory``)
    torch_version: str = torch.__version__
    git_commit: str = field(default_factory=git_commit)
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


class PeakMemory:
    """Peak memory of a block. CUDA: ``torch.cuda.max_memory_allocated`` (tensors only, after a reset).
    CPU: how far the process's resident set rose above its size at the start of the block. On Linux the peak
    (``VmHWM``) is reset at the start by writing 5 to ``/proc/self/clear_refs``; elsewhere ``ru_maxrss`` never
    goes down, so a block below an earlier peak reads 0 (bench one target per process there). Other devices: NaN."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.kind = {"cuda": "cuda_max_allocated", "cpu": "cpu_peak_rss_growth"}.get(device.type, "unavailable")

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        self.start_mb = _resident_mb("VmRSS") if _reset_peak_rss() else _max_rss_mb()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.device.type == "cpu":
            peak = _resident_mb("VmHWM") if Path("/proc/self/status").exists() else _max_rss_mb()
            self.mb = max(0.0, peak - self.start_mb)
        else:
            self.mb = float("nan")


def _reset_peak_rss() -> bool:
    """Linux: reset the process's peak resident set size (VmHWM) to its current size. False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _resident_mb(field: str) -> float:
    """A memory field of /proc/self/status (``VmRSS``: now, ``VmHWM``: peak), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024  # the file gives kB
    raise RuntimeError(f"/proc/self/status has no {field} line")


def _max_rss_mb() -> float:
    """The process's peak resident set size so far, in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()


def _median_seconds(step: Callable[[], None], device: torch.device, repeats: int) -> float:
    step()  # warm-up: allocator, kernels, and (first batch) the latent scale
    return statistics.median(_time(step, device) for _ in range(repeats))


def _first_batch(target, batch_size: int, device: torch.device) -> dict:
    data = build_dataset(target.dataset, "train", target.resolution)
    batch = collate([data[i] for i in range(batch_size)])
    return {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def _optimizer_step(model: nn.Module, task, batch: dict) -> Callable[[], None]:
    optimizer = build_optimizer(model, TrainConfig())

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        task.loss(model, batch).backward()
        optimizer.step()
    return step


def _sampling(model: nn.Module, batch: dict, settings: SamplingSettings) -> Callable[[], None]:
    return lambda: generate_like(model.eval(), batch, settings=settings)


def bench_target(name: str, *, device: str | torch.device | None = None, batch_size: int | None = None,
                 sampling: SamplingSettings | None = None, repeats: int = 3) -> BenchRow:
    """Train and sample throughput and peak memory of training target ``name`` (randomly initialised weights,
    real data) on ``device``, at ``batch_size`` (default: the target's training batch size), sampling as
    ``sampling`` says (default: the target's own, ``target.task.sampling``)."""
    for option, value in (("batch_size", batch_size), ("repeats", repeats)):
        if value is not None and value < 1:
            raise ValueError(f"{option} must be >= 1, not {value} (leave batch_size out for the target's own)")
    target, device = get_target(name), resolve_device(device)
    batch_size = target.train.batch_size if batch_size is None else batch_size
    samples = isinstance(target, DiffusionTarget)
    if samples and sampling is None:
        sampling = target.task.sampling
    batch = _first_batch(target, batch_size, device)  # before measuring: the dataset is not the model's memory
    with PeakMemory(device) as memory:
        torch.manual_seed(0)
        model, task = target.build_model().to(device).train(), target.build_task()
        train_s = _median_seconds(_optimizer_step(model, task, batch), device, repeats)
        sample_s = _median_seconds(_sampling(model, batch, sampling), device, repeats) if samples else float("nan")
    return BenchRow(name, device.type, _device_name(device), torch.get_num_threads(), batch_size,
                    batch_size / train_s, sampling.sampler_name if samples else "", sampling.steps if samples else 0,
                    sampling.guidance_scale if samples else 1.0, batch_size / sample_s, memory.mb, memory.kind)


def append_bench_rows(rows: Sequence[BenchRow], folder: Path | None = None) -> Path:
    """Append rows to ``<folder or data/results>/bench.csv`` (header written once); returns the path."""
    path = (folder or results_dir()) / "bench.csv"
    pd.DataFrame([asdict(row) for row in rows]).to_csv(path, mode="a", header=not path.exists(), index=False)
    return path
