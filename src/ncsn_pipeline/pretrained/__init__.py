"""Small pretrained pipelines shipped with the package, trained with ``ncsn-train`` (commands in their cards).

* ``"ncsn-digits"``: NCSNv2 RefineNet on scikit-learn's handwritten digits (8x8, grey).
* ``"ncsn-two-gaussians"``: an MLP score model of NCSN's 2-D toy 0.2 N((-5,-5), I) + 0.8 N((5,5), I).

They load offline, from the installed package:

>>> from ncsn_pipeline.pretrained import load_pretrained
>>> pipe = load_pretrained("ncsn-two-gaussians")
>>> pipe.sample_shape
(2,)
"""

from __future__ import annotations

from pathlib import Path
from typing import List

PRETRAINED_DIR = Path(__file__).resolve().parent


def pretrained_names() -> List[str]:
    """Names of the bundled pipelines."""
    return sorted(path.name for path in PRETRAINED_DIR.iterdir() if (path / "model_index.json").is_file())


def pretrained_path(name: str) -> Path:
    """Folder of a bundled pipeline (pass it to ``NCSNPipeline.from_pretrained``)."""
    path = PRETRAINED_DIR / name
    if not (path / "model_index.json").is_file():
        raise ValueError(f"Unknown pretrained model {name!r}; the package ships {pretrained_names()}.")
    return path


def load_pretrained(name: str):
    """Load a bundled pipeline with ``NCSNPipeline.from_pretrained`` (no network access)."""
    from ..pipeline_ncsn import NCSNPipeline

    return NCSNPipeline.from_pretrained(pretrained_path(name))
