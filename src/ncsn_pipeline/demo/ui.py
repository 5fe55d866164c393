"""Gradio web demo: sample images with any sampler of the package and explore score fields in 2-D.

The only module of the package that imports Gradio (inside `build_demo` and `launch_demo`, so the package
works without the ``demo`` extra). Four tabs, wired by `build_demo` (launch with ``python app.py``):

* **Images** (`ncsn_pipeline.demo.images`): a bundled or built-in image model (or ``--model``), a sampler and
  its controls, and for class-aware models a class (class-conditional models take it, ``ncsn-digits`` is guided
  toward it by its classifier); returns an upscaled grid, the sampler's description and timing, and optionally
  a GIF.
* **Inpainting** (`ncsn_pipeline.demo.inpainting`): a held-out image of the model's data (a digit, or a
  Fashion-MNIST test image) with a chosen part masked, filled in by an image model with any sampler and optional
  RePaint resampling.
* **Editing** (`ncsn_pipeline.demo.editing`): SDEdit: a held-out image noised to the level a strength sets and
  sampled back by an image model with any sampler, optionally toward a class.
* **2-D playground** (`ncsn_pipeline.demo.playground`): the score field at a chosen noise level over the
  perturbed density, and plain Langevin dynamics next to the chosen sampler from the same start.

The work happens in plain functions that check every input themselves (`ncsn_pipeline.checks`) and raise
`ValueError` with a readable message; the callbacks here only turn those errors into ``gr.Error``. The events
are registered with ``preprocess=False``: callbacks see the raw values, so the checks hold whatever Gradio's
components do or do not validate.
"""

from __future__ import annotations

import html
import json
import time
from typing import Optional, Tuple

from .cost import MAX_PREDICTED_SECONDS, DeadlinePassed, check_deadline
from .editing import edit_image
from .guard import PUBLIC_ENDPOINTS, RequestGuard
from .images import generate_images
from .inpainting import HELD_OUT_SETS, MASKS, held_out_count, inpaint_image
from .limits import (
    ANY_CLASS,
    AUTOGUIDANCE_SCALE_RANGE,
    CACHE_CLEANUP,
    CONCURRENCY_LIMIT,
    DEFAULT_AUTOGUIDANCE_SCALE,
    DEFAULT_BATCH_SIZE,
    DEFAULT_FILLS,
    DEFAULT_GUIDANCE_SCALE,
    DEFAULT_IMAGE_MODEL,
    DEFAULT_PLAYGROUND_MODEL,
    DEFAULT_POINTS,
    DEFAULT_SAMPLER,
    DEFAULT_SEED,
    DEFAULT_STRENGTH,
    GUIDANCE_SCALE_RANGE,
    MAX_BATCH_SIZE,
    MAX_IMAGE_CALLS,
    MAX_IMAGE_WORK,
    MAX_PLAYGROUND_WORK,
    MAX_SESSIONS,
    NOISE_LEVELS_RANGE,
    POINTS_RANGE,
    QUEUE_MAX_SIZE,
    RESAMPLING_RANGE,
    SAMPLING_CONCURRENCY_ID,
    SEED_RANGE,
    STEP_SCALE_RANGE,
    STEPS_PER_LEVEL_RANGE,
    cap_malloc_arenas,
)
from .models import DemoModels
from .playground import run_playground
from .samplers import SAMPLERS, sampler_choices

CSS = """
#result-grid img, #trajectory img, #inpaint-grid img, #edit-grid img { image-rendering: pixelated; }
"""

LIMITS_TEXT = (
    f"Limits: batch size 1-{MAX_BATCH_SIZE}, noise levels {NOISE_LEVELS_RANGE[0]}-{NOISE_LEVELS_RANGE[1]}, "
    f"steps per level {STEPS_PER_LEVEL_RANGE[0]}-{STEPS_PER_LEVEL_RANGE[1]}, network calls <= {MAX_IMAGE_CALLS}, "
    f"network calls x batch size <= {MAX_IMAGE_WORK}, at most {MAX_PREDICTED_SECONDS:.0f} s of work on this machine "
    f"(each model is timed at start-up). Requests wait in a queue of {QUEUE_MAX_SIZE}; "
    f"{CONCURRENCY_LIMIT} runs at a time."
)


