"""The names of the built-in data sets (a module without imports: command lines list them in ``--help`` without
loading PyTorch)."""

from __future__ import annotations

from typing import Tuple

FASHION_MNIST = "fashion-mnist"
TOY_DATASETS: Tuple[str, ...] = ("two-gaussians", "two-moons", "swiss-roll", "checkerboard")
BUILTIN_DATASETS: Tuple[str, ...] = ("digits", FASHION_MNIST, *TOY_DATASETS)
