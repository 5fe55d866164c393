"""What every tab of the demo builds from (`TabKit`): the shared controls, defined once (model, sampler, class
choices, result images), and `TabKit.wire`, which connects a button to a tab's work through a typed request.

A tab declares its request as a dataclass whose fields are the work function's parameters, in the order of the
event's inputs; `TabKit.wire` takes the tab's controls *by field name*, so no tab wires a positional list, and the
work function gets the request's fields by name.
"""

from __future__ import annotations

import dataclasses
import html
import inspect
import json
import time
from typing import Any, Callable, Dict, List, Optional

from .cost import MAX_PREDICTED_SECONDS, DeadlinePassed, check_deadline
from .gradio_internals import client_gone
from .limits import (
    ANY_CLASS,
    AUTOGUIDANCE_SCALE_RANGE,
    CONCURRENCY_LIMIT,
    DEFAULT_AUTOGUIDANCE_SCALE,
    DEFAULT_GUIDANCE_SCALE,
    DEFAULT_SAMPLER,
    DEFAULT_SEED,
    GUIDANCE_SCALE_RANGE,
    MAX_BATCH_SIZE,
    MAX_IMAGE_CALLS,
    MAX_IMAGE_WORK,
    NOISE_LEVELS_RANGE,
    QUEUE_MAX_SIZE,
    SAMPLING_CONCURRENCY_ID,
    SEED_RANGE,
    STEP_SCALE_RANGE,
    STEPS_PER_LEVEL_RANGE,
)
from .models import DemoModels
from .samplers import SAMPLERS, sampler_choices

LIMITS_TEXT = (
    f"Limits: batch size 1-{MAX_BATCH_SIZE}, noise levels {NOISE_LEVELS_RANGE[0]}-{NOISE_LEVELS_RANGE[1]}, "
    f"steps per level {STEPS_PER_LEVEL_RANGE[0]}-{STEPS_PER_LEVEL_RANGE[1]}, network calls <= {MAX_IMAGE_CALLS}, "
    f"network calls x batch size <= {MAX_IMAGE_WORK}, at most {MAX_PREDICTED_SECONDS:.0f} s of work on this machine "
    f"(each model is timed at start-up). Requests wait in a queue of {QUEUE_MAX_SIZE}; "
    f"{CONCURRENCY_LIMIT} runs at a time."
)


class ClientGone(Exception):
    """The client that asked for a run has disconnected: the run stops at its next network call."""


def _stopping_when_client_gone(progress):
    """``progress`` (called after every network call) that first stops the run if the client has gone or the run
    has passed its deadline (`REQUEST_DEADLINE_SECONDS` from now)."""
    started = time.perf_counter()

    def report(fraction: float, desc: Optional[str] = None) -> None:
        if client_gone():
            raise ClientGone("The client disconnected: the run was stopped.")
        check_deadline(started)
        progress(fraction, desc=desc)

    return report


