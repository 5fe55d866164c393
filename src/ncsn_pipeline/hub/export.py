"""The self-contained repository layout: a pipeline folder that plain diffusers loads without this package.

    model_index.json                 {"_class_name": ["pipeline_ncsn", "NCSNPipeline"],
                                      "unet": ["<model file>", "<Model class>"],
                                      "scheduler": ["<scheduler file>", "<Scheduler class>"], "data_range": ...}
    pipeline_ncsn.py                 the pipeline class (self-contained)
    unet/<model file>.py             the score model class (self-contained), config.json, weights (safetensors)
    scheduler/<scheduler file>.py    the sampler, generated with its helpers inlined, scheduler_config.json
    README.md, sample_grid.png       the model card (rendered from hub_cards/) and samples

``DiffusionPipeline.from_pretrained(folder_or_repo, trust_remote_code=True)`` loads it with plain diffusers;
``NCSNPipeline.from_pretrained`` builds it from the installed package's classes instead (`load_exported_folder`),
never executing the folder's code. Pushed repositories use this layout; ``ncsn-export`` and
``pipe.save_pretrained(folder, standalone=True)`` write it locally.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

from ..errors import HubError
from ..folder_records import CARD_ONLY_RECORDS, CONVERSION_RECORD, GUIDE_FOLDER, TRAINING_RECORD, guide_folder
from .model_card import write_model_card

REMOTE_PIPELINE_FILE = "pipeline_ncsn"


# Components that are diffusers' own classes (converted NCSN++ models): exported as they are, loaded by diffusers.
DIFFUSERS_COMPONENTS = {("diffusers", "UNet2DModel")}


def component_classes() -> Dict[str, type]:
    """Classes that may appear in an exported pipeline, by class name: the package's score models and samplers."""
    from ..modeling_edm import EDMScoreModel
    from ..modeling_ncsn import NCSNScoreModel
    from ..modeling_ncsn_v1 import NCSNv1ScoreModel
    from ..modeling_ncsnpp import NCSNppScoreModel
    from ..modeling_toy import GaussianMixtureScore, ToyScoreModel
    from ..scheduling_utils import score_schedulers

    score_models = (
        EDMScoreModel,
        NCSNScoreModel,
        NCSNv1ScoreModel,
        NCSNppScoreModel,
        GaussianMixtureScore,
        ToyScoreModel,
    )
    models = {cls.__name__: cls for cls in score_models}
    return {**models, **score_schedulers()}


# What each exported code file carries: the package modules that the module it is named after imports at module
# level (relative imports, which the file cannot make), dependencies first, then that module. Declared here, so
# that a published file changes only through this table; `module_imports` reads the imports themselves, and
# tests/test_hub_export.py fails when a list lacks a module its file needs (or carries one it does not).
EXPORTED_MODULES: Dict[str, Tuple[str, ...]] = {
    "pipeline_ncsn": ("checks", "modeling_utils", "guidance", "pipeline_publishing", "pipeline_ncsn"),
    "modeling_edm": ("checks", "modeling_utils", "modeling_ncsn", "modeling_edm"),
    "modeling_ncsn": ("checks", "modeling_utils", "modeling_ncsn"),
    "modeling_ncsn_v1": ("checks", "modeling_utils", "modeling_ncsn", "noise_schedules", "modeling_ncsn_v1"),
    "modeling_ncsnpp": ("checks", "modeling_utils", "modeling_ncsn", "modeling_ncsnpp"),
    "modeling_toy": ("checks", "modeling_utils", "guidance", "modeling_toy"),
    **{
        name: ("checks", "noise_schedules", "sampling", "scheduling_utils", name)
        for name in ("scheduling_adaptive_sde", "scheduling_dpmpp", "scheduling_edm", "scheduling_ipndm",
                     "scheduling_ncsn", "scheduling_unipc", "scheduling_ve_pc")
    },  # fmt: skip
    "scheduling_pf_ode_heun": (
        "checks", "noise_schedules", "sampling", "scheduling_utils", "scheduling_edm", "scheduling_pf_ode_heun"
    ),  # fmt: skip
}


