"""The distillation loop: for ADD, alternating student and discriminator updates (ADD §3.1, as StyleGAN-T's); for
LCM, a student update and its target network's EMA step (LCM Alg. 1). On the
project's training machinery: atomic safetensors checkpoints (a kill loses at most the steps since the last one),
an EMA of the student, exact resumption (weights, both optimizers' moments, RNG states, data position), a
``tqdm.auto`` bar, a time limit, clean stops on SIGINT/SIGTERM, JSONL metrics and sample grids.

One process, one device (CUDA, MPS or CPU): the student is a few-million-parameter U-Net.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import set_seed
from torch import Tensor
from torch.utils.data import Dataset

from ldm_lab.data import collate
from ldm_lab.device import model_device
from ldm_lab.distill.add import ADDModels
from ldm_lab.distill.config import DistillConfig
from ldm_lab.distill.lcm import LCMModels
from ldm_lab.files import atomic_write_text
from ldm_lab.tasks.diffusion import generate
from ldm_lab.training import EMA, lr_at, read_metrics, save_image_grid
from ldm_lab.training.checkpoint import (EMA_FILE, MODEL_FILE, latest_checkpoint, load_checked,
                                         optimizer_state_from_safe, optimizer_state_to_safe, prune_checkpoints,
                                         read_trainer_state, write_checkpoint)
from ldm_lab.training.data import move_to_device, resumable_loader
from ldm_lab.training.interrupt import GracefulStop
from ldm_lab.training.progress import training_progress
from ldm_lab.training.rng import capture_rng_state, restore_rng_state
from ldm_lab.training.trainer import METRICS_FILE, SAMPLES, TIME_LIMIT


@dataclass
class DistillResult:
    """What :meth:`Distiller.fit` returns."""

    models: ADDModels | LCMModels  # teacher, student (raw weights), and ADD's feature network and heads or LCM's target
    ema_student: Any               # the student's EMA copy (None without EMA): sample with this one
    step: int                      # student updates done in the whole run
    run_dir: Path
    stopped_by: str | None         # TIME_LIMIT, a signal's name, or None when all steps ran


class Distiller:
    """Train ``models.trainable`` (the student's U-Net, and ADD's heads) with ADD or LCM over ``data`` into
    ``run_dir``."""

    def __init__(self, models: ADDModels | LCMModels, data: Dataset, config: DistillConfig, run_dir: str | Path,
                 resume: bool = False) -> None:
        self.models, self.data, self.config, self.run_dir = models, data, config, Path(run_dir)
        train = config.train
        self.device = model_device(models.teacher)
        self.ema = EMA(models.student, train.ema_decay) if train.ema_decay > 0 else None
        self.optimizers = {
            "student": torch.optim.AdamW([p for p in models.student.parameters() if p.requires_grad], lr=train.lr,
                                         betas=train.betas, weight_decay=train.weight_decay)}
        if isinstance(models, ADDModels):
            self.optimizers["heads"] = torch.optim.AdamW(models.heads.parameters(), lr=config.discriminator_lr,
                                                         betas=config.discriminator_betas, weight_decay=0.0)
        self.step, self.samples_seen, self.elapsed_before, self.saved_step = 0, 0, 0.0, None
        self.cpu_before, self.cpu_start = 0.0, time.process_time()  # process CPU seconds of earlier sessions
        self.session_start: float | None = None   # perf_counter when this session's fit began (None: not fitting)
        checkpoint = latest_checkpoint(self.run_dir)
        if checkpoint is not None and not resume:
            raise FileExistsError(f"{self.run_dir} already holds checkpoints (newest {checkpoint.name}): pass "
                                  "--resume to continue that run, or choose another --out folder.")
        if checkpoint is not None:
            self._load(checkpoint)
        else:
            set_seed(train.seed)

    # -- the loop ------------------------------------------------------------------------------------------

    def fit(self) -> DistillResult:
        """Alternate student and discriminator updates until ``train.steps``, the time limit or a signal; end
        with a checkpoint."""
        train, start, self.cpu_start = self.config.train, time.perf_counter(), time.process_time()
        self.session_start = start
        batches, window, counts, stopped_by = self.batches(), defaultdict(float), defaultdict(int), None
        self.models.train()
        with training_progress(train.steps, self.step, train.time_limit_s, desc="distill", dynamic_ncols=True) \
                as progress, GracefulStop() as stop:
            while self.step < train.steps and stopped_by is None:
                for name, value in self.train_step(next(batches)).items():
                    window[name] += value
                    counts[name] += 1
                self.step += 1
                self.samples_seen += train.batch_size
                progress.advance(self.step, time.perf_counter() - start)
                self._after_step(window, counts, progress, start)
                out_of_time = train.time_limit_s is not None and time.perf_counter() - start > train.time_limit_s
                if (stop.requested or out_of_time) and self.step < train.steps:
                    stopped_by = stop.signal_name or TIME_LIMIT
            self.elapsed_before, self.session_start = self.elapsed_s(), None
            self.cpu_before, self.cpu_start = self.cpu_s(), time.process_time()
            if counts:
                self._log(window, counts, progress, 0.0)
            if self.saved_step != self.step:
                self.save_checkpoint()
        return DistillResult(self.models, self.ema.model if self.ema else None, self.step, self.run_dir, stopped_by)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One student update (ADD: L_adv^G + lambda L_distill; LCM: the consistency loss), then ADD's
        discriminator update (hinge + gamma R1) on the same batch and the student's images from before its update,
        or LCM's target-network EMA step. Returns the losses."""
        models, train = self.models, self.config.train
        lr = lr_at(self.step, train)
        self._set_lr(lr)
        prepared = models.prepare(move_to_device(batch, self.device))
        losses = models.student_losses(prepared)
        optimizer = self.optimizers["student"]
        params = optimizer.param_groups[0]["params"]
        # Every log_every steps, which term steers the student: the norm of each weighted term's gradient (two more
        # backward passes, so not at every step).
        record = ({f"grad_norm_{name}": norm for name, norm in term_gradient_norms(losses.weighted, params).items()}
                  if train.log_every and self.step % train.log_every == 0 else {})
        optimizer.zero_grad(set_to_none=True)
        with models.phase("student backward (U-Net, decoder, feature network)"):
            losses.total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(params, train.max_grad_norm or float("inf"))
        optimizer.step()
        if self.ema is not None:
            self.ema.update(models.student, num_updates=self.step)
        record |= {"loss": losses.total.detach().item(), "adversarial": losses.adversarial.item(),
                   "distillation": losses.distillation.item(), "grad_norm": grad_norm.item(), "lr": lr}
        if isinstance(models, LCMModels):
            models.update_target()
        elif models.config.adversarial_weight > 0:
            d_loss, r1 = models.discriminator_losses(prepared, losses.images)
            heads = self.optimizers["heads"]
            heads.zero_grad(set_to_none=True)
            with models.phase("discriminator step: backward"):
                d_loss.backward()
            heads.step()
            record |= {"discriminator": d_loss.detach().item(), "r1": r1.item()}
        return record

    def _set_lr(self, lr: float) -> None:
        """The student's rate from the schedule; the heads' at the same fraction of their own peak."""
        self.optimizers["student"].param_groups[0]["lr"] = lr
        if "heads" in self.optimizers:
            self.optimizers["heads"].param_groups[0]["lr"] = lr * self.config.discriminator_lr / self.config.train.lr

    def batches(self) -> Iterator[dict[str, Any]]:
        """The run's batch stream from its current data position (exactly where a resumed run left off)."""
        train = self.config.train
        return iter(resumable_loader(self.data, batch_size=train.batch_size, seed=train.seed, start=self.samples_seen,
                                     rank=0, world_size=1, num_workers=train.num_workers, collate_fn=collate))

    def _after_step(self, window: dict[str, float], counts: dict[str, int], progress: Any, start: float) -> None:
        train = self.config.train
        if self.step % train.log_every == 0:
            self._log(window, counts, progress, time.perf_counter() - start)
        if train.sample_every and self.step % train.sample_every == 0:
            self.sample_grid()
        if train.checkpoint_every and self.step % train.checkpoint_every == 0:
            self.save_checkpoint()

    def _log(self, window: dict[str, float], counts: dict[str, int], progress: Any, session_s: float) -> None:
        """Append the means since the last log line (each over the steps that measured it) to the metrics."""
        record = {"step": self.step, **{k: v / counts[k] for k, v in window.items()},
                  "elapsed_s": self.elapsed_before + session_s, "cpu_s": self.cpu_s()}
        window.clear()
        counts.clear()
        progress.set_postfix(loss=f"{record['loss']:.4g}", d=f"{record.get('discriminator', 0):.3g}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / METRICS_FILE, "a", encoding="utf-8") as log:
            log.write(json.dumps(record) + "\n")

    def elapsed_s(self) -> float:
        """Wall seconds of the whole run: earlier sessions' and this one's so far."""
        return self.elapsed_before + (time.perf_counter() - self.session_start if self.session_start is not None
                                      else 0.0)

    def cpu_s(self) -> float:
        """Process CPU seconds of the whole run (all sessions, all threads): its cost on a shared CPU."""
        return self.cpu_before + time.process_time() - self.cpu_start

    def sample_grid(self) -> Path:
        """``samples/step_XXXXXX.png``: the (EMA) student's images of the sample prompts, one row per student
        step count (1, then the training N), from the same seeds every time."""
        student = self.ema.model if self.ema is not None else self.models.student
        prompts, rows, objective = list(self.config.sample_prompts), [], self.config.objective
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            student.eval()
            for steps in sorted({1, objective.student_steps}):
                settings = objective.sampling(steps, self.config.train.seed, student.schedule.num_train_timesteps)
                rows.append(generate(student, prompts=prompts, settings=settings))
            student.train(self.ema is None)
        return save_image_grid(torch.cat(rows), self.run_dir / SAMPLES / f"step_{self.step:06d}.png",
                               columns=len(prompts))

    # -- checkpoints ---------------------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        """Student + heads, the student's EMA, both optimizers, RNG states and counters, atomically."""
        tensors: dict[str, Tensor] = {f"rng.{k}": v for k, v in capture_rng_state().items()}
        optimizers_json = {}
        for name, optimizer in self.optimizers.items():
            state, optimizers_json[name] = optimizer_state_to_safe(optimizer.state_dict())
            tensors |= {f"{name}.{key}": value for key, value in state.items()}
        folder = write_checkpoint(self.run_dir, self.step, model=self.models.trainable,
                                  ema_model=self.ema.model if self.ema is not None else None, state_tensors=tensors,
                                  state_json={"step": self.step, "samples_seen": self.samples_seen,
                                              "elapsed_s": self.elapsed_s(), "cpu_s": self.cpu_s(),
                                              "optimizers": optimizers_json,
                                              "config": self.config.to_dict()})
        prune_checkpoints(self.run_dir, self.config.train.keep_checkpoints)
        self.saved_step = self.step
        return folder

    def _load(self, checkpoint: Path) -> None:
        load_checked(self.models.trainable, checkpoint / MODEL_FILE)
        if self.ema is not None:
            ema_file = checkpoint / EMA_FILE
            if ema_file.exists():
                load_checked(self.ema.model, ema_file)
            else:
                self.ema.model.load_state_dict(self.models.student.state_dict())
        tensors, meta = read_trainer_state(checkpoint)
        for name, optimizer in self.optimizers.items():
            mine = {key.removeprefix(f"{name}."): v for key, v in tensors.items() if key.startswith(f"{name}.")}
            optimizer.load_state_dict(optimizer_state_from_safe(mine, meta["optimizers"][name]))
        restore_rng_state({k.removeprefix("rng."): v for k, v in tensors.items() if k.startswith("rng.")})
        self.step, self.samples_seen, self.elapsed_before = meta["step"], meta["samples_seen"], meta["elapsed_s"]
        self.cpu_before, self.cpu_start = meta["cpu_s"], time.process_time()
        self.saved_step = self.step
        metrics = self.run_dir / METRICS_FILE
        if metrics.exists():  # drop lines a killed session logged after this checkpoint
            kept = [r for r in read_metrics(self.run_dir) if r["step"] <= self.step]
            atomic_write_text(metrics, "".join(json.dumps(r) + "\n" for r in kept))


def term_gradient_norms(terms: dict[str, Tensor], params: list[Tensor]) -> dict[str, float]:
    """The L2 norm of each loss term's gradient on ``params`` (the graph is kept for the total's backward): a
    term whose loss is small can still steer the update, and one whose loss is large may not."""
    norms = {}
    for name, term in terms.items():
        if not term.requires_grad:
            continue  # a term switched off (weight 0) has no graph
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        norms[name] = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads
                                                                   if g is not None])))
    return norms


__all__ = ["DistillResult", "Distiller", "term_gradient_norms"]