@dataclasses.dataclass
class TabKit:
    """Gradio, the models, the progress tracker Gradio injects, and the sampling events' settings, for the tabs."""

    gr: Any
    models: DemoModels
    tracker: Any
    concurrency_limit: int

    @property
    def all_classes(self) -> List[str]:
        """Every class any image model knows (a model refuses the classes it lacks, naming its own)."""
        classes = [ANY_CLASS]
        for entry in self.models.images.values():
            classes += [name for name in entry.class_names or [] if name not in classes]
        return classes

    def model_dropdown(self, tab: str, value: str, label: str, elem_id: str):
        table = self.models.images if tab == "images" else self.models.points
        choices = [(entry.label, key) for key, entry in table.items()]
        return self.gr.Dropdown(choices, value=value, label=label, elem_id=elem_id)

    def sampler_controls(self, prefix: str, tab: str, model: str) -> Dict[str, Any]:
        """The sampler, its noise levels, steps per level, step size and seed (the request fields' names)."""
        gr, tuned = self.gr, self.models.defaults(tab, model)
        return {
            "sampler": gr.Dropdown(
                sampler_choices(), value=DEFAULT_SAMPLER, label="Sampler", elem_id=f"{prefix}-sampler"
            ),
            "noise_levels": gr.Slider(
                *NOISE_LEVELS_RANGE, value=tuned["noise_levels"], step=1, label="Noise levels L",
                elem_id=f"{prefix}-levels",
            ),  # fmt: skip
            "steps_per_level": gr.Slider(
                *STEPS_PER_LEVEL_RANGE, value=tuned["steps_per_level"], step=1,
                label="Langevin steps per noise level (corrector steps for predictor-corrector)",
                elem_id=f"{prefix}-steps",
            ),  # fmt: skip
            "step_scale": gr.Slider(
                *STEP_SCALE_RANGE, value=1.0, step=0.05,
                label="Step size (x the sampler's step_lr, or snr for predictor-corrector)", elem_id=f"{prefix}-scale",
            ),  # fmt: skip
            "seed": gr.Number(
                value=DEFAULT_SEED, minimum=SEED_RANGE[0], maximum=SEED_RANGE[1], step=1, label="Seed",
                elem_id=f"{prefix}-seed",
            ),  # fmt: skip
        }

    def class_controls(self, prefix: str) -> Dict[str, Any]:
        """The class choice and the classifier guidance scale (the request fields' names)."""
        gr = self.gr
        return {
            "class_name": gr.Dropdown(
                self.all_classes, value=ANY_CLASS,
                label="Class (class-conditional models; the digits model is guided by its classifier)",
                elem_id=f"{prefix}-class",
            ),  # fmt: skip
            "guidance_scale": gr.Slider(
                *GUIDANCE_SCALE_RANGE, value=DEFAULT_GUIDANCE_SCALE, step=0.5,
                label="Guidance scale: classifier guidance (models with a classifier) or classifier-free guidance "
                f"(models with a 'no class' label: {', '.join(self.classifier_free_models) or 'none'}; 1 = off, "
                "else each call on a doubled batch)", elem_id=f"{prefix}-guidance",
            ),  # fmt: skip
        }

    @property
    def classifier_free_models(self) -> List[str]:
        """The image models that classifier-free guidance steers."""
        return [key for key, entry in self.models.images.items() if entry.classifier_free]

    def autoguidance_control(self, prefix: str) -> Dict[str, Any]:
        """Autoguidance's ``w`` with the guide a model ships (the request field's name)."""
        guided = [key for key, entry in self.models.images.items() if entry.guide is not None]
        return {
            "autoguidance_scale": self.gr.Slider(
                *AUTOGUIDANCE_SCALE_RANGE, value=DEFAULT_AUTOGUIDANCE_SCALE, step=0.25,
                label=f"Autoguidance w (models with a guide: {', '.join(guided) or 'none'}; 1 = off, else two "
                "network calls per step)", elem_id=f"{prefix}-autoguidance",
            ),  # fmt: skip
        }

    def result_image(self, label: str, elem_id: str):
        """A result grid: a PNG shown with sharp pixels (see the demo's CSS), not editable."""
        return self.gr.Image(label=label, height=420, type="pil", format="png", elem_id=elem_id, interactive=False)

    def follow_suggestions(self, controls: Dict[str, Any], model, tab: str) -> None:
        """Put the suggested noise levels and steps when the model or the sampler changes, in the page only (a
        table computed here, run as browser-side JavaScript: no server function exists for it)."""
        table = self.models.images if tab == "images" else self.models.points
        suggestions = {key: {name: self.models.defaults(tab, key, name) for name in SAMPLERS} for key in table}
        script = (
            f"(model, sampler) => {{ const table = {json.dumps(suggestions)};"
            " const row = (table[model] || {})[sampler];"
            " return row ? [row.noise_levels, row.steps_per_level] : [undefined, undefined]; }"
        )
        sampler, levels, steps = controls["sampler"], controls["noise_levels"], controls["steps_per_level"]
        self.gr.on(
            [model.change, sampler.change], None, [model, sampler], [levels, steps], js=script, queue=False,
            api_visibility="private",
        )  # fmt: skip

    def wire(self, button, request: type, controls: Dict[str, Any], outputs: List[Any], api_name: str,
             work: Callable[..., Any], title: str) -> None:  # fmt: skip
        """Run ``work(request)`` on ``button``'s click: the inputs are ``controls[field]`` for each field of the
        ``request`` dataclass, in its order; ``work`` returns the outputs' values. Queued, one shared concurrency
        group for sampling, raw inputs (the work checks them itself, whatever the components validate); input and
        divergence errors are shown as ``gr.Error`` (no traceback), and a run stops at its next network call when
        its client disconnects or its deadline passes."""
        gr, names = self.gr, [spec.name for spec in dataclasses.fields(request)]

        def callback(*values):
            *fields, progress = values  # Gradio appends its progress tracker (the last parameter, below)
            try:
                return work(request(*fields), _stopping_when_client_gone(progress))
            except (ValueError, FloatingPointError, ClientGone, DeadlinePassed) as error:
                raise gr.Error(html.escape(str(error), quote=False), title=title, print_exception=False) from None

        # Gradio passes the inputs positionally and injects the tracker where a parameter defaults to one.
        parameter = inspect.Parameter.POSITIONAL_OR_KEYWORD
        callback.__signature__ = inspect.Signature(
            [inspect.Parameter(name, parameter) for name in names]
            + [inspect.Parameter("progress", parameter, default=self.tracker)]
        )
        button.click(
            callback, [controls[name] for name in names], outputs, api_name=api_name, queue=True, preprocess=False,
            concurrency_id=SAMPLING_CONCURRENCY_ID, concurrency_limit=self.concurrency_limit,
        )  # fmt: skip
