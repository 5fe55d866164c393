"""Named models: the one registry the CLI, the demo and `load_pretrained` use.

* Bundled pipelines, trained with ``ncsn-train`` and shipped in this folder (commands in their cards):
  ``"ncsn-fashion"`` (an EDM-preconditioned U-Net on Fashion-MNIST at 28x28, class-conditional: ``class_labels``
  0-9, the names in its card; the demo's default), ``"ncsn-digits"`` (NCSNv2 RefineNet on scikit-learn's 8x8
  digits), ``"ncsn-digits-classes"`` (the same, class-conditional: ``class_labels`` 0-9) and
  ``"ncsn-two-gaussians"`` (an MLP score model of NCSN's 2-D toy).
* Bundled noise-conditional classifiers for classifier guidance (`load_pretrained_classifier`):
  ``"ncsn-digits-classifier"`` (trained with ``ncsn-train-classifier`` on the digits, for ``ncsn-digits``).
* The Fashion-MNIST judge's weights and training record (``fashion-judge``), read by
  `ncsn_pipeline.evaluation.fashion_judge` (not a pipeline, not a guidance classifier), and 200 held-out
  Fashion-MNIST test images (``fashion-mnist-held-out``, for the demo's inpainting tab; its README says which).
* Built-in exact-score pipelines (`ncsn_pipeline.pretrained.builtin`), which need no weights:
  ``"ncsn-toy"``, ``"glyph-mixture"`` and ``"color-glyphs"``.

Everything loads offline:

>>> from ncsn_pipeline.pretrained import load_pretrained, model_names
>>> model_names()  # doctest: +NORMALIZE_WHITESPACE
['color-glyphs', 'glyph-mixture', 'ncsn-digits', 'ncsn-digits-classes', 'ncsn-fashion', 'ncsn-toy',
 'ncsn-two-gaussians']
>>> load_pretrained("ncsn-two-gaussians").sample_shape
(2,)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Union

from ..folder_records import GUIDE_FOLDER, guide_folder
from .builtin import BUILTIN_PIPELINES

PRETRAINED_DIR = Path(__file__).resolve().parent


def pretrained_names() -> List[str]:
    """Names of the bundled (trained) pipelines."""
    return sorted(path.name for path in PRETRAINED_DIR.iterdir() if (path / "model_index.json").is_file())


def model_names() -> List[str]:
    """Every named model: bundled and built-in."""
    return sorted([*pretrained_names(), *BUILTIN_PIPELINES])


def pretrained_path(name: str) -> Path:
    """Folder of a bundled pipeline (pass it to ``NCSNPipeline.from_pretrained``)."""
    path = PRETRAINED_DIR / name
    if not (path / "model_index.json").is_file():
        raise ValueError(f"Unknown pretrained model {name!r}; the package ships {pretrained_names()}.")
    return path


def load_pretrained(name: str):
    """Load a named model (bundled or built-in) as an `NCSNPipeline`, without network access."""
    from ..pipeline_ncsn import NCSNPipeline

    if name in BUILTIN_PIPELINES:
        return BUILTIN_PIPELINES[name]()
    if name in pretrained_names():
        return NCSNPipeline.from_pretrained(pretrained_path(name))
    raise ValueError(f"Unknown model {name!r}; the named models are {model_names()}.")


def classifier_names() -> List[str]:
    """Names of the bundled noise-conditional classifiers."""
    return sorted(path.name for path in PRETRAINED_DIR.iterdir() if (path / "config.json").is_file())


def load_pretrained_classifier(name: str):
    """Load a bundled `NoiseConditionalClassifier` (``classifier=`` of the pipelines), without network access."""
    from ..modeling_classifier import NoiseConditionalClassifier

    if name not in classifier_names():
        raise ValueError(f"Unknown classifier {name!r}; the package ships {classifier_names()}.")
    return NoiseConditionalClassifier.from_pretrained(PRETRAINED_DIR / name).eval()


def guided_names() -> List[str]:
    """Bundled pipelines that ship a guide for autoguidance (``NAME/guide``: a weaker model of the same data)."""
    return [name for name in pretrained_names() if guide_folder(PRETRAINED_DIR / name) is not None]


def is_local_pipeline(name_or_path: Union[str, os.PathLike]) -> bool:
    """Whether ``name_or_path`` is a folder saved by ``NCSNPipeline.save_pretrained`` (it has ``model_index.json``)."""
    return (Path(name_or_path) / "model_index.json").is_file()


def load_pipeline(name_or_path: Union[str, os.PathLike]):
    """A folder saved with ``NCSNPipeline.save_pretrained``, a named model (`model_names`), a bundled model's guide
    (``"NAME/guide"``, `guided_names`), or a Hub repo id.

    One rule for every command: an existing pipeline folder wins over a named model of the same name, as diffusers'
    ``from_pretrained`` prefers a local folder to a repository (train into ``--output_dir ncsn-digits`` and
    ``ncsn-sample --model ncsn-digits`` run there samples your model).
    """
    from ..pipeline_ncsn import NCSNPipeline

    if is_local_pipeline(name_or_path):
        return NCSNPipeline.from_pretrained(name_or_path)
    if isinstance(name_or_path, str) and name_or_path in model_names():
        return load_pretrained(name_or_path)
    base, _, rest = os.fspath(name_or_path).partition("/")
    if isinstance(name_or_path, str) and rest == GUIDE_FOLDER and base in pretrained_names():
        guide = guide_folder(PRETRAINED_DIR / base)
        if guide is None:
            raise ValueError(
                f"{base!r} ships no guide for autoguidance; the bundled models with one: {guided_names()}."
            )
        return NCSNPipeline.from_pretrained(guide)
    path, text = Path(name_or_path), os.fspath(name_or_path)
    repo_id = text[: -len(GUIDE_FOLDER) - 1] if text.endswith(f"/{GUIDE_FOLDER}") else text
    if not path.is_dir() and (path.exists() or repo_id.count("/") != 1):
        raise ValueError(
            f"{text!r} is neither a named model ({model_names()}), nor a pipeline folder, nor a Hub repository id "
            f"'user/name' (its guide: 'user/name/{GUIDE_FOLDER}')."
        )
    return NCSNPipeline.from_pretrained(name_or_path)


def resolve_pipeline(name: str):
    """``(pipeline, folder)``: `load_pipeline`'s pipeline (a named model, a folder or a Hub repository) and the local
    folder ``--record`` writes to (a bundled model's or the given folder; `None` for built-in models and
    repositories)."""
    pipe = load_pipeline(name)
    if is_local_pipeline(name):  # a local folder wins over a name (`load_pipeline`'s rule)
        return pipe, Path(name)
    return pipe, (pretrained_path(name) if name in pretrained_names() else None)
