"""Public names of a package imported on first use (PEP 562).

Importing the package, or one of its light modules such as a command line's parser, then loads no PyTorch or
diffusers: ``ncsn-train --help`` answers without them.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Dict, List, Tuple


def lazy_exports(package: str, exports: Dict[str, str]) -> Tuple[Callable[[str], Any], Callable[[], List[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``, whose public names live in its submodules as ``exports``
    maps them (name -> submodule); a name is imported when first read, then kept in the package.

    Use it at the end of the package's ``__init__.py``:

        __getattr__, __dir__ = lazy_exports(__name__, {"train": "loop", "TrainingConfig": "config"})

    Example:
        >>> import ncsn_pipeline.training
        >>> getattr_, _ = lazy_exports("ncsn_pipeline.training", {"TrainingConfig": "config"})
        >>> getattr_("TrainingConfig").__name__
        'TrainingConfig'
    """
    namespace = sys.modules[package].__dict__

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(f".{exports[name]}", package), name)
            namespace[name] = value  # later lookups skip this function
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> List[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
