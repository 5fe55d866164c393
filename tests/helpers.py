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


def _raw_pickle(*opcodes: bytes) -> bytes:
    return b"\x80\x02" + b"".join(opcodes) + b"."


# Tiny pickles that torch.load(weights_only=True) would act on (allocate, call) before refusing, and what names them.
HOSTILE_PICKLES = [
    # bytearray(2**31 - 1): 2 GiB allocated by weights_only's unpickler before any check of the result
    (_raw_pickle(b"c__builtin__\nbytearray\n", b"J\xff\xff\xff\x7f\x85R"), "__builtin__.bytearray"),
    (_raw_pickle(b"cposix\nsystem\n", b"X\x02\x00\x00\x00id\x85R"), "posix.system"),
    (_raw_pickle(b"c_codecs\nencode\n", b"X\x01\x00\x00\x00aX\x05\x00\x00\x00utf-8\x86R"), "_codecs.encode"),
    (_raw_pickle(b"\x8c\x08builtins\x94\x8c\x03set\x94\x93)R"), "builtins.set"),  # STACK_GLOBAL, memoized
    (_raw_pickle(b"]\x94(K\x01K\x02e\x8f\x94."), "the pickle opcode EMPTY_SET"),
]
