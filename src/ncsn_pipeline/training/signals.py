"""Stopping ``ncsn-train`` cleanly: the first SIGINT (Ctrl-C) or SIGTERM makes the loop finish its step, save a
complete checkpoint and stop with a one-line message; a second one stops at once."""

from __future__ import annotations

import signal
import threading
from pathlib import Path


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT/SIGTERM after saving a complete checkpoint at the current step."""

    def __init__(self, signal_name: str, global_step: int, output_dir: Path):
        self.signal_name, self.global_step, self.output_dir = signal_name, global_step, output_dir
        super().__init__(
            f"{signal_name} received: saved checkpoint-{global_step} in {output_dir}; continue with the same command "
            "and --resume_from_checkpoint latest."
        )


class StopRequest:
    """Turns the first SIGINT/SIGTERM into a request the loop honours after the current step (a second one kills)."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.requested, self.signal_name, self._previous = False, "", {}

    @classmethod
    def install(cls) -> StopRequest:
        request = cls()
        if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
            for name in cls.SIGNALS:
                number = getattr(signal, name)
                request._previous[number] = signal.signal(number, request._handle)
        return request

    def _handle(self, number, frame) -> None:
        self.requested, self.signal_name = True, signal.Signals(number).name
        for restored, handler in self._previous.items():  # a second signal stops at once
            signal.signal(restored, handler)

    def uninstall(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}
