"""The 2-D playground: a score field over its perturbed density, and plain vs annealed sampling side by side."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from ..checks import check_choice, check_integer, check_number
from ..modeling_toy import GaussianMixtureScore
from ..pipeline_ncsn import NCSNPipeline
from ..sampling import plain_and_annealed
from .images import ProgressFn
from .limits import (
    DENSITY_GRID_POINTS,
    FIELD_GRID_POINTS,
    FIELD_SIGMA_RANGE,
    MAX_PLAYGROUND_CALLS,
    MAX_PLAYGROUND_WORK,
    POINTS_RANGE,
    check_work,
)
from .models import DemoModel, DemoModels
from .samplers import check_sampler_controls, prepare_run


@dataclass
class PlaygroundResult:
    """What the playground shows."""

    field_figure: Any
    samples_figure: Any
    weights: Dict[str, Any]
    summary: str


def _extent(reference: Optional[GaussianMixtureScore]) -> float:
    """Half-width of the square plotted around the origin."""
    if reference is None:
        return 10.0
    stds = reference.mode_variances.sqrt().max().item()
    return float(reference.mode_means.abs().max().item() + 4 * stds)


def _grid(extent: float, points: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    axis = torch.linspace(-extent, extent, points)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return xx, yy, torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def _draw_density(axis, reference: GaussianMixtureScore, sigma: float, extent: float) -> None:
    """Shade ``log p_sigma`` of an exact mixture (levels down to 14 nats below the maximum)."""
    xx, yy, points = _grid(extent, DENSITY_GRID_POINTS)
    log_density = reference.log_prob(points, sigma).reshape(xx.shape)
    top = log_density.max().item()
    axis.contourf(xx, yy, log_density.clamp(min=top - 14).numpy(), levels=14, cmap="Blues")


def _arrow_colours():
    """Matplotlib's ``plasma`` without its palest end, so that arrows stay visible on white and on blue."""
    from matplotlib import colormaps
    from matplotlib.colors import ListedColormap

    return ListedColormap(colormaps["plasma"](torch.linspace(0.0, 0.8, 256).numpy()), name="plasma_dark")


def score_field_figure(entry: DemoModel, sigma: float):
    """The score field ``s(x, sigma)`` as arrows (direction; colour = magnitude) over the perturbed density."""
    from matplotlib.figure import Figure

    extent = _extent(entry.reference)
    xx, yy, points = _grid(extent, FIELD_GRID_POINTS)
    with torch.inference_mode():
        score = entry.pipeline.unet(points.to(entry.pipeline.unet.dtype), torch.tensor(sigma)).sample.double()
    magnitude = score.norm(dim=1).clamp(min=1e-12)
    direction = score / magnitude[:, None]

    figure = Figure(figsize=(5.6, 5.0), dpi=100)
    axis = figure.add_subplot()
    colours = _arrow_colours()
    if entry.exact:
        _draw_density(axis, entry.reference, sigma, extent)
        what = "exact score over log p_sigma (shaded)"
    else:
        what = "learned score (density unknown)"
    arrows = axis.quiver(
        xx.numpy(),
        yy.numpy(),
        direction[:, 0].reshape(xx.shape).numpy(),
        direction[:, 1].reshape(xx.shape).numpy(),
        magnitude.log10().reshape(xx.shape).numpy(),
        cmap=colours,
        angles="xy",
        pivot="mid",
    )
    figure.colorbar(arrows, ax=axis, label="log10 |s(x, sigma)|", shrink=0.8)
    axis.set_title(f"{entry.label}\n{what}, sigma={sigma:g}", fontsize=9)
    axis.set_aspect("equal")
    axis.set_xlim(-extent, extent)
    axis.set_ylim(-extent, extent)
    figure.tight_layout()
    return figure


def samples_figure(entry: DemoModel, panels: Sequence[Tuple[str, torch.Tensor]]):
    """Scatter plots of the samplers' points side by side, over the data density when it is known."""
    from matplotlib.figure import Figure

    extent = _extent(entry.reference)
    figure = Figure(figsize=(10, 5), dpi=100)
    axes = figure.subplots(1, len(panels), squeeze=False)[0]
    for axis, (title, points) in zip(axes, panels):
        if entry.exact:
            _draw_density(axis, entry.reference, FIELD_SIGMA_RANGE[0], extent)
        points = points.detach().double().cpu()
        axis.scatter(points[:, 0].numpy(), points[:, 1].numpy(), s=3, alpha=0.5, color="tab:red")
        if entry.reference is not None:
            means = entry.reference.mode_means.double()
            axis.scatter(means[:, 0].numpy(), means[:, 1].numpy(), marker="x", s=60, color="black")
        axis.set_title(title, fontsize=9)
        axis.set_aspect("equal")
        axis.set_xlim(-extent, extent)
        axis.set_ylim(-extent, extent)
    figure.tight_layout()
    return figure


