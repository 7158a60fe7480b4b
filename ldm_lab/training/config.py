"""The training configuration: one frozen dataclass, one documented field per knob."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Literal

from ldm_lab.names import unknown_name_error

MixedPrecision = Literal["no", "bf16", "fp16"]
MIXED_PRECISION_CHOICES: tuple[str, ...] = ("no", "bf16", "fp16")


@dataclass(frozen=True)
class TrainConfig:
    """Everything :class:`~ldm_lab.training.Trainer` needs besides the model, the task and the data.

    The effective batch of one optimizer step is ``batch_size * grad_accum_steps * num_processes``.
    """

    steps: int = 1000                    # optimizer steps in the whole run (a resumed run counts from its checkpoint)
    batch_size: int = 32                 # samples in one forward pass on one process (a "micro-batch")
    grad_accum_steps: int = 1            # micro-batches whose gradients are summed before each optimizer step
    lr: float = 1e-4                     # peak learning rate, reached at the end of warm-up
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW's decay rates of the first and second moment estimates
    weight_decay: float = 0.0            # AdamW's decoupled decay; applied to matrices/kernels only (ndim >= 2)
    warmup_steps: int = 0                # linear warm-up from 0 to ``lr`` over this many steps
    min_lr_ratio: float = 0.1            # cosine decay ends at ``lr * min_lr_ratio`` (1.0: constant after warm-up)
    ema_decay: float = 0.0               # EMA of the weights, ema <- decay*ema + (1-decay)*w each step (0: off)
    max_grad_norm: float | None = 1.0    # clip the global gradient norm to this (None: no clipping, norm still logged)
    mixed_precision: MixedPrecision = "no"  # autocast dtype: "no", "bf16" (CPU and recent GPUs), "fp16" (GPU only)
    checkpoint_every: int = 500          # checkpoint every this many steps (0: only at the end and on interrupt)
    keep_checkpoints: int = 2            # newest checkpoints kept in the run directory; older ones are deleted
    log_every: int = 10                  # write a metrics line (mean loss, lr, grad norm, samples/s) every N steps
    sample_every: int = 0                # save a sample grid every N steps if the task can sample (0: never)
    seed: int = 0                        # seeds the loss's RNGs (seed + process index), the data order, sample noise
    num_workers: int = 0                 # DataLoader worker processes (keep random augmentation in the task's loss)
    find_unused_parameters: bool = False  # DDP only: set True if the loss leaves some trainable weights unused
    device: str | None = None            # None or "auto": cuda, then mps, then cpu; "cpu" forces the CPU
    time_limit_s: float | None = None    # stop (checkpointed, resumable) after this many seconds of this session:
                                         # time-boxed runs for notebooks' laptop profile (None: no limit)

    def __post_init__(self) -> None:
        positive = {"steps": self.steps, "batch_size": self.batch_size, "grad_accum_steps": self.grad_accum_steps,
                    "log_every": self.log_every, "keep_checkpoints": self.keep_checkpoints}
        for name, value in positive.items():
            if value < 1:
                raise ValueError(f"TrainConfig.{name} must be at least 1, got {value}.")
        for name in ("warmup_steps", "checkpoint_every", "sample_every", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0 (0 turns it off), got {getattr(self, name)}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"TrainConfig.ema_decay must be in [0, 1) (0 turns EMA off), got {self.ema_decay}; "
                             "typical values are 0.999 or 0.9999.")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"TrainConfig.min_lr_ratio is the final lr as a fraction of the peak, in [0, 1]; "
                             f"got {self.min_lr_ratio}.")
        if self.mixed_precision not in MIXED_PRECISION_CHOICES:
            raise unknown_name_error("mixed precision", self.mixed_precision, MIXED_PRECISION_CHOICES,
                                     advice="Set TrainConfig.mixed_precision to one of them.")
        if self.time_limit_s is not None and self.time_limit_s <= 0:
            raise ValueError(f"TrainConfig.time_limit_s must be positive seconds, or None for no limit; "
                             f"got {self.time_limit_s}.")
        if self.max_grad_norm is not None and self.max_grad_norm <= 0:
            raise ValueError(f"TrainConfig.max_grad_norm must be positive, or None for no clipping; "
                             f"got {self.max_grad_norm}.")

    def to_dict(self) -> dict:
        """A JSON-ready dictionary (tuples become lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error that names them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; known fields are {sorted(known)}.")
        if "betas" in values:
            values = {**values, "betas": tuple(values["betas"])}
        return cls(**values)
