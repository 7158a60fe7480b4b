"""The trainer's progress bar: steps for a run bounded by its step count, time for a time-limited one.

tqdm's ETA assumes every remaining step will run. A time-limited run (``TrainConfig.time_limit_s``) stops when
its time is spent, usually long before ``config.steps``: its step bar read "621/5000, ETA 1:47:12" on a run that
stopped after minutes. So a time-limited run's bar fills with the seconds of its limit, and the step count
stands beside it as a number, with no ETA of its own.
"""

from __future__ import annotations

from typing import Any

from tqdm.auto import tqdm

TIME_BAR_FORMAT = ("{desc}: {percentage:3.0f}%|{bar}| {elapsed} of the {limit} time limit, "
                   "step {step} (stops at {steps} if time is left){postfix}")


class StepProgress(tqdm):
    """A run bounded by its step count: the bar counts optimizer steps, and tqdm's ETA is the time to the last."""

    def __init__(self, *, steps: int, step: int, **kwargs: Any) -> None:
        super().__init__(total=steps, initial=step, unit="step", **kwargs)

    def advance(self, step: int, session_s: float) -> None:
        """Show that optimizer step ``step`` is done (``session_s`` is unused: steps measure this bar)."""
        self.update(step - self.n)


class TimeLimitProgress(tqdm):
    """A time-limited run: the bar counts the session's seconds against the limit; the step is a number."""

    def __init__(self, *, steps: int, step: int, time_limit_s: float, **kwargs: Any) -> None:
        self.step, self.steps = step, steps          # read by format_dict, which tqdm calls while it starts
        super().__init__(total=time_limit_s, unit="s", bar_format=TIME_BAR_FORMAT, **kwargs)

    @property
    def format_dict(self) -> dict[str, Any]:
        """tqdm's fields plus ``step``, ``steps`` and ``limit`` (h:mm:ss) for ``TIME_BAR_FORMAT``."""
        fields = super().format_dict
        return fields | {"step": self.step, "steps": self.steps, "limit": self.format_interval(self.total)}

    def advance(self, step: int, session_s: float) -> None:
        """Show that optimizer step ``step`` is done, ``session_s`` seconds into this session."""
        self.step = step
        self.update(min(session_s, self.total) - self.n)


TrainProgress = StepProgress | TimeLimitProgress


def training_progress(steps: int, step: int, time_limit_s: float | None, **kwargs: Any) -> TrainProgress:
    """The bar for a run that is at ``step`` of ``steps``: ``TimeLimitProgress`` when ``time_limit_s`` is set,
    else ``StepProgress``. ``kwargs`` go to tqdm (``desc``, ``disable``, ``file``, ...)."""
    if time_limit_s is None:
        return StepProgress(steps=steps, step=step, **kwargs)
    return TimeLimitProgress(steps=steps, step=step, time_limit_s=time_limit_s, **kwargs)


__all__ = ["StepProgress", "TimeLimitProgress", "TrainProgress", "training_progress"]
