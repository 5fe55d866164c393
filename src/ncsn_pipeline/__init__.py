"""ncsn-pipeline: noise-conditional score networks and annealed Langevin dynamics for diffusers.

The core (this folder): score models (``modeling_*``), samplers (``scheduling_*``, contract in
`scheduling_utils`), the pipeline, noise schedules, sampling helpers and losses. Applications live in
subpackages: ``training``, ``hub``, ``evaluation``, ``demo``, ``cli``; named models in ``pretrained``.

Example:

>>> import torch
>>> from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline, NCSNScheduler
>>> pipe = NCSNPipeline(unet=GaussianMixtureScore.ncsn_toy(), scheduler=NCSNScheduler.from_preset("ncsn-toy"))
>>> points = pipe(batch_size=8, generator=torch.Generator().manual_seed(0), output_type="np").images

"""

from .modeling_classifier import NoiseConditionalClassifier
from .modeling_ncsn import NCSNScoreModel
from .modeling_ncsn_v1 import NCSNv1ScoreModel
from .modeling_ncsnpp import NCSNppScoreModel
from .modeling_toy import GaussianMixtureClassifier, GaussianMixtureScore, GaussianScore, ToyScoreModel
from .noise_schedules import NoiseSchedule, ncsnv2_noise_schedule
from .pipeline_ncsn import NCSNPipeline, NCSNPipelineOutput
from .scheduling_adaptive_sde import AdaptiveSDEScheduler
from .scheduling_dpmpp import DPMSolverPlusPlusScheduler
from .scheduling_edm import EDMStochasticScheduler
from .scheduling_ncsn import NCSN_PRESETS, NCSNScheduler, NCSNSchedulerOutput
from .scheduling_pf_ode_heun import ProbabilityFlowHeunScheduler
from .scheduling_utils import ScoreSchedulerMixin, ScoreSchedulerOutput, score_schedulers
from .scheduling_ve_pc import VEPredictorCorrectorScheduler

__version__ = "0.2.0"

__all__ = [
    "AdaptiveSDEScheduler",
    "DPMSolverPlusPlusScheduler",
    "EDMStochasticScheduler",
    "GaussianMixtureClassifier",
    "GaussianMixtureScore",
    "GaussianScore",
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
    "VEPredictorCorrectorScheduler",
    "ncsnv2_noise_schedule",
    "score_schedulers",
]
