"""UniPC: a multistep predictor with a corrector that reuses the next call, in sigma form, on a score model.

Zhao, Bai, Rao, Zhou & Lu (2023), "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion
Models" (https://arxiv.org/abs/2302.04867), Algorithms 1-3 with the data prediction (their "UniPC with
x_0-prediction"), written for the variance-exploding case ``x_sigma = x_0 + sigma z``, where the time variable is
``lambda = -log sigma`` and the data prediction is Tweedie's denoiser ``D(x, sigma) = x + sigma**2 s(x, sigma)``.
The corrector UniC raises the order of every step by one with the model call the next step needs anyway, so it
costs no extra call.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple, Union

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from .checks import check_bool, check_choice, check_integer
from .scheduling_utils import ContinuousLevelsMixin, ScoreSchedulerMixin, ScoreSchedulerOutput, TunedLevels

SOLVER_TYPES = ("bh1", "bh2")


def unified_coefficients(ratios: Sequence[float], h: float, solver_type: str) -> Tuple[List[float], float]:
    """The coefficients ``rho`` of UniPC's update over a step ``h`` in ``lambda`` and its ``B(h)``.

    ``ratios`` are ``r_k = (lambda_{s_k} - lambda_{s_0}) / h`` of the differences used (the last one 1 for the
    corrector's new call). Zhao et al. eq. 8 / Algorithm 2: ``rho`` solves ``R rho = phi / B(h)`` with
    ``R[i][k] = r_k**i`` and the right side ``i! phi_{i+1}(-h) / B(h)`` of the exponential integrator's
    ``phi`` functions, ``B(h) = -h`` ("bh1") or ``e^-h - 1`` ("bh2").

    >>> rhos, b_h = unified_coefficients([-1.0, 1.0], 0.5, "bh2")
    >>> [round(value, 4) for value in rhos], round(b_h, 4)
    ([0.083, 0.4585], -0.3935)
    """
    hh = -h
    h_phi_k = math.expm1(hh) / hh - 1
    b_h = hh if solver_type == "bh1" else math.expm1(hh)
    factorial = 1
    rows, right = [], []
    for power in range(1, len(ratios) + 1):
        rows.append([ratio ** (power - 1) for ratio in ratios])
        right.append(h_phi_k * factorial / b_h)
        factorial *= power + 1
        h_phi_k = h_phi_k / hh - 1 / factorial
    matrix = torch.tensor(rows, dtype=torch.float64)
    rhos = torch.linalg.solve(matrix, torch.tensor(right, dtype=torch.float64)).tolist()
    return rhos, b_h


class UniPCScheduler(TunedLevels, ContinuousLevelsMixin, ScoreSchedulerMixin, SchedulerMixin, ConfigMixin):
    r"""UniPC: multistep predictor UniP-p and corrector UniC on data predictions, one model call per level.

    On the levels ``sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min`` (Karras et al.'s, or the model's tuned
    levels for ``N`` calls) and ``sigma_N = 0``, ``lambda_i = -log sigma_i``, ``h = lambda_{i+1} - lambda_i`` and the
    data predictions ``m_i = D(x_i, sigma_i)`` of the calls so far:

    1. **UniC** (from the second call on, when ``corrector`` is on): with the new call's ``m_i`` at the predicted
       ``x_i``, redo the step from ``x_{i-1}`` at one order higher:
       ``x_i <- (sigma_i / sigma_{i-1}) x_{i-1} - (e^-h - 1) m_{i-1} - B(h) (sum_k rho_k D_k + rho_c (m_i - m_{i-1}))``.
       ``m_i`` is not recomputed at the corrected sample: that is what makes the correction free.
    2. **UniP-p**: ``x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^-h - 1) m_i - B(h) sum_k rho_k D_k`` with the
       differences ``D_k = (m_{i-k} - m_i) / r_k`` of the ``p - 1`` earlier predictions (``r_k`` their distance in
       ``lambda`` over ``h``), ``p = min(solver_order, calls so far)`` (warm-up, as after `set_begin_index`) and, with
       ``lower_order_final``, at most the number of steps left (diffusers' rule, steadier at few calls).
    3. The last step, to ``sigma = 0``, returns ``m_{N-1}`` (NCSNv2's denoising step).

    ``B(h)`` is ``-h`` ("bh1", the paper's choice for unconditional sampling) or ``e^-h - 1`` ("bh2", diffusers'
    default). ``N`` model calls in all; deterministic after the initial ``N(0, sigma_max**2 I)``. With the same levels
    it equals diffusers' ``UniPCMultistepScheduler`` on the matching variance-preserving model to round-off
    (``tests/test_unipc.py``).

    Args:
        sigma_max (`float`, defaults to 50.0): Largest noise level (also ``init_noise_sigma``).
        sigma_min (`float`, defaults to 0.01): Smallest noise level.
        num_noise_levels (`int`, defaults to 10): ``N``, model calls per sample (``num_inference_steps``
            overrides it).
        rho (`float`, defaults to 7.0): Spacing of the levels (see `karras_noise_levels`).
        solver_order (`int`, defaults to 3): ``p`` of UniP-p, 1 to 4 (the corrector adds one).
        solver_type (`str`, defaults to ``"bh1"``): ``B(h)``: ``"bh1"`` or ``"bh2"``.
        corrector (`bool`, defaults to `True`): Apply UniC (off: the predictor alone).
        lower_order_final (`bool`, defaults to `True`): Orders no higher than the steps left.
        tuned_noise_levels (`dict`, *optional*): Levels chosen for this model, by number of calls
            (``{"10": [sigma_0, ..., sigma_9]}``, written by ``ncsn-tune-steps``); other counts use Karras et al.'s.
        num_train_noise_levels (`int`, defaults to 232): Geometric levels a model for this sampler is trained on.

    Example:
        >>> import torch
        >>> from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline
        >>> scheduler = UniPCScheduler(sigma_max=100.0, sigma_min=0.01, num_noise_levels=10)
        >>> pipe = NCSNPipeline(unet=GaussianMixtureScore.ncsn_toy(), scheduler=scheduler)
        >>> pipe.set_progress_bar_config(disable=True)
        >>> points = pipe(batch_size=2000, generator=torch.Generator().manual_seed(0), output_type="pt").images
        >>> scheduler.num_model_calls, round((points.sum(dim=1) > 0).float().mean().item(), 1)
        (10, 0.8)
    """

    order = 1
    multistep = True
    sampler_name = "UniPC (deterministic)"
    step_size_key = None

    @register_to_config
    def __init__(
        self,
        sigma_max: float = 50.0,
        sigma_min: float = 0.01,
        num_noise_levels: int = 10,
        rho: float = 7.0,
        solver_order: int = 3,
        solver_type: str = "bh1",
        corrector: bool = True,
        lower_order_final: bool = True,
        tuned_noise_levels: Optional[dict] = None,
        num_train_noise_levels: int = 232,
    ):
        self._check_levels(sigma_max, sigma_min, rho, num_noise_levels, num_train_noise_levels)
        check_integer("solver_order", solver_order, 1, 4)
        check_choice("solver_type", solver_type, list(SOLVER_TYPES))
        check_bool("corrector", corrector)
        check_bool("lower_order_final", lower_order_final)
        self._check_tuned_levels(tuned_noise_levels)
        self.set_timesteps()

    def _reset_run(self) -> None:
        super()._reset_run()
        self._predictions: List[torch.Tensor] = []  # m = D at the previous calls, newest first
        self._levels: List[float] = []  # their noise levels
        self._last_sample: Optional[torch.Tensor] = None  # x at the previous call (after its correction)
        self._last_order = 0  # the order of the predictor step that led to the current call

    @property
    def description(self) -> str:
        """One line describing the configured run, e.g. for model cards and the demo."""
        corrector = "UniC" if self.config.corrector else "no corrector"
        return (
            f"UniPC (UniP-{self.config.solver_order}, {corrector}, {self.config.solver_type.upper()}), "
            f"{self.levels_description} ({self.num_model_calls} model calls)"
        )

    def _update(
        self, sample: torch.Tensor, sigma: float, next_sigma: float, predictions: List[torch.Tensor],
        levels: List[float], new_prediction: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """The step from ``sample`` at ``sigma`` (where ``predictions[0]`` was made) to ``next_sigma``: UniP with the
        earlier ``predictions`` (newest first), or UniC when ``new_prediction`` (made at ``next_sigma``) is given."""
        h = math.log(sigma / next_sigma)
        current = predictions[0]
        ratios = [(math.log(sigma / level)) / h for level in levels[1:]]  # (lambda_{s_k} - lambda_{s_0}) / h
        differences = [(earlier - current) / ratio for earlier, ratio in zip(predictions[1:], ratios)]
        if new_prediction is not None:
            differences.append(new_prediction - current)
            ratios.append(1.0)
        base = (next_sigma / sigma) * sample - math.expm1(-h) * current
        if not differences:
            return base
        # A single difference takes the paper's simplified rho = 1/2 (UniP-2, and UniC after a first-order step).
        rhos, b_h = unified_coefficients(ratios, h, self.config.solver_type)
        if len(differences) == 1:
            rhos = [0.5]
        correction = rhos[0] * differences[0]
        for rho_k, difference in zip(rhos[1:], differences[1:]):
            correction = correction + rho_k * difference
        return base - b_h * correction

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[float, torch.Tensor],
        sample: torch.Tensor,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        return_dict: bool = True,
    ) -> Union[ScoreSchedulerOutput, Tuple[torch.Tensor, torch.Tensor]]:
        """Correct the current sample with this call (UniC), then predict the next level's (UniP).

        Args:
            model_output (`torch.Tensor`): The score ``s(x, sigma)`` at ``sample``.
            timestep (`float` or `torch.Tensor`): The current entry of ``timesteps``.
            sample (`torch.Tensor`): The current sample (the previous step's prediction).
            generator (`torch.Generator` or list, *optional*): Unused (the method is deterministic).
            return_dict (`bool`, defaults to `True`): Return a `ScoreSchedulerOutput` instead of a tuple.

        Returns:
            `ScoreSchedulerOutput` or `tuple`: ``prev_sample`` and ``prev_sample_mean`` (the same tensor).
        """
        index = self._next_step_index(model_output, timestep, sample)
        sigma = float(self.sigmas[index])
        next_sigma = float(self.sigmas[index + 1]) if index + 1 < len(self.sigmas) else 0.0
        prediction = sample + sigma**2 * model_output  # Tweedie: the data prediction D(x, sigma)

        # 1. UniC: the step that led here, redone with this call's prediction (no new call).
        if self.config.corrector and self._last_sample is not None:
            order = self._last_order
            sample = self._update(
                self._last_sample, self._levels[0], sigma, self._predictions[:order], self._levels[:order], prediction
            )
        self._predictions = [prediction, *self._predictions][: self.config.solver_order]
        self._levels = [sigma, *self._levels][: self.config.solver_order]

        # 2. UniP-p to the next level; 3. the last step lands on the data prediction.
        steps_left = len(self.sigmas) - index
        order = min(self.config.solver_order, len(self._predictions))
        if self.config.lower_order_final:
            order = min(order, steps_left)
        if next_sigma == 0.0:
            prev_sample = prediction
        else:
            prev_sample = self._update(sample, sigma, next_sigma, self._predictions[:order], self._levels[:order])
        self._last_sample, self._last_order = sample, order
        return self._end_step(
            prev_sample, prev_sample, return_dict, f"the step from sigma={sigma:.4g}", "Use more noise levels."
        )
