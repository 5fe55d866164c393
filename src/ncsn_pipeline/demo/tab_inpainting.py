"""The Inpainting tab: a held-out image, a part to repaint, a sampler and RePaint resampling; the work is
`ncsn_pipeline.demo.inpainting.inpaint_image`."""

from __future__ import annotations

import dataclasses
from typing import Any, Tuple

from .controls import TabKit
from .inpainting import HELD_OUT_SETS, MASKS, held_out_count, inpaint_image
from .limits import DEFAULT_FILLS, MAX_BATCH_SIZE, RESAMPLING_RANGE
from .models import DemoModels


@dataclasses.dataclass
class InpaintRequest:
    """A request of the ``/inpaint`` endpoint, its inputs in this order (`inpaint_image`'s parameters)."""

    model: Any
    image_index: Any
    mask_name: Any
    sampler: Any
    noise_levels: Any
    steps_per_level: Any
    step_scale: Any
    seed: Any
    batch_size: Any
    jump_n_sample: Any
    class_name: Any
    guidance_scale: Any


def held_out_slider(models: DemoModels) -> Tuple[int, str]:
    """The held-out image slider's largest index and label (the Inpainting and Editing tabs): it spans the largest
    held-out set of the image models, and the label gives each set's range (a model refuses an index beyond its own
    set, with that range)."""
    sources = sorted({entry.held_out for entry in models.images.values()}, key=lambda source: source != "digits")
    ranges = [f"{HELD_OUT_SETS[source][0]}s 0-{held_out_count(source) - 1}" for source in sources]
    return max(held_out_count(source) for source in sources) - 1, f"Image ({'; '.join(ranges)})"


def build(kit: TabKit) -> None:
    """The tab's controls and outputs, wired to ``/inpaint``."""
    gr = kit.gr
    with gr.Row():
        with gr.Column(scale=1, min_width=300):
            model = kit.model_dropdown("images", kit.models.default_image_model, "Model", "inpaint-model")
            last_image, image_label = held_out_slider(kit.models)
            controls = {
                "model": model,
                "image_index": gr.Slider(0, last_image, value=0, step=1, label=image_label, elem_id="inpaint-digit"),
                "mask_name": gr.Dropdown(
                    list(MASKS), value="right half", label="Part to repaint", elem_id="inpaint-mask"
                ),
                **kit.sampler_controls("inpaint", "images", kit.models.default_image_model),
                "batch_size": gr.Slider(
                    1, MAX_BATCH_SIZE, value=DEFAULT_FILLS, step=1, label="Fills", elem_id="inpaint-batch"
                ),
                "jump_n_sample": gr.Slider(
                    *RESAMPLING_RANGE, value=1, step=1, elem_id="inpaint-resampling",
                    label="RePaint resampling (runs per window; 1 = off; samplers that can restart)",
                ),  # fmt: skip
                **kit.class_controls("inpaint"),
            }
            button = gr.Button("Fill in", variant="primary", elem_id="inpaint")
        with gr.Column(scale=2):
            grid = kit.result_image("Original, masked, fills", "inpaint-grid")
            info = gr.Textbox(label="Run", interactive=False, elem_id="inpaint-info")

    def work(request: InpaintRequest, progress):
        result = inpaint_image(kit.models, **dataclasses.asdict(request), progress=progress)
        return result.grid, result.summary

    kit.wire(button, InpaintRequest, controls, [grid, info], "inpaint", work, "Cannot inpaint")
    kit.follow_suggestions(controls, model, "images")