def module_imports(name: str) -> List[str]:
    """The package modules that ``ncsn_pipeline.<name>`` imports at module level (its relative imports), read from
    its source with `ast`."""
    tree = ast.parse(inspect.getsource(importlib.import_module(f"ncsn_pipeline.{name}")))
    return [node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.level == 1]


def _without_package_imports(source: str) -> str:
    """``source`` less its ``from __future__`` import and its module-level relative imports (located with `ast`):
    the exported file holds the imported modules themselves."""
    dropped = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or node.module == "__future__"):
            dropped.update(range(node.lineno, node.end_lineno + 1))
    return "".join(line for number, line in enumerate(source.splitlines(True), 1) if number not in dropped)


def standalone_source(module) -> str:
    """Source of ``module`` with the package modules it imports (`EXPORTED_MODULES`) ahead of it, so that the file
    works on its own; the ``from __future__`` import goes to the top."""
    name = module.__name__.rsplit(".", 1)[-1]
    if name not in EXPORTED_MODULES:
        raise HubError(
            f"{module.__name__} cannot be exported: it has no entry in EXPORTED_MODULES ({sorted(EXPORTED_MODULES)})."
        )
    modules = [importlib.import_module(f"ncsn_pipeline.{part}") for part in EXPORTED_MODULES[name]]
    parts = [
        f'"""Generated by ncsn-pipeline from {", ".join(m.__name__ for m in modules)}: do not edit."""',
        "from __future__ import annotations",
    ]
    for current in modules:
        source = _without_package_imports(inspect.getsource(current))
        parts.append(f"# ---- {current.__name__} " + "-" * max(0, 70 - len(current.__name__)) + "\n" + source)
    return "\n\n".join(parts)


