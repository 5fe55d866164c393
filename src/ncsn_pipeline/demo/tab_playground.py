"""The 2-D playground: the score field at a noise level, and plain Langevin next to a sampler from the same start;
the work is `ncsn_pipeline.demo.playground.run_playground`."""

from __future__ import annotations

import dataclasses
from typing import Any

from .controls import TabKit
from .limits import DEFAULT_POINTS, MAX_PLAYGROUND_WORK, POINTS_RANGE
from .playground import run_playground


@dataclasses.dataclass
class PlaygroundRequest:
    """A request of the ``/playground`` endpoint, its inputs in this order (`run_playground`'s parameters)."""

    model: Any
    sampler: Any
    noise_levels: Any
    steps_per_level: Any
    step_scale: Any
    field_sigma: Any
    seed: Any
    num_points: Any


def build(kit: TabKit) -> None:
    """The tab's controls and outputs, wired to ``/playground``."""
    gr = kit.gr
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            model = kit.model_dropdown("points", kit.models.default_points_model, "Distribution", "point-model")
            controls = {
                "model": model,
                **kit.sampler_controls("point", "points", kit.models.default_points_model),
                "field_sigma": gr.Slider(
                    0.1, 20.0, value=1.0, step=0.1, label="sigma of the score field", elem_id="field-sigma"
                ),
                "num_points": gr.Slider(
                    *POINTS_RANGE, value=DEFAULT_POINTS, step=10, label="Points per sampler", elem_id="point-count"
                ),
            }
            button = gr.Button("Run both samplers", variant="primary", elem_id="run-playground")
            gr.Markdown(
                "Plain Langevin runs at the smallest noise level, the chosen sampler through all levels; both start "
                "from the same points and evaluate the score equally often. "
                f"Limit: 2 x network calls x points <= {MAX_PLAYGROUND_WORK:,}."
            )
        with gr.Column(scale=2):
            field_plot = gr.Plot(label="Score field", format="png", elem_id="score-field")
            summary = gr.Markdown(label="Summary", elem_id="playground-summary")
            weights = gr.JSON(label="Mode weights", max_height=240, elem_id="mode-weights")
    samples_plot = gr.Plot(label="Plain vs annealed Langevin", format="png", elem_id="samplers")

    def work(request: PlaygroundRequest, progress):
        result = run_playground(kit.models, **dataclasses.asdict(request), progress=progress)
        return result.field_figure, result.samples_figure, result.weights, result.summary

    outputs = [field_plot, samples_plot, weights, summary]
    kit.wire(button, PlaygroundRequest, controls, outputs, "playground", work, "Cannot run the playground")
    kit.follow_suggestions(controls, model, "points")
