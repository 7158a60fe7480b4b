"""Stop cleanly on SIGINT/SIGTERM: finish the current step, checkpoint, return."""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType


class GracefulStop:
    """While active, the first SIGINT or SIGTERM only sets :attr:`requested`; a second SIGINT raises
    ``KeyboardInterrupt`` at once. Handlers are installed only in the main thread and restored on exit."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signal_name: str | None = None   # the first signal received ("SIGTERM"), for the exit status
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = self.signal_name or signal.Signals(signum).name
        print(f"\n{signal.Signals(signum).name}: finishing this step and writing a checkpoint "
              "(Ctrl-C again to abort without one).", file=sys.stderr, flush=True)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