def _import_gradio():
    try:
        import gradio as gr
    except ImportError as error:
        raise ImportError("The web demo needs Gradio: pip install 'ncsn-pipeline[demo]'") from error
    return gr


def _theme(gr):
    """Gradio's default theme (its fonts are served by Gradio itself: nothing is fetched from the internet)."""
    return gr.themes.Default(primary_hue="indigo")


def _user_error(gr, error: Exception, title: str):
    """A ``gr.Error`` showing ``error``'s message (HTML-escaped: Gradio renders the message as HTML)."""
    return gr.Error(html.escape(str(error), quote=False), title=title, print_exception=False)


class ClientGone(Exception):
    """The client that asked for a run has disconnected: the run stops at its next network call."""


def _client_gone() -> bool:
    """Whether the client of the queued event that this thread is running has disconnected.

    When a client's event stream closes, Gradio marks its events ``alive = False`` (``Queue.clean_events``) but
    lets a running function go on to the end; this reads that flag for the current event (from Gradio's
    ``LocalContext``, which is how ``gr.Progress`` finds its event too).
    """
    from gradio.context import LocalContext

    blocks, event_id = LocalContext.blocks.get(None), LocalContext.event_id.get(None)
    if blocks is None or event_id is None or blocks._queue is None:
        return False
    for job in blocks._queue.active_jobs:
        for event in job or ():
            if event._id == event_id:
                return not event.alive
    return False


def _stopping_when_client_gone(progress):
    """``progress`` (called after every network call) that first stops the run if the client has gone or the run
    has passed its deadline (`REQUEST_DEADLINE_SECONDS` from now)."""
    started = time.perf_counter()

    def report(fraction: float, desc: Optional[str] = None) -> None:
        if _client_gone():
            raise ClientGone("The client disconnected: the run was stopped.")
        check_deadline(started)
        progress(fraction, desc=desc)

    return report


def held_out_slider(models: DemoModels) -> Tuple[int, str]:
    """The inpainting image slider's largest index and label: it spans the largest held-out set of the image models,
    and the label gives each set's range (a model refuses an index beyond its own set, with that range)."""
    sources = sorted({entry.held_out for entry in models.images.values()}, key=lambda source: source != "digits")
    ranges = [f"{HELD_OUT_SETS[source][0]}s 0-{held_out_count(source) - 1}" for source in sources]
    return max(held_out_count(source) for source in sources) - 1, f"Image ({'; '.join(ranges)})"