def export_for_hub(
    pipeline_folder: Union[str, os.PathLike],
    target: Union[str, os.PathLike],
    repo_id: Optional[str] = None,
    *,
    pipeline_class: type,
) -> Path:
    """Write the self-contained layout of a saved pipeline folder into ``target`` (which must not exist).

    Copies only what a model repository holds (weights, configs, sample grid), renders the model card,
    adds the self-contained code files and rewrites ``model_index.json`` so that plain diffusers can
    load the result with ``trust_remote_code=True``; a guide for autoguidance (``guide/``) is exported into
    ``target/guide`` the same way. On any error ``target`` is removed again.

    Args:
        pipeline_folder (`str` or `os.PathLike`): A folder written by ``NCSNPipeline.save_pretrained``.
        target (`str` or `os.PathLike`): Where to write the copy.
        repo_id (`str`, *optional*): The repository the card's examples should name.
        pipeline_class (`type`): The pipeline class whose module becomes the repository's ``pipeline_ncsn.py``
            (`NCSNPipeline`); passed in, so that the Hub layer never imports the pipeline that calls it.

    Returns:
        `Path`: ``target``.
    """

    source, target = Path(pipeline_folder), Path(target)
    if not (source / "model_index.json").is_file():
        raise ValueError(f"{source} is not a saved pipeline folder (no model_index.json).")
    if target.exists():
        raise FileExistsError(f"{target} already exists; export into a new folder.")
    index = json.loads((source / "model_index.json").read_text())
    classes = component_classes()
    target.mkdir(parents=True)
    try:
        for component in ("unet", "scheduler"):
            class_name = index[component][1]
            if tuple(index[component]) in DIFFUSERS_COMPONENTS:  # diffusers' own class: no code file needed
                (target / component).mkdir()
                for item in (source / component).iterdir():
                    if item.name.endswith(".safetensors") or item.name.endswith(".json"):
                        shutil.copy2(item, target / component / item.name)
                continue
            if class_name not in classes:
                raise HubError(
                    f"Component {component} is a {class_name} ({index[component][0]}); only {sorted(classes)} can be "
                    "exported."
                )
            (target / component).mkdir()
            for item in (source / component).iterdir():
                if item.name.endswith(".safetensors") or item.name.endswith(".json"):
                    shutil.copy2(item, target / component / item.name)
            module = sys.modules[classes[class_name].__module__]
            module_file = module.__name__.rsplit(".", 1)[-1]
            (target / component / f"{module_file}.py").write_text(standalone_source(module))
            index[component] = [module_file, class_name]
        for extra in ("sample_grid.png", CONVERSION_RECORD, *CARD_ONLY_RECORDS):
            if (source / extra).exists():
                shutil.copy2(source / extra, target / extra)  # the card-only records feed the card, then go
        pipeline_module = sys.modules[pipeline_class.__module__]
        (target / f"{REMOTE_PIPELINE_FILE}.py").write_text(standalone_source(pipeline_module))
        index["_class_name"] = [REMOTE_PIPELINE_FILE, pipeline_class.__name__]
        (target / "model_index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
        guide = guide_folder(source)
        if guide is not None:  # autoguidance's guide: a pipeline of its own, exported the same way, card and all
            guide_repo = f"{repo_id or source.name}/{GUIDE_FOLDER}"
            export_for_hub(guide, target / GUIDE_FOLDER, guide_repo, pipeline_class=pipeline_class)
            if (guide / TRAINING_RECORD).is_file():  # feeds this card's guide section, then goes
                shutil.copy2(guide / TRAINING_RECORD, target / GUIDE_FOLDER / TRAINING_RECORD)
        write_model_card(target, repo_id=repo_id)
        for record in CARD_ONLY_RECORDS:
            (target / record).unlink(missing_ok=True)
            (target / GUIDE_FOLDER / record).unlink(missing_ok=True)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return target


def save_standalone(
    pipeline, save_directory: Union[str, os.PathLike], repo_id: Optional[str] = None, *, pipeline_class: type
) -> Path:
    """Save ``pipeline`` in the self-contained layout (see the module docstring) into a new ``save_directory``,
    with ``pipeline_class``'s code (see `export_for_hub`)."""
    with tempfile.TemporaryDirectory(prefix="ncsn-save-") as staging:
        pipeline.save_pretrained(staging)
        return export_for_hub(staging, save_directory, repo_id=repo_id, pipeline_class=pipeline_class)


def load_exported_folder(folder: Path, pipeline_class, **kwargs):
    """Build a pipeline from a self-contained folder with the installed package's classes (no folder code runs)."""
    index = json.loads((folder / "model_index.json").read_text())
    classes = component_classes()
    components = {}
    for component in ("unet", "scheduler"):
        class_name = index[component][1]
        if tuple(index[component]) in DIFFUSERS_COMPONENTS:
            from diffusers import UNet2DModel

            torch_dtype = kwargs.get("torch_dtype")
            components[component] = UNet2DModel.from_pretrained(
                folder,
                subfolder=component,
                use_safetensors=kwargs.get("use_safetensors", True),
                **({"torch_dtype": torch_dtype} if torch_dtype else {}),
            )
            continue
        if class_name not in classes:
            raise HubError(f"{folder}: component {component} is a {class_name}, unknown to ncsn-pipeline.")
        component_class = classes[class_name]
        if component == "scheduler":
            components[component] = component_class.from_pretrained(folder, subfolder=component)
        else:
            torch_dtype = kwargs.get("torch_dtype")
            components[component] = component_class.from_pretrained(
                folder,
                subfolder=component,
                use_safetensors=kwargs.get("use_safetensors", True),
                **({"torch_dtype": torch_dtype} if torch_dtype is not None else {}),
            )
    return pipeline_class(**components, data_range=index.get("data_range"))
