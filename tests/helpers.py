"""Test-only helpers (kept out of the package)."""

from __future__ import annotations

import threading
from pathlib import Path


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


def write_wide_ncsnpp_config(tmp_path, nf: int = 4096, ch_mult=None):
    """The tiny score-SDE NCSN++ fixture's checkpoint and a copy of its config with ``nf`` (and ``ch_mult``) changed:
    a config that would build a network of many gigabytes. Returns ``(checkpoint, config_path)``."""
    import json
    from pathlib import Path

    from ncsn_pipeline.conversion import load_original_config

    folder = Path(__file__).parent / "data" / "reference-checkpoints" / "score-sde-ncsnpp-celebahq-tiny"
    config_file = next(path for path in folder.iterdir() if path.suffix in (".json", ".yml", ".yaml"))
    config = load_original_config(config_file)
    config["model"]["nf"] = nf
    if ch_mult is not None:
        config["model"]["ch_mult"] = ch_mult
    huge = tmp_path / "config.json"
    huge.write_text(json.dumps(config))
    return folder / "checkpoint.pth", huge


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A PNG of a few dozen bytes whose header declares ``width x height`` pixels (a decompression bomb)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunks = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path