def build_demo(
    extra_model: Optional[str] = None,
    *,
    models: Optional[DemoModels] = None,
    max_queue_size: int = QUEUE_MAX_SIZE,
    concurrency_limit: int = CONCURRENCY_LIMIT,
    cache_cleanup: Tuple[int, int] = CACHE_CLEANUP,
):
    """Build the Gradio app (``gr.Blocks``) with its queue configured; launch it with `launch_demo`.

    Args:
        extra_model: ``--model``: a pipeline folder or Hub repository id added to the tab that fits it.
        models: Already loaded models (tests reuse them); loaded here by default.
        max_queue_size: Requests that may wait; more are refused with "Queue is full".
        concurrency_limit: Sampling requests (both tabs together) that may run at once.
        cache_cleanup: ``(every, older_than)`` in seconds: Gradio's copies of the output files (grids, GIFs) older
            than ``older_than`` are deleted every ``every`` seconds.

    Every event is queued and ``api_open=False``: the direct ``/run/...`` and ``/api/...`` routes refuse
    queued events, so every request goes through the bounded queue.
    """
    gr = _import_gradio()
    models = models or DemoModels.load(extra_model)
    models.time_networks()  # the requests' predicted times (`ncsn_pipeline.demo.cost`) need them from the first one
    tracker = gr.Progress()  # Gradio injects a live progress bar into callbacks with such a default

    def user_errors(function, title: str):
        """``function`` with its input and divergence errors shown to the user as ``gr.Error`` (no traceback), and
        stopped at its next network call when the client disconnects."""

        def call(*args, progress, **kwargs):
            try:
                return function(models, *args, progress=_stopping_when_client_gone(progress), **kwargs)
            except (ValueError, FloatingPointError, ClientGone, DeadlinePassed) as error:
                raise _user_error(gr, error, title) from None

        return call

    def on_generate(
        model,
        sampler,
        noise_levels,
        steps_per_level,
        step_scale,
        seed,
        batch_size,
        animate,
        class_name,
        guidance_scale,
        autoguidance_scale=DEFAULT_AUTOGUIDANCE_SCALE,
        progress=tracker,
    ):
        arguments = (
            model, sampler, noise_levels, steps_per_level, step_scale, seed, batch_size, animate, class_name,
            guidance_scale, autoguidance_scale,
        )  # fmt: skip
        result = user_errors(generate_images, "Cannot generate")(*arguments, progress=progress)
        return result.grid, result.animation_path, result.summary

    def on_inpaint(
        model,
        digit,
        mask,
        sampler,
        noise_levels,
        steps_per_level,
        step_scale,
        seed,
        batch_size,
        resampling,
        class_name,
        guidance_scale,
        progress=tracker,
    ):
        arguments = (
            model, digit, mask, sampler, noise_levels, steps_per_level, step_scale, seed, batch_size, resampling,
            class_name, guidance_scale,
        )  # fmt: skip
        result = user_errors(inpaint_image, "Cannot inpaint")(*arguments, progress=progress)
        return result.grid, result.summary

    def on_edit(
        model,
        image_index,
        strength,
        sampler,
        noise_levels,
        steps_per_level,
        step_scale,
        seed,
        batch_size,
        class_name,
        guidance_scale,
        progress=tracker,
    ):
        arguments = (
            model, image_index, strength, sampler, noise_levels, steps_per_level, step_scale, seed, batch_size,
            class_name, guidance_scale,
        )  # fmt: skip
        result = user_errors(edit_image, "Cannot edit")(*arguments, progress=progress)
        return result.grid, result.summary

    def on_playground(
        model, sampler, noise_levels, steps_per_level, step_scale, field_sigma, seed, num_points, progress=tracker
    ):
        arguments = (model, sampler, noise_levels, steps_per_level, step_scale, field_sigma, seed, num_points)
        result = user_errors(run_playground, "Cannot run the playground")(*arguments, progress=progress)
        return result.field_figure, result.samples_figure, result.weights, result.summary

    def suggested_steps(tab: str) -> str:
        """Browser-side JavaScript that puts the suggested noise levels and steps for the chosen model and sampler.

        It runs in the page (a table computed here), so no server function exists for it: the server runs only
        the two documented endpoints.
        """
        table = models.images if tab == "images" else models.points
        suggestions = {key: {name: models.defaults(tab, key, name) for name in SAMPLERS} for key in table}
        return (
            f"(model, sampler) => {{ const table = {json.dumps(suggestions)};"
            " const row = (table[model] || {})[sampler];"
            " return row ? [row.noise_levels, row.steps_per_level] : [undefined, undefined]; }"
        )

    def sampler_controls(prefix: str, tab: str, model: str):
        tuned = models.defaults(tab, model)
        sampler = gr.Dropdown(sampler_choices(), value=DEFAULT_SAMPLER, label="Sampler", elem_id=f"{prefix}-sampler")
        levels = gr.Slider(
            *NOISE_LEVELS_RANGE, value=tuned["noise_levels"], step=1, label="Noise levels L", elem_id=f"{prefix}-levels"
        )
        steps = gr.Slider(
            *STEPS_PER_LEVEL_RANGE,
            value=tuned["steps_per_level"],
            step=1,
            label="Langevin steps per noise level (corrector steps for predictor-corrector)",
            elem_id=f"{prefix}-steps",
        )
        scale = gr.Slider(
            *STEP_SCALE_RANGE,
            value=1.0,
            step=0.05,
            label="Step size (x the sampler's step_lr, or snr for predictor-corrector)",
            elem_id=f"{prefix}-scale",
        )
        seed = gr.Number(
            value=DEFAULT_SEED,
            minimum=SEED_RANGE[0],
            maximum=SEED_RANGE[1],
            step=1,
            label="Seed",
            elem_id=f"{prefix}-seed",
        )
        return sampler, levels, steps, scale, seed

    def result_image(label: str, elem_id: str):
        """A result grid: a PNG shown with sharp pixels (see CSS), not editable."""
        return gr.Image(label=label, height=420, type="pil", format="png", elem_id=elem_id, interactive=False)

    # Every class any image model knows (a model refuses the classes it lacks, with the list of its own).
    all_classes = [ANY_CLASS]
    for entry in models.images.values():
        all_classes += [name for name in entry.class_names or [] if name not in all_classes]

    def class_controls(prefix: str):
        class_name = gr.Dropdown(
            all_classes,
            value=ANY_CLASS,
            label="Class (class-conditional models; the digits model is guided by its classifier)",
            elem_id=f"{prefix}-class",
        )
        guidance = gr.Slider(
            *GUIDANCE_SCALE_RANGE,
            value=DEFAULT_GUIDANCE_SCALE,
            step=0.5,
            label="Classifier guidance scale (models guided by a classifier)",
            elem_id=f"{prefix}-guidance",
        )
        return class_name, guidance

    # Every event: queued, raw inputs (checked by our own functions), one shared group for sampling.
    sampling = dict(
        queue=True, preprocess=False, concurrency_id=SAMPLING_CONCURRENCY_ID, concurrency_limit=concurrency_limit
    )
    browser_only = dict(queue=False, api_visibility="private")  # no server function at all

    def follow_suggestions(model, sampler, levels, steps, tab: str) -> None:
        """Put the suggested noise levels and steps when the model or the sampler changes (in the page only)."""
        triggers = [model.change, sampler.change]
        gr.on(triggers, None, [model, sampler], [levels, steps], js=suggested_steps(tab), **browser_only)

    # Gradio keeps a copy of every output file (grids, GIFs): delete old copies regularly.
    with gr.Blocks(
        title="NCSN: annealed Langevin dynamics", analytics_enabled=False, delete_cache=tuple(cache_cleanup)
    ) as demo:
        gr.Markdown(
            "# Noise-conditional score networks\n"
            "Sample with **annealed Langevin dynamics** (Song & Ermon 2019) and faster score samplers, steer samples "
            "toward a class, fill in missing pixels, and see why annealing matters."
        )
        with gr.Tabs():
            with gr.Tab("Images", id="images"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        image_model = gr.Dropdown(
                            [(entry.label, key) for key, entry in models.images.items()],
                            value=DEFAULT_IMAGE_MODEL,
                            label="Model",
                            elem_id="image-model",
                        )
                        sampler, levels, steps, scale, seed = sampler_controls("image", "images", DEFAULT_IMAGE_MODEL)
                        batch = gr.Slider(
                            1,
                            MAX_BATCH_SIZE,
                            value=DEFAULT_BATCH_SIZE,
                            step=1,
                            label="Batch size",
                            elem_id="image-batch",
                        )
                        class_name, guidance = class_controls("image")
                        guided = [key for key, entry in models.images.items() if entry.guide is not None]
                        autoguidance = gr.Slider(
                            *AUTOGUIDANCE_SCALE_RANGE,
                            value=DEFAULT_AUTOGUIDANCE_SCALE,
                            step=0.25,
                            label=f"Autoguidance w (models with a guide: {', '.join(guided) or 'none'}; 1 = off, "
                            "else two network calls per step)",
                            elem_id="image-autoguidance",
                        )
                        animate = gr.Checkbox(value=True, label="Animate the trajectory (one frame per noise level)")
                        generate = gr.Button("Generate", variant="primary", elem_id="generate")
                        gr.Markdown(LIMITS_TEXT)
                    with gr.Column(scale=2):
                        grid = result_image("Samples", "result-grid")
                        info = gr.Textbox(label="Run", interactive=False, elem_id="run-info")
                        trajectory = gr.Image(
                            label="Trajectory across noise levels (GIF)",
                            height=320,
                            type="filepath",
                            interactive=False,
                            elem_id="trajectory",
                        )
                generate.click(
                    on_generate,
                    [image_model, sampler, levels, steps, scale, seed, batch, animate, class_name, guidance,
                     autoguidance],  # fmt: skip
                    [grid, trajectory, info],
                    api_name="generate",
                    **sampling,
                )
                follow_suggestions(image_model, sampler, levels, steps, "images")

            with gr.Tab("Inpainting", id="inpainting"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        inpaint_model = gr.Dropdown(
                            [(entry.label, key) for key, entry in models.images.items()],
                            value=DEFAULT_IMAGE_MODEL,
                            label="Model",
                            elem_id="inpaint-model",
                        )
                        last_image, image_label = held_out_slider(models)
                        digit = gr.Slider(0, last_image, value=0, step=1, label=image_label, elem_id="inpaint-digit")
                        mask = gr.Dropdown(
                            list(MASKS), value="right half", label="Part to repaint", elem_id="inpaint-mask"
                        )
                        i_sampler, i_levels, i_steps, i_scale, i_seed = sampler_controls(
                            "inpaint", "images", DEFAULT_IMAGE_MODEL
                        )
                        i_batch = gr.Slider(
                            1, MAX_BATCH_SIZE, value=DEFAULT_FILLS, step=1, label="Fills", elem_id="inpaint-batch"
                        )
                        resampling = gr.Slider(
                            *RESAMPLING_RANGE,
                            value=1,
                            step=1,
                            label="RePaint resampling (runs per window; 1 = off; samplers that can restart)",
                            elem_id="inpaint-resampling",
                        )
                        i_class, i_guidance = class_controls("inpaint")
                        fill = gr.Button("Fill in", variant="primary", elem_id="inpaint")
                    with gr.Column(scale=2):
                        inpaint_grid = result_image("Original, masked, fills", "inpaint-grid")
                        inpaint_info = gr.Textbox(label="Run", interactive=False, elem_id="inpaint-info")
                fill.click(
                    on_inpaint,
                    [
                        inpaint_model,
                        digit,
                        mask,
                        i_sampler,
                        i_levels,
                        i_steps,
                        i_scale,
                        i_seed,
                        i_batch,
                        resampling,
                        i_class,
                        i_guidance,
                    ],  # fmt: skip
                    [inpaint_grid, inpaint_info],
                    api_name="inpaint",
                    **sampling,
                )
                follow_suggestions(inpaint_model, i_sampler, i_levels, i_steps, "images")

            with gr.Tab("Editing", id="editing"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        edit_model = gr.Dropdown(
                            [(entry.label, key) for key, entry in models.images.items()],
                            value=DEFAULT_IMAGE_MODEL,
                            label="Model",
                            elem_id="edit-model",
                        )
                        edit_image_index = gr.Slider(
                            0, last_image, value=0, step=1, label=image_label, elem_id="edit-image"
                        )
                        strength = gr.Slider(
                            0.0,
                            1.0,
                            value=DEFAULT_STRENGTH,
                            step=0.05,
                            label="Strength (0 = the image itself, 1 = a new sample)",
                            elem_id="edit-strength",
                        )
                        e_sampler, e_levels, e_steps, e_scale, e_seed = sampler_controls(
                            "edit", "images", DEFAULT_IMAGE_MODEL
                        )
                        e_batch = gr.Slider(
                            1, MAX_BATCH_SIZE, value=DEFAULT_FILLS, step=1, label="Edits", elem_id="edit-batch"
                        )
                        e_class, e_guidance = class_controls("edit")
                        edit = gr.Button("Edit", variant="primary", elem_id="edit")
                        gr.Markdown(
                            "SDEdit (Meng et al. 2022): the image is noised to the level the strength sets, then "
                            "sampled back. Samplers that solve the reverse SDE (DPM-Solver++ SDE, adaptive) keep the "
                            "most of the image; the Langevin samplers also mix toward the whole data distribution."
                        )
                    with gr.Column(scale=2):
                        edit_grid = result_image("Original, noised start, edits", "edit-grid")
                        edit_info = gr.Textbox(label="Run", interactive=False, elem_id="edit-info")
                edit.click(
                    on_edit,
                    [
                        edit_model, edit_image_index, strength, e_sampler, e_levels, e_steps, e_scale, e_seed,
                        e_batch, e_class, e_guidance,
                    ],  # fmt: skip
                    [edit_grid, edit_info],
                    api_name="edit",
                    **sampling,
                )
                follow_suggestions(edit_model, e_sampler, e_levels, e_steps, "images")

            with gr.Tab("2-D playground", id="playground"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=300):
                        point_model = gr.Dropdown(
                            [(entry.label, key) for key, entry in models.points.items()],
                            value=DEFAULT_PLAYGROUND_MODEL,
                            label="Distribution",
                            elem_id="point-model",
                        )
                        p_sampler, p_levels, p_steps, p_scale, p_seed = sampler_controls(
                            "point", "points", DEFAULT_PLAYGROUND_MODEL
                        )
                        sigma = gr.Slider(
                            0.1, 20.0, value=1.0, step=0.1, label="sigma of the score field", elem_id="field-sigma"
                        )
                        points = gr.Slider(
                            *POINTS_RANGE,
                            value=DEFAULT_POINTS,
                            step=10,
                            label="Points per sampler",
                            elem_id="point-count",
                        )
                        run = gr.Button("Run both samplers", variant="primary", elem_id="run-playground")
                        gr.Markdown(
                            "Plain Langevin runs at the smallest noise level, the chosen sampler through all levels; "
                            "both start from the same points and evaluate the score equally often. "
                            f"Limit: 2 x network calls x points <= {MAX_PLAYGROUND_WORK:,}."
                        )
                    with gr.Column(scale=2):
                        field_plot = gr.Plot(label="Score field", format="png", elem_id="score-field")
                        summary = gr.Markdown(label="Summary", elem_id="playground-summary")
                        weights = gr.JSON(label="Mode weights", max_height=240, elem_id="mode-weights")
                samples_plot = gr.Plot(label="Plain vs annealed Langevin", format="png", elem_id="samplers")
                run.click(
                    on_playground,
                    [point_model, p_sampler, p_levels, p_steps, p_scale, sigma, p_seed, points],
                    [field_plot, samples_plot, weights, summary],
                    api_name="playground",
                    **sampling,
                )
                follow_suggestions(point_model, p_sampler, p_levels, p_steps, "points")

    demo.queue(max_size=max_queue_size, default_concurrency_limit=1, api_open=False)
    demo.ncsn_models = models  # for tests and introspection
    return demo


def launch_demo(
    demo,
    host: str = "127.0.0.1",
    port: Optional[int] = 7860,
    share: bool = False,
    prevent_thread_lock: bool = False,
    quiet: bool = False,
    max_sessions: int = MAX_SESSIONS,
):
    """Launch ``demo`` with the demo's settings: offline theme, no MCP server, monitoring or run history, Gradio's
    per-session state bounded to the ``max_sessions`` most recent sessions, and the `RequestGuard` in front (only
    /generate, /playground, /inpaint and /edit run, small request bodies, no uploads)."""
    from starlette.middleware import Middleware

    gr = _import_gradio()
    cap_malloc_arenas()  # before the worker threads allocate (see its docstring: the memory soak's cause)
    public = [fn._id for fn in demo.fns.values() if fn.api_name in PUBLIC_ENDPOINTS]
    return demo.launch(
        server_name=host,
        server_port=port,
        share=share,
        prevent_thread_lock=prevent_thread_lock,
        quiet=quiet,
        show_error=True,
        theme=_theme(gr),
        css=CSS,
        mcp_server=False,
        enable_monitoring=False,
        run_history=False,
        ssr_mode=False,
        max_file_size="1mb",
        state_session_capacity=max_sessions,  # the demo takes no uploads (the guard refuses the route too)
        footer_links=["api", "gradio"],
        app_kwargs={
            "middleware": [Middleware(RequestGuard, allowed_fn_indices=public, allowed_api_names=PUBLIC_ENDPOINTS)]
        },
    )
