"""The one check of every TorchScript file the package loads (``--feature_network``, the Inception network of
``--fid``): loading TorchScript runs its code, and a ``__setstate__`` method runs at load time (it can write any
file the user can, through ``torch.from_file``), before anything else could look at the network. So the archive is
read first, every code file whatever its size, and a file that defines ``__setstate__`` is refused unloaded."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Union

SETSTATE = b"__setstate__"
CHUNK_BYTES = 1 << 20  # code files are read in pieces: a padded, compressed one can expand to gigabytes


def _defines_setstate(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bool:
    """Whether one archive member contains ``__setstate__``, streamed (a match across two pieces is found too)."""
    tail = b""
    with archive.open(info) as member:
        while piece := member.read(CHUNK_BYTES):
            if SETSTATE in tail + piece:
                return True
            tail = piece[-(len(SETSTATE) - 1) :]
    return False


def check_torchscript_file(path: Union[str, os.PathLike], what: str) -> Path:
    """Return ``path`` if it is a TorchScript archive whose code defines no ``__setstate__``; never loads it.

    Args:
        path: The file.
        what: How the message names it, e.g. ``"--feature_network"``.

    Raises:
        ValueError: For a missing file, a file that is not a zip archive (what ``torch.jit.save`` writes), or code
            that would run as the file loads.

    Example:
        >>> check_torchscript_file("missing.pt", "--inception")
        Traceback (most recent call last):
        ValueError: --inception 'missing.pt' is not a file.
    """
    name = os.fspath(path)
    if not Path(name).is_file():
        raise ValueError(f"{what} {name!r} is not a file.")
    if not zipfile.is_zipfile(name):
        raise ValueError(f"{what} {name!r} is not a TorchScript file (torch.jit.save writes a zip archive).")
    with zipfile.ZipFile(name) as archive:
        for info in archive.infolist():
            in_code = "code" in info.filename.split("/")[:2]
            if in_code and info.filename.endswith(".py") and _defines_setstate(archive, info):
                raise ValueError(
                    f"{what} {name!r} defines __setstate__ ({info.filename}), code that would run as the file loads; "
                    "it is refused unloaded. Use the official file, or a network you saved yourself with "
                    "torch.jit.save."
                )
    return Path(name)