def _rounded(weights: Sequence[float]) -> List[float]:
    return [round(float(weight), 3) for weight in weights]


def run_playground(
    models: DemoModels,
    model: Any,
    sampler: Any,
    noise_levels: Any,
    steps_per_level: Any,
    step_scale: Any,
    field_sigma: Any,
    seed: Any,
    num_points: Any,
    progress: ProgressFn = None,
) -> PlaygroundResult:
    """Check the inputs, draw the score field and run plain vs annealed Langevin dynamics from the same start.

    ``progress`` is called after every network call as ``progress(fraction_done, desc=...)``; an exception raised
    in it stops the run there (the web demo stops runs whose client has disconnected that way).

    Raises:
        ValueError: for an input outside its accepted range or a request above `MAX_PLAYGROUND_WORK`.
        FloatingPointError: when sampling diverges.
    """
    # 1. Inputs.
    model = check_choice("distribution", model, list(models.points))
    sampler, noise_levels, steps_per_level, step_scale, seed = check_sampler_controls(
        sampler, noise_levels, steps_per_level, step_scale, seed
    )
    field_sigma = check_number("score-field sigma", field_sigma, *FIELD_SIGMA_RANGE)
    num_points = check_integer("number of points", num_points, *POINTS_RANGE, whole_floats=True)

    # 2. Plan: the chosen sampler, and plain Langevin with the same number of calls.
    entry = models.points[model]
    max_calls = min(MAX_PLAYGROUND_CALLS, MAX_PLAYGROUND_WORK // (2 * num_points))  # an adaptive sampler's cap
    scheduler = prepare_run(
        sampler, entry.pipeline.scheduler.config, noise_levels, steps_per_level, step_scale, max_calls
    )
    calls, label = scheduler.max_model_calls, scheduler.sampler_name
    check_work(calls, 2 * num_points, MAX_PLAYGROUND_CALLS, MAX_PLAYGROUND_WORK, "2 x number of points")
    pipe = NCSNPipeline(unet=entry.pipeline.unet, scheduler=scheduler, data_range=None)
    pipe.set_progress_bar_config(disable=True)

    def on_step_end(_pipe, index, sigma, callback_kwargs):
        if progress is not None:
            total = f"{'at most ' if scheduler.adaptive else ''}{calls}"
            progress(0.5 * (index + 1) / calls, desc=f"{label}: call {index + 1} of {total}")
        return callback_kwargs

    def on_plain_step(done):
        if progress is not None:  # as many calls as the sampler's run took
            done_calls = scheduler.num_model_calls
            progress(0.5 + 0.5 * done / done_calls, desc=f"plain Langevin: call {done}/{done_calls}")

    # 3.-4. The sampler from N(0, sigma_max^2 I), then plain Langevin at sigma_min from the very same points.
    started = time.perf_counter()
    plain, annealed = plain_and_annealed(
        pipe,
        num_points,
        seed,
        num_inference_steps=noise_levels,
        callback_on_step_end=on_step_end,
        callback_on_plain_step=on_plain_step,
    )
    seconds = time.perf_counter() - started
    calls = scheduler.num_model_calls  # what the run took (an adaptive sampler decides during the run)
    sigma_min = float(scheduler.timesteps[-1])  # plain Langevin's level (the run's last)

    # 5. Mode weights and figures.
    plain_title = f"plain Langevin at sigma={sigma_min:g}\n{calls} calls"
    annealed_title = f"{label}\n{noise_levels} noise levels, {calls} calls"
    weights: Dict[str, Any] = {}
    summary = (
        f"{num_points} points per sampler, same start (seed {seed}), {calls} score evaluations each, "
        f"{seconds:.2f} s in total."
    )
    if entry.reference is not None:
        weights = {
            "modes": entry.reference.mode_means.tolist(),
            "true": _rounded(entry.reference.config.weights),
            "plain": _rounded(entry.reference.mode_weights(plain)),
            "annealed": _rounded(entry.reference.mode_weights(annealed)),
        }
        plain_title += f", mode weights {weights['plain']}"
        annealed_title += f", mode weights {weights['annealed']}"
        summary = (
            f"True mode weights {weights['true']}; plain Langevin recovers {weights['plain']}, {label} "
            f"{weights['annealed']}. " + summary
        )
    return PlaygroundResult(
        field_figure=score_field_figure(entry, field_sigma),
        samples_figure=samples_figure(entry, [(plain_title, plain), (annealed_title, annealed)]),
        weights=weights,
        summary=summary,
    )
