"""iPNDM: Adams–Bashforth multistep on the probability-flow ODE in sigma form, one model call per level.

Zhang & Chen (2023), "Fast Sampling of Diffusion Models with Exponential Integrator"
(https://arxiv.org/abs/2204.13902), section 4 and appendix: the "improved pseudo numerical method" (iPNDM) of
Liu, Ren, Lin & Zhao (2022), "Pseudo Numerical Methods for Diffusion Models on Manifolds"
(https://arxiv.org/abs/2202.09778), whose warm-up needs no extra calls: linear multistep (Adams–Bashforth) steps of
order up to 4 from the derivatives of earlier calls, lower orders while that history builds up. Used as EDM-style
samplers do (zju-pi/diff-sampler: FID 2.77 at 10 calls on CIFAR-10 with EDM's network and its rho = 7 levels), on
the variance-exploding probability-flow ODE

    dx/dsigma = -sigma s(x, sigma) = (x - D(x, sigma)) / sigma,    D(x, sigma) = x + sigma**2 s(x, sigma).
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from .checks import check_choice, check_integer
from .scheduling_utils import ContinuousLevelsMixin, ScoreSchedulerMixin, ScoreSchedulerOutput, TunedLevels

# Adams–Bashforth coefficients for equal steps, newest derivative first (Zhang & Chen 2023, eq. 23).
FIXED_COEFFICIENTS = (
    (1.0,),
    (3 / 2, -1 / 2),
    (23 / 12, -16 / 12, 5 / 12),
    (55 / 24, -59 / 24, 37 / 24, -9 / 24),
)
COEFFICIENT_KINDS = ("fixed", "variable")


def adams_bashforth_weights(nodes: Sequence[float], start: float, end: float) -> List[float]:
    """Weights ``w_j`` of the Adams–Bashforth step from ``start`` to ``end`` on derivatives known at ``nodes``.

    ``x(end) ~ x(start) + (end - start) sum_j w_j d(nodes[j])`` integrates exactly every derivative that is a
    polynomial of degree ``< len(nodes)`` (the interpolating polynomial of the derivatives, integrated over the
    step), so the step has that order on any spacing of the nodes. ``nodes[0]`` is ``start``, then older nodes.

    >>> [round(w, 6) for w in adams_bashforth_weights([3.0, 4.0, 5.0, 6.0], 3.0, 2.0)]  # equal steps: AB4
    [2.291667, -2.458333, 1.541667, -0.375]
    """
    width = end - start
    # In u = (sigma - start) / width the step is [0, 1]; sum_j w_j u_j**m = integral of u**m over it = 1 / (m + 1).
    positions = torch.tensor([(node - start) / width for node in nodes], dtype=torch.float64)
    powers = torch.arange(len(nodes), dtype=torch.float64)
    vandermonde = positions[None, :] ** powers[:, None]
    vandermonde[0] = 1.0  # 0**0
    moments = 1.0 / (powers + 1.0)
    return torch.linalg.solve(vandermonde, moments).tolist()


class IPNDMScoreScheduler(TunedLevels, ContinuousLevelsMixin, ScoreSchedulerMixin, SchedulerMixin, ConfigMixin):
    r"""iPNDM: Adams–Bashforth steps of order up to 4 on the probability-flow ODE, one model call per level.

    On the levels ``sigma_0 = sigma_max > ... > sigma_{N-1} = sigma_min`` (Karras et al.'s, or the model's tuned
    levels for ``N`` calls, ``tuned_noise_levels``) and ``sigma_N = 0``, with the derivative of the
    probability-flow ODE at call ``i``

    1. ``d_i = -sigma_i s(x_i, sigma_i) = (x_i - D_i) / sigma_i`` (one model call);
    2. ``x_{i+1} = x_i + (sigma_{i+1} - sigma_i) sum_j c_j d_{i-j}`` with ``k = min(i + 1, max_order)`` terms:
       ``"fixed"`` coefficients are the equal-step Adams–Bashforth ones of iPNDM (1; 3/2, -1/2; 23/12, -16/12,
       5/12; 55/24, -59/24, 37/24, -9/24), ``"variable"`` ones integrate the polynomial through the ``k`` last
       derivatives over the actual step (`adams_bashforth_weights`: order ``k`` on any spacing).

    The first step (and the first step of a run begun mid-schedule, `set_begin_index`) is Euler's; the last one, to
    ``sigma = 0``, lands on ``D`` when first order (NCSNv2's denoising step). ``N`` model calls in all; no noise is
    drawn after the initial ``N(0, sigma_max**2 I)``. Like every probability-flow solver it follows the learned
    score's errors to the end (see `ProbabilityFlowHeunScheduler`), but at 10 calls its discretisation error is far
    below the stochastic samplers' (``benchmarks/quality_per_call.py``).

    Args:
        sigma_max (`float`, defaults to 50.0): Largest noise level (also ``init_noise_sigma``).
        sigma_min (`float`, defaults to 0.01): Smallest noise level.
        num_noise_levels (`int`, defaults to 10): ``N``, model calls per sample (``num_inference_steps``
            overrides it).
        rho (`float`, defaults to 7.0): Spacing of the levels (see `karras_noise_levels`).
        max_order (`int`, defaults to 4): Highest Adams–Bashforth order, 1 to 4 (1 is Euler's method).
        coefficients (`str`, defaults to ``"fixed"``): ``"fixed"`` (iPNDM's) or ``"variable"`` (exact for the
            actual steps).
        tuned_noise_levels (`dict`, *optional*): Levels chosen for this model, by number of calls
            (``{"10": [sigma_0, ..., sigma_9]}``, written by ``ncsn-tune-steps``); other counts use Karras et al.'s.
        num_train_noise_levels (`int`, defaults to 232): Geometric levels a model for this sampler is trained on.

    Example:
        >>> import torch
        >>> from ncsn_pipeline import GaussianMixtureScore, NCSNPipeline
        >>> scheduler = IPNDMScoreScheduler(sigma_max=100.0, sigma_min=0.01, num_noise_levels=10)
        >>> pipe = NCSNPipeline(unet=GaussianMixtureScore.ncsn_toy(), scheduler=scheduler)
        >>> pipe.set_progress_bar_config(disable=True)
        >>> points = pipe(batch_size=2000, generator=torch.Generator().manual_seed(0), output_type="pt").images
        >>> scheduler.num_model_calls, round((points.sum(dim=1) > 0).float().mean().item(), 1)
        (10, 0.8)
    """

    order = 1
    multistep = True
    sampler_name = "iPNDM (Adams-Bashforth, deterministic)"
    step_size_key = None

    @register_to_config
    def __init__(
        self,
        sigma_max: float = 50.0,
        sigma_min: float = 0.01,
        num_noise_levels: int = 10,
        rho: float = 7.0,
        max_order: int = 4,
        coefficients: str = "fixed",
        tuned_noise_levels: Optional[dict] = None,
        num_train_noise_levels: int = 232,
    ):
        self._check_levels(sigma_max, sigma_min, rho, num_noise_levels, num_train_noise_levels)
        check_integer("max_order", max_order, 1, len(FIXED_COEFFICIENTS))
        check_choice("coefficients", coefficients, list(COEFFICIENT_KINDS))
        self._check_tuned_levels(tuned_noise_levels)
        self.set_timesteps()

    def _reset_run(self) -> None:
        super()._reset_run()
        self._derivatives: List[torch.Tensor] = []  # d at the previous calls, newest first
        self._nodes: List[float] = []  # their noise levels

    @property
    def description(self) -> str:
        """One line describing the configured run, e.g. for model cards and the demo."""
        return (
            f"iPNDM (Adams-Bashforth order <= {self.config.max_order}, {self.config.coefficients} coefficients), "
            f"{self.levels_description} ({self.num_model_calls} model calls)"
        )

    def step(
        self,
        model_output: torch.Tensor,
        timestep: Union[float, torch.Tensor],
        sample: torch.Tensor,
        generator: Optional[Union[torch.Generator, List[torch.Generator]]] = None,
        return_dict: bool = True,
    ) -> Union[ScoreSchedulerOutput, Tuple[torch.Tensor, torch.Tensor]]:
        """One Adams–Bashforth step from the score at ``timestep`` to the next noise level.

        Args:
            model_output (`torch.Tensor`): The score ``s(x, sigma)`` at ``sample``.
            timestep (`float` or `torch.Tensor`): The current entry of ``timesteps``.
            sample (`torch.Tensor`): The current sample.
            generator (`torch.Generator` or list, *optional*): Unused (the method is deterministic).
            return_dict (`bool`, defaults to `True`): Return a `ScoreSchedulerOutput` instead of a tuple.

        Returns:
            `ScoreSchedulerOutput` or `tuple`: ``prev_sample`` and ``prev_sample_mean`` (the same tensor).
        """
        index = self._next_step_index(model_output, timestep, sample)
        sigma = float(self.sigmas[index])
        next_sigma = float(self.sigmas[index + 1]) if index + 1 < len(self.sigmas) else 0.0
        # 1. The probability-flow ODE's derivative, -sigma s = (x - D) / sigma.
        derivative = -sigma * model_output
        derivatives = [derivative, *self._derivatives][: self.config.max_order]
        nodes = [sigma, *self._nodes][: self.config.max_order]
        # 2. Adams-Bashforth over the derivatives known so far.
        if self.config.coefficients == "fixed":
            weights = FIXED_COEFFICIENTS[len(derivatives) - 1]
        else:
            weights = adams_bashforth_weights(nodes, sigma, next_sigma)
        slope = weights[0] * derivatives[0]
        for weight, earlier in zip(weights[1:], derivatives[1:]):
            slope = slope + weight * earlier
        prev_sample = sample + (next_sigma - sigma) * slope
        self._derivatives, self._nodes = derivatives, nodes
        return self._end_step(
            prev_sample, prev_sample, return_dict, f"the step from sigma={sigma:.4g}", "Use more noise levels."
        )
