"""Test-only helpers (kept out of the package)."""

from __future__ import annotations

import threading


def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide state, so that several trainings can run in one Python process."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(reset_partial_state=True)
    PartialState._reset_state()
    GradientState._reset_state()


class RunGauge:
    """Thread-safe count of running calls and its peak: wrap a function with `wrap` to measure concurrency."""

    def __init__(self):
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0

    def wrap(self, function):
        def counted(*args, **kwargs):
            with self._lock:
                self.current += 1
                self.peak = max(self.peak, self.current)
            try:
                return function(*args, **kwargs)
            finally:
                with self._lock:
                    self.current -= 1

        return counted

    def reset_peak(self) -> None:
        """Forget the peak (start a new measurement)."""
        with self._lock:
            self.peak = self.current
