"""ncsn-pipeline: noise-conditional score networks and annealed Langevin dynamics for diffusers.

The core (this folder): score models (``modeling_*``), samplers (one file each, ``scheduling_*``; the contract in
`scheduling_utils`), the pipeline and its shared sampling loop (`pipeline_ncsn`), image inputs (`image_processor`),
noise schedules, sampling helpers, losses, and the low modules every layer may use: `checks`, `arguments`,
`bounds`, `errors`, `files`, `lazy` and `folder_records` (the records a pipeline folder keeps about itself).

Subpackages (applications, each on top of the core):

* ``inpainting``: inpainting and colorization pipelines (`NCSNInpaintPipeline`, `NCSNColorizePipeline`).
* ``editing``: SDEdit image-to-image (`NCSNImg2ImgPipeline`).
* ``data``: the data sets (image folders, toys, digits, Fashion-MNIST) training, evaluation and the demo read.
* ``training``: the training loop of ``ncsn-train`` and ``ncsn-train-classifier``, its data, checkpoints.
* ``evaluation``: the digits judge, ``ncsn-eval``'s measurements.
* ``conversion``: published research checkpoints -> pipeline folders (one table entry per family).
* ``hub``: the self-contained export, model cards, Hub transfers.
* ``demo``: the Gradio demo behind ``app.py``.
* ``cli``: every console script's ``main`` and its arguments.
* ``pretrained``: the bundled models, by name.

The import rule, which ``tests/test_package_structure.py`` checks (no import cycle, lazy imports included) and the
standalone export depends on: an exported repository (`ncsn_pipeline.hub.export`) carries ``pipeline_ncsn.py``
and each component's module preceded by the modules they import at module level, *relatively* (``from .checks
import ...``), as the declared table ``EXPORTED_MODULES`` lists them (a test checks the table against the imports),
so those imports must stay relative, at module level, and low (they are copied into every repository). Everything
else a core module uses from the package is imported *absolutely and lazily*, inside the function that needs it
(``from ncsn_pipeline.hub import ...``), under ``try/except ImportError`` where the exported copy must work
without the package: these are optional, and turning them into module-level relative imports would copy the Hub
layer into every repository. The Hub layer, in turn, never imports the pipeline: it is given the class it exports.

Example:

>>> import torch
>>> from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, NCSNScheduler
>>> pipe = NCSNPipeline(unet=GaussianMixtureScore.ncsn_toy(), scheduler=NCSNScheduler.from_preset("ncsn-toy"))
>>> points = pipe(batch_size=8, generator=torch.Generator().manual_seed(0), output_type="np").images

"""

from typing import TYPE_CHECKING

from .lazy import lazy_exports

# Every public name and the module that defines it. Imported on first use (PEP 562), so that importing the package,
# or one of its light modules such as a command line's parser, does not load PyTorch and diffusers.
_EXPORTS = {
    "NCSNImg2ImgPipeline": "editing",
    "NCSNColorizePipeline": "inpainting",
    "NCSNInpaintPipeline": "inpainting",
    "NoiseConditionalClassifier": "modeling_classifier",
    "EDMScoreModel": "modeling_edm",
    "NCSNScoreModel": "modeling_ncsn",
    "NCSNv1ScoreModel": "modeling_ncsn_v1",
    "NCSNppScoreModel": "modeling_ncsnpp",
    "GaussianMixtureClassifier": "modeling_toy",
    "GaussianMixtureScore": "modeling_toy",
    "GaussianScore": "modeling_toy",
    "ToyScoreModel": "modeling_toy",
    "NoiseSchedule": "noise_schedules",
    "ncsnv2_noise_schedule": "noise_schedules",
    "NCSNPipeline": "pipeline_ncsn",
    "NCSNPipelineOutput": "pipeline_ncsn",
    "AdaptiveSDEScheduler": "scheduling_adaptive_sde",
    "DPMSolverPlusPlusScheduler": "scheduling_dpmpp",
    "EDMStochasticScheduler": "scheduling_edm",
    "IPNDMScoreScheduler": "scheduling_ipndm",
    "NCSN_PRESETS": "scheduling_ncsn",
    "NCSNScheduler": "scheduling_ncsn",
    "NCSNSchedulerOutput": "scheduling_ncsn",
    "ProbabilityFlowHeunScheduler": "scheduling_pf_ode_heun",
    "UniPCScheduler": "scheduling_unipc",
    "ScoreSchedulerMixin": "scheduling_utils",
    "ScoreSchedulerOutput": "scheduling_utils",
    "score_schedulers": "scheduling_utils",
    "VEPredictorCorrectorScheduler": "scheduling_ve_pc",
}

if TYPE_CHECKING:  # for type checkers and the API reference: the same names, imported eagerly
    from .editing import NCSNImg2ImgPipeline
    from .inpainting import NCSNColorizePipeline, NCSNInpaintPipeline
    from .modeling_classifier import NoiseConditionalClassifier
    from .modeling_edm import EDMScoreModel
    from .modeling_ncsn import NCSNScoreModel
    from .modeling_ncsn_v1 import NCSNv1ScoreModel
    from .modeling_ncsnpp import NCSNppScoreModel
    from .modeling_toy import GaussianMixtureClassifier, GaussianMixtureScore, GaussianScore, ToyScoreModel
    from .noise_schedules import NoiseSchedule, ncsnv2_noise_schedule
    from .pipeline_ncsn import NCSNPipeline, NCSNPipelineOutput
    from .scheduling_adaptive_sde import AdaptiveSDEScheduler
    from .scheduling_dpmpp import DPMSolverPlusPlusScheduler
    from .scheduling_edm import EDMStochasticScheduler
    from .scheduling_ipndm import IPNDMScoreScheduler
    from .scheduling_ncsn import NCSN_PRESETS, NCSNScheduler, NCSNSchedulerOutput
    from .scheduling_pf_ode_heun import ProbabilityFlowHeunScheduler
    from .scheduling_unipc import UniPCScheduler
    from .scheduling_utils import ScoreSchedulerMixin, ScoreSchedulerOutput, score_schedulers
    from .scheduling_ve_pc import VEPredictorCorrectorScheduler


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


__version__ = "0.2.0"

__all__ = [
    "AdaptiveSDEScheduler",
    "DPMSolverPlusPlusScheduler",
    "EDMScoreModel",
    "EDMStochasticScheduler",
    "GaussianMixtureClassifier",
    "GaussianMixtureScore",
    "GaussianScore",
    "IPNDMScoreScheduler",
    "NCSNColorizePipeline",
    "NCSNImg2ImgPipeline",
    "NCSNInpaintPipeline",
    "NCSNPipeline",
    "NCSNPipelineOutput",
    "NCSNScheduler",
    "NCSNSchedulerOutput",
    "NCSNScoreModel",
    "NoiseConditionalClassifier",
    "NCSNv1ScoreModel",
    "NCSNppScoreModel",
    "NCSN_PRESETS",
    "NoiseSchedule",
    "ProbabilityFlowHeunScheduler",
    "ScoreSchedulerMixin",
    "ScoreSchedulerOutput",
    "ToyScoreModel",
    "UniPCScheduler",
    "VEPredictorCorrectorScheduler",
    "ncsnv2_noise_schedule",
    "score_schedulers",
]
