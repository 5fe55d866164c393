"""Writing files so that a reader never sees a partial one and a failure leaves nothing behind."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def write_atomically(path: Path, save: Callable[[str], None]) -> None:
    """Call ``save(temporary_path)`` and move the result to ``path`` only once it is complete.

    A reader never sees a partial file, and a failure leaves nothing behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(suffix=path.suffix, dir=path.parent, prefix=f".{path.stem}-")
    os.close(handle)
    try:
        save(temporary)
        # mkstemp creates the file private (0600); give it the permissions a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` with `write_atomically`."""
    write_atomically(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))
