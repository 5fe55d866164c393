"""Gradio web demo: sample images with any sampler of the package and explore score fields in 2-D.

Gradio is imported inside `build_demo` and `launch_demo` only, so the package works without the ``demo`` extra.
Four tabs, one module each (``tab_images``, ``tab_inpainting``, ``tab_editing``, ``tab_playground``: its request
dataclass and its build function, from the shared controls of `ncsn_pipeline.demo.controls`), composed by
`build_demo` (launch with ``python app.py``):

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
`ValueError` with a readable message; the callbacks (`TabKit.wire`) only turn those errors into ``gr.Error``. The events
are registered with ``preprocess=False``: callbacks see the raw values, so the checks hold whatever Gradio's
components do or do not validate.
"""

from __future__ import annotations

from typing import Optional, Tuple

from . import tab_editing, tab_images, tab_inpainting, tab_playground
from .controls import TabKit
from .guard import PUBLIC_ENDPOINTS, RequestGuard
from .limits import CACHE_CLEANUP, CONCURRENCY_LIMIT, MAX_SESSIONS, QUEUE_MAX_SIZE, cap_malloc_arenas
from .models import DemoModels

CSS = """
#result-grid img, #trajectory img, #inpaint-grid img, #edit-grid img { image-rendering: pixelated; }
"""
TABS = (("Images", "images", tab_images), ("Inpainting", "inpainting", tab_inpainting),
        ("Editing", "editing", tab_editing), ("2-D playground", "playground", tab_playground))  # fmt: skip


def _import_gradio():
    try:
        import gradio as gr
    except ImportError as error:
        raise ImportError("The web demo needs Gradio: pip install 'ncsn-pipeline[demo]'") from error
    return gr


def _theme(gr):
    """Gradio's default theme (its fonts are served by Gradio itself: nothing is fetched from the internet)."""
    return gr.themes.Default(primary_hue="indigo")


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
        concurrency_limit: Sampling requests (all tabs together) that may run at once.
        cache_cleanup: ``(every, older_than)`` in seconds: Gradio's copies of the output files (grids, GIFs) older
            than ``older_than`` are deleted every ``every`` seconds.

    Every event is queued and ``api_open=False``: the direct ``/run/...`` and ``/api/...`` routes refuse
    queued events, so every request goes through the bounded queue.
    """
    gr = _import_gradio()
    models = models or DemoModels.load(extra_model)
    models.time_networks()  # the requests' predicted times (`ncsn_pipeline.demo.cost`) need them from the first one
    _load_matplotlib_now()
    # Gradio injects a live progress bar into callbacks with a gr.Progress default (`TabKit.wire`).
    kit = TabKit(gr, models, gr.Progress(), concurrency_limit)
    with gr.Blocks(
        title="NCSN: annealed Langevin dynamics", analytics_enabled=False, delete_cache=tuple(cache_cleanup)
    ) as demo:  # Gradio keeps a copy of every output file (grids, GIFs): old copies are deleted regularly
        gr.Markdown(
            "# Noise-conditional score networks\n"
            "Sample with **annealed Langevin dynamics** (Song & Ermon 2019) and faster score samplers, steer samples "
            "toward a class, fill in missing pixels, and see why annealing matters."
        )
        with gr.Tabs():
            for title, tab_id, tab in TABS:
                with gr.Tab(title, id=tab_id):
                    tab.build(kit)
    demo.queue(max_size=max_queue_size, default_concurrency_limit=1, api_open=False)
    demo.ncsn_models = models  # for tests and introspection
    return demo


def _load_matplotlib_now() -> None:
    """Import matplotlib and resolve its backend at start-up: Gradio reads the backend around every request
    (``gradio.utils.MatplotlibBackendMananger``), which imported it during the first one, 0.3 s its user waited."""
    try:
        import matplotlib
    except ImportError:  # Gradio skips matplotlib then, too
        return
    matplotlib.get_backend()


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
