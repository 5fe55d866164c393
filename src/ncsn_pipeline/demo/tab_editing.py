"""The Editing tab (SDEdit): a held-out image, a strength, a sampler and a class; the work is
`ncsn_pipeline.demo.editing.edit_image`."""

from __future__ import annotations

import dataclasses
from typing import Any

from .controls import TabKit
from .editing import edit_image
from .limits import DEFAULT_FILLS, DEFAULT_STRENGTH, MAX_BATCH_SIZE
from .tab_inpainting import held_out_slider


@dataclasses.dataclass
class EditRequest:
    """A request of the ``/edit`` endpoint, its inputs in this order (`edit_image`'s parameters)."""

    model: Any
    image_index: Any
    strength: Any
    sampler: Any
    noise_levels: Any
    steps_per_level: Any
    step_scale: Any
    seed: Any
    batch_size: Any
    class_name: Any
    guidance_scale: Any
    autoguidance_scale: Any


def build(kit: TabKit) -> None:
    """The tab's controls and outputs, wired to ``/edit``."""
    gr = kit.gr
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            model = kit.model_dropdown("images", kit.models.default_image_model, "Model", "edit-model")
            last_image, image_label = held_out_slider(kit.models)
            controls = {
                "model": model,
                "image_index": gr.Slider(0, last_image, value=0, step=1, label=image_label, elem_id="edit-image"),
                "strength": gr.Slider(
                    0.0, 1.0, value=DEFAULT_STRENGTH, step=0.05, elem_id="edit-strength",
                    label="Strength (0 = the image itself, 1 = a new sample)",
                ),  # fmt: skip
                **kit.sampler_controls("edit", "images", kit.models.default_image_model),
                "batch_size": gr.Slider(
                    1, MAX_BATCH_SIZE, value=DEFAULT_FILLS, step=1, label="Edits", elem_id="edit-batch"
                ),
                **kit.class_controls("edit"),
                **kit.autoguidance_control("edit"),
            }
            button = gr.Button("Edit", variant="primary", elem_id="edit")
            gr.Markdown(
                "SDEdit (Meng et al. 2022): the image is noised to the level the strength sets, then sampled back. "
                "Samplers that solve the reverse SDE (DPM-Solver++ SDE, adaptive) keep the most of the image; the "
                "Langevin samplers also mix toward the whole data distribution."
            )
        with gr.Column(scale=2):
            grid = kit.result_image("Original, noised start, edits", "edit-grid")
            info = gr.Textbox(label="Run", interactive=False, elem_id="edit-info")

    def work(request: EditRequest, progress):
        result = edit_image(kit.models, **dataclasses.asdict(request), progress=progress)
        return result.grid, result.summary

    kit.wire(button, EditRequest, controls, [grid, info], "edit", work, "Cannot edit")
    kit.follow_suggestions(controls, model, "images")
