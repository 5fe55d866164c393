"""The Images tab: a model, a sampler and its controls, a batch, a class and guidance; the work is
`ncsn_pipeline.demo.images.generate_images`."""

from __future__ import annotations

import dataclasses
from typing import Any

from .controls import LIMITS_TEXT, TabKit
from .images import generate_images
from .limits import (
    DEFAULT_BATCH_SIZE,
    MAX_BATCH_SIZE,
)


@dataclasses.dataclass
class GenerateRequest:
    """A request of the ``/generate`` endpoint, its inputs in this order (`generate_images`'s parameters)."""

    model: Any
    sampler: Any
    noise_levels: Any
    steps_per_level: Any
    step_scale: Any
    seed: Any
    batch_size: Any
    animate: Any
    class_name: Any
    guidance_scale: Any
    autoguidance_scale: Any


def build(kit: TabKit) -> None:
    """The tab's controls and outputs, wired to ``/generate``."""
    gr = kit.gr
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            model = kit.model_dropdown("images", kit.models.default_image_model, "Model", "image-model")
            controls = {"model": model, **kit.sampler_controls("image", "images", kit.models.default_image_model)}
            controls["batch_size"] = gr.Slider(
                1, MAX_BATCH_SIZE, value=DEFAULT_BATCH_SIZE, step=1, label="Batch size", elem_id="image-batch"
            )
            controls.update(kit.class_controls("image"))
            controls.update(kit.autoguidance_control("image"))
            controls["animate"] = gr.Checkbox(value=True, label="Animate the trajectory (one frame per noise level)")
            button = gr.Button("Generate", variant="primary", elem_id="generate")
            gr.Markdown(LIMITS_TEXT)
        with gr.Column(scale=2):
            grid = kit.result_image("Samples", "result-grid")
            info = gr.Textbox(label="Run", interactive=False, elem_id="run-info")
            trajectory = gr.Image(
                label="Trajectory across noise levels (GIF)", height=320, type="filepath", interactive=False,
                elem_id="trajectory",
            )  # fmt: skip

    def work(request: GenerateRequest, progress):
        result = generate_images(kit.models, **dataclasses.asdict(request), progress=progress)
        return result.grid, result.animation_path, result.summary

    kit.wire(button, GenerateRequest, controls, [grid, trajectory, info], "generate", work, "Cannot generate")
    kit.follow_suggestions(controls, model, "images")
