"""Read a ``torch.save`` file's pickles before anything unpickles them: only what ``torch.save`` writes for tensors in
plain containers may appear (diffusers' ``.bin`` weights, the research checkpoints of ``ncsn-convert``).

``torch.load(weights_only=True)`` never imports code, but it does call the callables it allows (``bytearray``,
``set``, ``torch.Size``, ``_codecs.encode``, ...) with whatever arguments the pickle builds, so a file of a few hundred
bytes can make it work for hours or allocate gigabytes before the result is refused. This check walks the pickle's
opcodes (`pickletools.genops`, linear in its size, nothing executed) and allows:

1. the opcodes that build tuples, lists, dicts, strings, numbers and memo entries (`ALLOWED_OPCODES`);
2. the globals of a state dict (`ALLOWED_GLOBALS`): ``collections.OrderedDict``, torch's tensor and parameter
   rebuild functions and the typed storages of ``torch.save``'s persistent ids. Meta, sparse and quantized tensors
   need other globals and are refused by name too.

Anything else is refused by name (the opcode, or ``module.name``), before torch reads the file. Whatever passes
costs time and memory in proportion to the file: no allowed call takes a size argument it could inflate.
`check_torch_save_file` is the one check every loader runs: the format, a zip's expansion, then the opcodes.
"""

from __future__ import annotations

import io
import os
import pickletools
import zipfile
from pathlib import Path
from typing import IO, Iterator, List, Set, Tuple

STORAGE_TYPES = ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool",
                 "ComplexFloat", "ComplexDouble")  # fmt: skip
ALLOWED_GLOBALS: Set[Tuple[str, str]] = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    *(("torch", f"{kind}Storage") for kind in STORAGE_TYPES),
}
ALLOWED_OPCODES = frozenset(
    """PROTO FRAME STOP MARK POP POP_MARK DUP MEMOIZE PUT BINPUT LONG_BINPUT GET BINGET LONG_BINGET
    NONE NEWTRUE NEWFALSE INT BININT BININT1 BININT2 LONG LONG1 LONG4 FLOAT BINFLOAT
    STRING BINSTRING SHORT_BINSTRING UNICODE BINUNICODE SHORT_BINUNICODE BINUNICODE8
    EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST LIST APPEND APPENDS EMPTY_DICT DICT SETITEM SETITEMS
    GLOBAL STACK_GLOBAL REDUCE BUILD PERSID BINPERSID""".split()
)
LEGACY_PICKLES = 5  # torch.save's legacy format: magic number, protocol, system info, the object, storage keys


NEUTRAL_OPCODES = frozenset({"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"})  # leave the stack as it is


def _ops(stream: IO[bytes]) -> Iterator[Tuple[str, object]]:
    """Each opcode of one pickle as ``(name, argument)``; ``STACK_GLOBAL``'s argument is its ``"module name"``, read
    from the two strings pushed just before it (anything else there is refused as malformed)."""
    memo, pushed = {}, []  # memo index -> string (or None); what the last opcodes pushed (None: not a string)
    for opcode, argument, _ in pickletools.genops(stream):
        name = opcode.name
        if name in NEUTRAL_OPCODES:
            if name != "MEMOIZE" and name.endswith("PUT"):
                memo[argument] = pushed[-1] if pushed else None
            elif name == "MEMOIZE":
                memo[len(memo)] = pushed[-1] if pushed else None
            yield name, argument
            continue
        if name == "STACK_GLOBAL":
            if len(pushed) < 2 or not all(isinstance(part, str) for part in pushed[-2:]):
                raise ValueError("a global whose module and name are not plain strings")
            argument = f"{pushed[-2]} {pushed[-1]}"
        yield name, argument
        value = None
        if isinstance(argument, str) and ("UNICODE" in name or "STRING" in name):
            value = argument
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            value = memo.get(argument)
        pushed = pushed[-8:] + [value]


def _pickle_streams(path: Path) -> Iterator[IO[bytes]]:
    """The pickles of a ``torch.save`` file: ``*/data.pkl`` of the zip format, or the pickles the legacy format
    begins with (at most `LEGACY_PICKLES`; the raw tensor bytes that follow them are not pickle)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.endswith("data.pkl"):
                    yield io.BytesIO(archive.read(info))  # bounded: the caller refused zip bombs first
        return
    with open(path, "rb") as handle:
        for _ in range(LEGACY_PICKLES):
            if not handle.read(1):
                return  # the file ends after fewer pickles (not torch.save's, but its first ones were read)
            handle.seek(-1, os.SEEK_CUR)
            yield handle


def refused_pickle_content(path: Path) -> List[str]:
    """What in the pickles of ``path`` a dict of tensors never holds: opcode names and ``module.name`` globals
    (empty: the file may be unpickled with ``weights_only=True``). Raises `ValueError` for a malformed pickle."""
    refused: List[str] = []
    for stream in _pickle_streams(path):
        try:
            for name, argument in _ops(stream):
                if name not in ALLOWED_OPCODES:
                    refused.append(f"the pickle opcode {name}")
                elif name in ("GLOBAL", "STACK_GLOBAL"):
                    module, _, qualname = str(argument).partition(" ")
                    if (module, qualname) not in ALLOWED_GLOBALS:
                        refused.append(f"{module}.{qualname}")
                if len(refused) >= 5:
                    return refused
        except ValueError as error:
            if refused:  # what was refused already says enough
                return refused
            raise ValueError(f"an unreadable pickle ({error})") from None
    return refused


class UnreadableTorchFile(ValueError):
    """The file is not one ``torch.save`` writes (neither its zip format nor a pickle), or its pickle is malformed."""


def check_torch_save_file(path: Path) -> None:
    """Check ``path`` before ``torch.load(weights_only=True)`` reads it: a ``torch.save`` file (zip or legacy pickle)
    whose zip entries do not expand far beyond the file and whose pickles hold only tensors, numbers, strings and
    plain containers (`refused_pickle_content`). Nothing is unpickled.

    Raises:
        UnreadableTorchFile: not a ``torch.save`` file, or a malformed pickle.
        ValueError: a compressed archive (a zip bomb: ``torch.save`` stores tensors uncompressed) or refused content,
            named in the message.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        is_zip = zipfile.is_zipfile(handle)
        handle.seek(0)  # is_zipfile reads the end of the file
        if not is_zip and handle.read(1) != b"\x80":
            raise UnreadableTorchFile(f"{path} is not a readable PyTorch file (neither a zip nor a pickle).")
    if is_zip:
        # Entries far larger than the file are a zip bomb, which torch.load would expand in memory before any check;
        # the zip directory tells without reading them.
        try:
            with zipfile.ZipFile(path) as archive:
                expanded = sum(info.file_size for info in archive.infolist())
        except (zipfile.BadZipFile, OSError, ValueError) as error:
            raise UnreadableTorchFile(f"{path} is not a readable PyTorch file (a damaged zip file: {error}).") from None
        size = path.stat().st_size
        if expanded > 2 * size + 2**20:
            raise ValueError(
                f"{path} expands to {expanded:,} bytes from {size:,} (torch.save stores tensors uncompressed): a "
                "compressed archive, refused before loading."
            )
    try:
        refused = refused_pickle_content(path)
    except ValueError as error:
        raise UnreadableTorchFile(f"{path} is not a readable PyTorch file ({error}).") from None
    if refused:
        raise ValueError(
            f"{path} names {', '.join(refused)} in its pickle, which tensors, numbers and plain containers never "
            "need; it was not loaded."
        )
