"""One trainer for every model in ldm-lab: autoencoders, U-Nets, classifiers, dual encoders.

The task supplies the model, a loss and a map-style dataset; the trainer supplies everything else: AdamW with
warm-up + cosine decay, gradient accumulation and clipping, mixed precision, EMA, progress bar, JSONL metrics,
sample grids, atomic safetensors checkpoints, clean stops on SIGINT/SIGTERM and exact resumption.
``accelerate`` places the model, wraps it in DDP when launched on several processes (``accelerate launch`` or
``torchrun``), accumulates gradients and autocasts: one code path from a laptop CPU to several GPUs.

Exact resumption rests on three things, all saved in every checkpoint: the weights and optimizer moments; every
process's RNG states (torch, CUDA, numpy, ``random``); and the data position, from which
:class:`~ldm_lab.training.data.SeededBatchSampler` rebuilds the batch stream. On a deterministic CPU run, a
killed-and-resumed run ends with weights bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from ldm_lab.device import resolve_device
from ldm_lab.files import atomic_write_text
from ldm_lab.training.accelerate_state import forget_single_process_state
from ldm_lab.training.checkpoint import (
    EMA_FILE, MODEL_FILE, checkpoint_path, latest_checkpoint, load_checked,
    optimizer_state_from_safe, optimizer_state_to_safe, prune_checkpoints, read_trainer_state, run_dir_lock,
    write_checkpoint)
from ldm_lab.training.config import TrainConfig
from ldm_lab.training.data import move_to_device, resumable_loader
from ldm_lab.training.ema import EMA
from ldm_lab.training.images import save_image_grid
from ldm_lab.training.progress import TrainProgress, training_progress
from ldm_lab.training.interrupt import GracefulStop
from ldm_lab.training.rng import capture_rng_state, restore_rng_state
from ldm_lab.training.schedule import lr_at
from ldm_lab.training.task import LossModule, SamplingTask, TrainingTask, as_task

CONFIG_FILE, METRICS_FILE, SAMPLES = "config.json", "metrics.jsonl", "samples"
TIME_LIMIT = "time_limit"  # TrainResult.stopped_by when config.time_limit_s ran out


@dataclasses.dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    model: nn.Module              # the trained model (unwrapped, on the training device, in train mode)
    ema_model: nn.Module | None   # its EMA copy, when ``ema_decay > 0``
    step: int                     # optimizer steps done in the whole run
    run_dir: Path                 # config.json, metrics.jsonl, samples/, checkpoints/
    interrupted: bool             # stopped early by SIGINT/SIGTERM or the time limit (``step`` was checkpointed)
    stopped_by: str | None = None  # why it stopped early: TIME_LIMIT or a signal's name ("SIGTERM"); None if not


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019) over the trainable parameters; weight decay on matrices and kernels
    only, not on biases and normalisation scales. The learning rate is set every step from the schedule."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters (all have requires_grad=False).")
    groups = [{"params": [p for p in trainable if p.ndim >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in trainable if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=config.betas)


def make_accelerator(config: TrainConfig) -> Accelerator:
    """An ``Accelerator`` on the configured device (cuda -> mps -> cpu by default) and precision."""
    device = resolve_device(config.device)
    if config.mixed_precision == "fp16" and device.type not in ("cuda", "mps"):
        raise ValueError(f"mixed_precision='fp16' needs a CUDA or MPS device, but training runs on {device.type}; "
                         "use mixed_precision='bf16' (autocast on CPU and recent GPUs) or 'no'.")
    forget_single_process_state(config.mixed_precision, cpu=device.type == "cpu")
    accelerator = Accelerator(
        cpu=device.type == "cpu", mixed_precision=config.mixed_precision,
        gradient_accumulation_steps=config.grad_accum_steps,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters)])
    if accelerator.device.type != device.type:
        raise ValueError(f"asked to train on {device}, but accelerate chose {accelerator.device}. Pick GPUs with "
                         "CUDA_VISIBLE_DEVICES, or set TrainConfig.device=None to take the default.")
    return accelerator


class Trainer:
    """Train ``model`` on ``task`` over ``data`` with ``config``, writing everything into ``run_dir``.

    Args:
        model: any ``nn.Module``; moved to the training device.
        task: a :class:`TrainingTask` (``loss(model, batch)``, optionally ``sample(model)``) or a plain
            ``loss_fn(model, batch) -> Tensor``.
        data: a map-style dataset (``len`` + indexing), or a DataLoader whose dataset and ``collate_fn`` are
            reused; the trainer draws the batches itself so that resuming is exact.
        config: the :class:`TrainConfig`.
        run_dir: folder for config.json, metrics.jsonl, samples/ and checkpoints/.
        resume: continue from the newest checkpoint in ``run_dir`` (a fresh start if there is none). Without
            it, a ``run_dir`` that already holds checkpoints is an error, so no run is overwritten by accident.
        collate_fn: how a list of samples becomes a batch (default: the DataLoader's default collate).
    """

    def __init__(self, model: nn.Module, task: TrainingTask | Callable[[nn.Module, Any], Tensor],
                 data: Dataset | DataLoader, config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
                 collate_fn: Callable[[list], Any] | None = None) -> None:
        self.config, self.run_dir, self.data, self.collate_fn = config, Path(run_dir), data, collate_fn
        self.task = as_task(task)
        self.accelerator = make_accelerator(config)
        self.model = model.to(self.accelerator.device)
        self.ema = EMA(self.model, config.ema_decay) if config.ema_decay > 0 else None
        optimizer = build_optimizer(self.model, config)
        self.step, self.samples_seen, self.elapsed_before = 0, 0, 0.0
        self.session_start, self.stopped_by = time.perf_counter(), None
        checkpoint = self._checkpoint_to_resume(resume)
        if checkpoint is not None:
            self._load(checkpoint, optimizer)
        else:
            set_seed(config.seed + self.accelerator.process_index)
            self._write_run_config()
        self.saved_step = self.step if checkpoint is not None else None
        self.loss_module, self.optimizer = self.accelerator.prepare(LossModule(self.model, self.task), optimizer)

    @property
    def global_batch(self) -> int:
        """Samples per optimizer step over all processes and accumulation steps."""
        c = self.config
        return c.batch_size * c.grad_accum_steps * self.accelerator.num_processes

    # -- the loop ------------------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train until ``config.steps`` (or a SIGINT/SIGTERM, or ``config.time_limit_s``), checkpoint, and return
        the result."""
        batches = self._batches()
        self.model.train()
        self.session_start, window = time.perf_counter(), _MetricsWindow()
        with training_progress(self.config.steps, self.step, self.config.time_limit_s, desc="train",
                               dynamic_ncols=True, disable=not self.accelerator.is_main_process) as progress, \
                GracefulStop() as stop:
            while self.step < self.config.steps and not self._stop_requested(stop):
                loss, grad_norm = self._train_step(batches)
                self.step += 1
                self.samples_seen += self.global_batch
                window.add(loss, grad_norm)
                progress.advance(self.step, time.perf_counter() - self.session_start)
                self._after_step(window, progress)
            if window.steps:
                self._log(window, progress)
            if self.saved_step != self.step:
                self.save_checkpoint()
        return TrainResult(self.model, self.ema.model if self.ema else None, self.step, self.run_dir,
                           interrupted=self.step < self.config.steps,
                           stopped_by=self.stopped_by if self.step < self.config.steps else None)

    def _batches(self) -> Iterator[Any]:
        loader = resumable_loader(self.data, batch_size=self.config.batch_size, seed=self.config.seed,
                                  start=self.samples_seen, rank=self.accelerator.process_index,
                                  world_size=self.accelerator.num_processes, num_workers=self.config.num_workers,
                                  collate_fn=self.collate_fn)
        return iter(loader)

    def _train_step(self, batches: Iterator[Any]) -> tuple[Tensor, Tensor]:
        """One optimizer step over ``grad_accum_steps`` micro-batches: (mean loss, global grad norm before
        clipping). ``accelerator.accumulate`` skips DDP's all-reduce and the optimizer on all but the last."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr_at(self.step, self.config)
        loss_sum = torch.zeros((), device=self.accelerator.device)
        for _ in range(self.config.grad_accum_steps):
            batch = move_to_device(next(batches), self.accelerator.device)
            with self.accelerator.accumulate(self.loss_module):
                loss = self.loss_module(batch)
                self.accelerator.backward(loss)  # divides by grad_accum_steps
                if self.accelerator.sync_gradients:
                    grad_norm = self.accelerator.clip_grad_norm_(
                        self.loss_module.parameters(), self.config.max_grad_norm or float("inf"))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            loss_sum += loss.detach().float()
        if self.ema is not None:
            self.ema.update(self.model, num_updates=self.step)
        return loss_sum / self.config.grad_accum_steps, grad_norm.detach().float()

    def _after_step(self, window: _MetricsWindow, progress: TrainProgress) -> None:
        c = self.config
        if self.step % c.log_every == 0:
            self._log(window, progress)
        if c.sample_every and self.step % c.sample_every == 0:
            self.sample_grid()
        if c.checkpoint_every and self.step % c.checkpoint_every == 0:
            self.save_checkpoint()

    def _stop_requested(self, stop: GracefulStop) -> bool:
        """Stop on a signal or when the time limit is spent; all processes stop at the same step if any of them
        wants to."""
        limit = self.config.time_limit_s
        out_of_time = limit is not None and time.perf_counter() - self.session_start > limit
        requested = stop.requested or out_of_time
        self.stopped_by = stop.signal_name or (TIME_LIMIT if out_of_time else None)
        if self.accelerator.num_processes == 1:
            return requested
        flag = torch.tensor([float(requested)], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    # -- logging and samples -------------------------------------------------------------------------------

    def elapsed_s(self) -> float:
        """Wall time of the whole run, over all sessions."""
        return self.elapsed_before + time.perf_counter() - self.session_start

    def _log(self, window: _MetricsWindow, progress: TrainProgress) -> None:
        loss = self.accelerator.reduce(window.loss_sum.clone(), reduction="mean").item() / window.steps
        record = {"step": self.step, "loss": loss, "lr": lr_at(self.step - 1, self.config),
                  "grad_norm": window.grad_norm_sum.item() / window.steps,
                  "samples_per_s": window.steps * self.global_batch / (time.perf_counter() - window.start),
                  "elapsed_s": self.elapsed_s()}
        window.reset()
        if self.accelerator.is_main_process:
            progress.set_postfix(loss=f"{loss:.4g}", lr=f"{record['lr']:.3g}",
                                 samples_per_s=f"{record['samples_per_s']:.1f}")
            with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as log:
                log.write(json.dumps(record) + "\n")

    def sample_grid(self) -> Path | None:
        """Save ``samples/step_XXXXXX.png`` from the task's ``sample`` (EMA weights if on); main process only.
        The torch RNG is forked and seeded, so every grid uses the same noise and training randomness is
        untouched."""
        if not isinstance(self.task, SamplingTask) or not self.accelerator.is_main_process:
            return None
        model = self.ema.model if self.ema is not None else self.model
        device = self.accelerator.device
        was_training = model.training
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            torch.manual_seed(self.config.seed)
            model.eval()
            try:
                with self.accelerator.autocast():
                    images = self.task.sample(model)
            finally:
                model.train(was_training)
        return save_image_grid(images, self.run_dir / SAMPLES / f"step_{self.step:06d}.png")

    # -- checkpoints ---------------------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Write the checkpoint of the current step (all processes must call this; the main one writes)."""
        device = self.accelerator.device
        rng = {f"rng.{name}": self.accelerator.gather(state.to(device)[None]).cpu()  # [processes, ...]
               for name, state in capture_rng_state().items()}
        folder = checkpoint_path(self.run_dir, self.step)
        if self.accelerator.is_main_process:
            optimizer_tensors, optimizer_json = optimizer_state_to_safe(self.optimizer.state_dict())
            scaler = self.accelerator.scaler
            write_checkpoint(self.run_dir, self.step, model=self.model,
                             ema_model=self.ema.model if self.ema is not None else None,
                             state_tensors={**optimizer_tensors, **rng},
                             state_json={"step": self.step, "samples_seen": self.samples_seen,
                                         "elapsed_s": self.elapsed_s(),
                                         "num_processes": self.accelerator.num_processes,
                                         "optimizer": optimizer_json,
                                         "grad_scaler": scaler.state_dict() if scaler is not None else None,
                                         "config": self.config.to_dict()})
            prune_checkpoints(self.run_dir, self.config.keep_checkpoints)
        self.accelerator.wait_for_everyone()
        self.saved_step = self.step
        return folder

    def _checkpoint_to_resume(self, resume: bool) -> Path | None:
        newest = latest_checkpoint(self.run_dir)
        if newest is not None and not resume:
            raise FileExistsError(
                f"{self.run_dir} already holds checkpoints (newest: {newest.name}). Pass resume=True to continue "
                "that run, or choose a new run directory.")
        return newest

    def _load(self, checkpoint: Path, optimizer: torch.optim.Optimizer) -> None:
        """Restore weights, EMA, optimizer, counters and RNG states from ``checkpoint``."""
        load_checked(self.model, checkpoint / MODEL_FILE)
        if self.ema is not None:
            ema_file = checkpoint / EMA_FILE
            load_checked(self.ema.model, ema_file if ema_file.exists() else checkpoint / MODEL_FILE)
        tensors, meta = read_trainer_state(checkpoint)
        optimizer.load_state_dict(optimizer_state_from_safe(tensors, meta["optimizer"]))
        if meta["grad_scaler"] is not None and self.accelerator.scaler is not None:
            self.accelerator.scaler.load_state_dict(meta["grad_scaler"])
        self.step, self.samples_seen, self.elapsed_before = meta["step"], meta["samples_seen"], meta["elapsed_s"]
        self._restore_rng(tensors, meta["num_processes"])
        _warn_config_changes(TrainConfig.from_dict(meta["config"]), self.config)
        self._truncate_metrics_log()

    def _restore_rng(self, tensors: dict[str, Tensor], saved_processes: int) -> None:
        rank = self.accelerator.process_index
        if saved_processes != self.accelerator.num_processes:
            warnings.warn(f"the checkpoint was written by {saved_processes} processes, this run has "
                          f"{self.accelerator.num_processes}: random streams are reseeded, so the resumed run is "
                          "valid but not bit-identical to an uninterrupted one.", stacklevel=3)
            set_seed(self.config.seed + self.step * 1_000 + rank)
            return
        restore_rng_state({k.removeprefix("rng."): v[rank] for k, v in tensors.items() if k.startswith("rng.")})

    def _write_run_config(self) -> None:
        if not self.accelerator.is_main_process:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        model_config = getattr(self.model, "config", None)
        record = {"train": self.config.to_dict(),
                  "model": {"class": type(self.model).__qualname__,
                            "parameters": sum(p.numel() for p in self.model.parameters()),
                            "config": dataclasses.asdict(model_config)
                            if dataclasses.is_dataclass(model_config) else None},
                  "task": type(self.task).__qualname__, "num_processes": self.accelerator.num_processes}
        atomic_write_text(self.run_dir / CONFIG_FILE, json.dumps(record, indent=1, default=str))

    def _truncate_metrics_log(self) -> None:
        """Drop metrics lines logged after the checkpoint being resumed (the killed session's last steps)."""
        if self.accelerator.is_main_process and (self.run_dir / METRICS_FILE).exists():
            kept = [record for record in read_metrics(self.run_dir) if record["step"] <= self.step]
            atomic_write_text(self.run_dir / METRICS_FILE, "".join(json.dumps(r) + "\n" for r in kept))


def train(model: nn.Module, task: TrainingTask | Callable[[nn.Module, Any], Tensor], data: Dataset | DataLoader,
          config: TrainConfig, run_dir: str | Path, *, resume: bool = False,
          collate_fn: Callable[[list], Any] | None = None) -> TrainResult:
    """``Trainer(...).fit()`` in one call, holding ``run_dir``'s lock (another process training there is an
    error, not a silent mix of two runs); see :class:`Trainer` for the arguments."""
    with run_dir_lock(run_dir):
        return Trainer(model, task, data, config, run_dir, resume=resume, collate_fn=collate_fn).fit()


def read_metrics(run_dir: str | Path) -> list[dict[str, float]]:
    """The metrics log of a run, one dict per line (a line cut short by a kill is skipped)."""
    records = []
    for line in (Path(run_dir) / METRICS_FILE).read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _warn_config_changes(saved: TrainConfig, current: TrainConfig) -> None:
    harmless = {"steps", "checkpoint_every", "keep_checkpoints", "log_every", "sample_every", "num_workers",
                "device", "time_limit_s"}
    changed = [f.name for f in dataclasses.fields(TrainConfig)
               if f.name not in harmless and getattr(saved, f.name) != getattr(current, f.name)]
    if changed:
        warnings.warn(f"resuming with changed settings {changed}: the run continues, but is no longer the same "
                      "as one trained with a single configuration.", stacklevel=4)


class _MetricsWindow:
    """Sums of loss and gradient norm since the last log line, kept on the device (no sync per step)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss_sum, self.grad_norm_sum, self.steps, self.start = 0.0, 0.0, 0, time.perf_counter()

    def add(self, loss: Tensor, grad_norm: Tensor) -> None:
        self.loss_sum = self.loss_sum + loss
        self.grad_norm_sum = self.grad_norm_sum + grad_norm
        self.steps += 1
