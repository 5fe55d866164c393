"""The web demo (``ncsn_pipeline.demo``) through its public API: a launched app and ``gradio_client``.

Work is kept small (few noise levels and steps) so that the whole file runs in well under a minute.
"""

import gc
import json
import os
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio", reason="the web demo needs the demo extra: pip install -e '.[demo]'")
gradio_client = pytest.importorskip("gradio_client", reason="the demo tests need gradio_client (installed with gradio)")
httpx = pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:::gradio.queueing")  # pandas deprecations inside Gradio

from types import SimpleNamespace  # noqa: E402

from gradio_client.exceptions import AppError  # noqa: E402
from gradio_client.utils import QueueError  # noqa: E402

from helpers import RunGauge  # noqa: E402
from ncsn_pipeline.demo import (  # noqa: E402  # noqa: E402
    images,
    limits,
    models,
    playground,
    samplers,
    tab_images,
    tab_inpainting,
    tab_playground,
    ui,
)
from ncsn_pipeline.demo.cost import CallCost  # noqa: E402

# Counts the sampling requests that run at once (the callbacks look these functions up at call time).
ACTIVE_RUNS = RunGauge()
if not hasattr(tab_images.generate_images, "__wrapped_by_gauge__"):
    tab_images.generate_images = ACTIVE_RUNS.wrap(tab_images.generate_images)
    tab_playground.run_playground = ACTIVE_RUNS.wrap(tab_playground.run_playground)
    tab_images.generate_images.__wrapped_by_gauge__ = ACTIVE_RUNS
    tab_playground.run_playground.__wrapped_by_gauge__ = ACTIVE_RUNS
ACTIVE_RUNS = tab_images.generate_images.__wrapped_by_gauge__
# The demo's public names in one namespace.
demo_module = SimpleNamespace(
    **{name: value for name, value in {**vars(limits), **vars(samplers)}.items() if not name.startswith("_")},
    ACTIVE_RUNS=ACTIVE_RUNS,
    DemoModels=models.DemoModels,
    build_demo=ui.build_demo,
    launch_demo=ui.launch_demo,
    generate_images=images.generate_images,
    run_playground=playground.run_playground,
)

# model, sampler, noise levels, steps per level, step size scale, seed, batch size, animate, class, guidance scale
SMALL_GENERATE = ["ncsn-digits", "NCSNScheduler", 4, 2, 1.0, 0, 4, False, "any", 2.0, 1.0]
# model, digit, mask, sampler, noise levels, steps per level, step size scale, seed, fills, resampling, class, guidance
SMALL_INPAINT = ["ncsn-digits", 5, "right half", "VEPredictorCorrectorScheduler", 6, 1, 1.0, 0, 3, 1, "any", 2.0]
# model, image, strength, sampler, noise levels, steps per level, step size scale, seed, edits, class, guidance
SMALL_EDIT = ["ncsn-digits", 5, 0.5, "DPMSolverPlusPlusScheduler", 20, 1, 1.0, 0, 3, "any", 2.0, 1.0]
# distribution, sampler, noise levels, steps per level, step size scale, field sigma, seed, points
SMALL_PLAYGROUND = ["two-gaussians", "NCSNScheduler", 10, 30, 1.0, 1.0, 0, 500]
QUICK_S = 5.0  # a rejection must come back this fast (no sampling happens)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """The demo, launched as ``app.py`` does, on a free local port."""
    app = demo_module.build_demo()
    port = _free_port()
    demo_module.launch_demo(app, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    app.test_url = f"http://127.0.0.1:{port}/"
    yield app
    app.close()


@pytest.fixture(scope="module")
def client(server):
    api = gradio_client.Client(server.test_url, verbose=False)
    yield api
    api.close()


def _with(arguments, index, value):
    changed = list(arguments)
    changed[index] = value
    return changed


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


# --------------------------------------------------------------------------------------------------
# Images tab
# --------------------------------------------------------------------------------------------------
def test_generate_returns_grid_animation_and_summary(client):
    grid, animation, summary = client.predict(*_with(SMALL_GENERATE, 7, True), api_name="/generate")
    image = Image.open(grid)
    # 4 samples of 8x8 -> 2x2 tiles, upscaled to TILE_SIZE px in a GRID_BORDER px frame.
    cell = demo_module.TILE_SIZE + 2 * demo_module.GRID_BORDER
    assert image.size == (2 * cell, 2 * cell)
    gif = Image.open(animation)
    assert gif.format == "GIF" and gif.n_frames == 4  # one frame per noise level
    assert "9 model calls" in summary and " s;" in summary  # 4 levels x 2 steps + final denoising


def test_output_files_are_deleted_after_their_time(server):
    """Gradio's copies of the outputs (grids, GIFs) are deleted once older than the demo's setting, and so are the
    demo's own GIFs: a server kept up for days does not fill its disk."""
    assert server.delete_cache == demo_module.CACHE_CLEANUP
    app = demo_module.build_demo(models=server.ncsn_models, cache_cleanup=(1, 1))  # every second, after one second
    port = _free_port()
    demo_module.launch_demo(app, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    api = gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
    try:
        api.predict(*_with(SMALL_GENERATE, 7, True), api_name="/generate")
        served = {Path(name) for files in app.temp_file_sets for name in files}
        assert {path.suffix for path in served} >= {".png", ".gif"}, served
        waited = time.perf_counter()
        while any(path.exists() for path in served) and time.perf_counter() - waited < 15:
            time.sleep(0.2)
        assert not any(path.exists() for path in served), served
    finally:
        api.close()
        app.close()


def test_the_demo_prunes_its_old_animations():
    frames = [("first", [Image.new("L", (8, 8))]), ("last", [Image.new("L", (8, 8), 255)])]
    old = Path(images.write_animation(frames))
    age = demo_module.ANIMATION_MAX_AGE_S + 60
    os.utime(old, (time.time() - age, time.time() - age))
    recent = Path(images.write_animation(frames))
    assert recent.exists() and not old.exists()


def test_animation_frames_keep_every_grey_level_and_colour_frames_stay_in_colour():
    """Grey samples are written as grey GIF frames (no colour quantising): each of the 256 levels survives exactly;
    colour samples still give colour frames."""
    ramp = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16), "L")
    with Image.open(images.write_animation([("ramp", [ramp]), ("end", [ramp])])) as gif:
        assert gif.mode == "L" and gif.n_frames == 2  # a grey palette: nothing was quantised
        frame = np.asarray(gif.convert("L"))
    tile = frame[16 + 1 :, 1:-1]  # below the caption, inside the one-pixel frame; upscaled nearest to the tile size
    scale = tile.shape[0] // 16
    assert np.array_equal(tile[::scale, ::scale][:16, :16], np.asarray(ramp))
    red = Image.new("RGB", (8, 8), (200, 30, 30))
    with Image.open(images.write_animation([("red", [red])])) as gif:
        assert gif.convert("RGB").getpixel((4, 30)) == (200, 30, 30)


def test_same_seed_gives_identical_images(client):
    first = client.predict(*_with(SMALL_GENERATE, 5, 7), api_name="/generate")[0]
    second = client.predict(*_with(SMALL_GENERATE, 5, 7), api_name="/generate")[0]
    other = client.predict(*_with(SMALL_GENERATE, 5, 8), api_name="/generate")[0]
    assert np.array_equal(_pixels(first), _pixels(second))
    assert not np.array_equal(_pixels(first), _pixels(other))


def test_autoguidance_uses_the_guide_the_model_ships(client, server):
    """ncsn-digits ships a guide (``guide/``): w = 2 calls it once per step (twice the calls in the summary) and
    changes the samples; w = 1 is the model alone."""
    entry = server.ncsn_models.images["ncsn-digits"]
    assert entry.guide is not None and entry.guide is not entry.pipeline.unet
    plain_grid, _, plain = client.predict(*SMALL_GENERATE, api_name="/generate")
    guided_grid, _, guided = client.predict(*_with(SMALL_GENERATE, 10, 2.0), api_name="/generate")
    assert "autoguided by its guide (w 2: 18 network calls" in guided and "autoguided" not in plain
    assert not np.array_equal(_pixels(plain_grid), _pixels(guided_grid))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({0: "glyph-mixture", 10: 2.0}, "autoguidance scale 2 needs a model that ships a guide"),
        ({8: "3", 10: 1.5}, "autoguidance (scale 1.5) and classifier guidance toward class '3' cannot be combined"),
    ],
)
def test_autoguidance_that_cannot_run_is_refused(client, changes, message):
    arguments = list(SMALL_GENERATE)
    for index, value in changes.items():
        arguments[index] = value
    with pytest.raises(AppError, match=re.escape(message)):
        client.predict(*arguments, api_name="/generate")


def test_a_user_model_folder_with_a_guide_offers_it(tmp_path):
    from ncsn_pipeline.pretrained import load_pretrained

    folder = tmp_path / "digits-copy"
    load_pretrained("ncsn-digits").save_pretrained(folder)
    assert demo_module.DemoModels.load(extra_model=str(folder)).images[str(folder)].guide is None
    load_pretrained("ncsn-digits").save_pretrained(folder / "guide")
    models = demo_module.DemoModels.load(extra_model=str(folder))
    result = demo_module.generate_images(models, str(folder), "NCSNScheduler", 3, 1, 1.0, 0, 2, False, "any", 2.0, 1.5)
    assert models.images[str(folder)].guide is not None and result.calls == 2 * 4 and "autoguided" in result.summary


def test_the_demo_runs_its_networks_channels_last_with_the_same_samples():
    """The demo stores convolution weights channels-last (faster on CPU): every image network is converted, and
    samples equal a plainly loaded pipeline's to round-off (float32 sums in another order: 1e-4 of a [0, 1] pixel
    is far below one 8-bit level and far above the ~1e-6 differences seen)."""
    from ncsn_pipeline.pretrained import load_pretrained

    models = demo_module.DemoModels.load()
    for name, entry in models.images.items():
        for network in (entry.pipeline.unet, entry.guide, entry.classifier):
            weights = [p for p in getattr(network, "parameters", list)() if p.ndim == 4]
            assert all(w.is_contiguous(memory_format=torch.channels_last) for w in weights), name
    fashion = models.images["ncsn-fashion"].pipeline
    options = dict(batch_size=4, num_inference_steps=5, class_labels=[0, 3, 5, 9], output_type="pt")
    demo = fashion(generator=torch.Generator().manual_seed(0), **options).images
    plain = load_pretrained("ncsn-fashion")(generator=torch.Generator().manual_seed(0), **options).images
    assert torch.allclose(demo, plain, atol=1e-4), (demo - plain).abs().max()


def test_a_model_added_after_loading_also_runs_channels_last(tmp_path):
    from ncsn_pipeline.pretrained import load_pretrained

    folder = tmp_path / "digits-copy"
    load_pretrained("ncsn-digits").save_pretrained(folder)
    models = demo_module.DemoModels()
    assert models.add_user_model(str(folder)) == "images"
    weights = [p for p in models.images[str(folder)].pipeline.unet.parameters() if p.ndim == 4]
    assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)


def test_every_sampler_the_package_exports_is_offered():
    from diffusers.schedulers.scheduling_utils import SchedulerMixin

    import ncsn_pipeline

    exported = {
        name
        for name in ncsn_pipeline.__all__
        if isinstance(getattr(ncsn_pipeline, name), type) and issubclass(getattr(ncsn_pipeline, name), SchedulerMixin)
    }
    assert set(demo_module.SAMPLERS) == exported and "NCSNScheduler" in exported


@pytest.mark.parametrize("sampler", sorted(demo_module.SAMPLERS))
def test_glyph_mixture_with_every_sampler(client, sampler):
    arguments = _with(_with(_with(SMALL_GENERATE, 0, "glyph-mixture"), 1, sampler), 7, True)
    _, animation, summary = client.predict(*arguments, api_name="/generate")
    frames = Image.open(animation).n_frames
    if demo_module.SAMPLERS[sampler].adaptive:  # one frame per level reached, as its tolerance decides
        assert 4 < frames <= demo_module.MAX_ANIMATION_FRAMES
    else:
        assert frames == 4  # one frame per noise level, whatever the sampler
    description = demo_module.SAMPLERS[sampler]().description.split(",")[0]
    assert "glyph-mixture" in summary and description in summary and "model calls" in summary


BAD_GENERATE_INPUTS = [
    (0, "no-such-model", "Unknown model 'no-such-model'; choose one of ['ncsn-fashion', 'ncsn-digits', "),
    (1, "DDPMScheduler", f"Unknown sampler 'DDPMScheduler'; choose one of {list(demo_module.SAMPLERS)}"),
    (2, 1, "noise levels must be a whole number from 2 to 100, got 1."),
    (2, 101, "noise levels must be a whole number from 2 to 100, got 101."),
    (3, 2.5, "steps per level must be a whole number from 1 to 200, got 2.5."),
    (3, "3", "steps per level must be a whole number from 1 to 200, got '3'."),
    (4, 0.0, "step size scale must be a finite number from 0.05 to 2, got 0.0."),
    (4, 3, "step size scale must be a finite number from 0.05 to 2, got 3."),
    (5, -1, "seed must be a whole number from 0 to 2147483647, got -1."),
    (5, 2**31, "seed must be a whole number from 0 to 2147483647, got 2147483648."),
    (6, 0, "batch size must be a whole number from 1 to 64, got 0."),
    (6, 65, "batch size must be a whole number from 1 to 64, got 65."),
    (6, True, "batch size must be a whole number from 1 to 64, got True."),
    (6, None, "batch size must be a whole number from 1 to 64, got None."),
    (7, "yes", "animation must be True or False, got 'yes'."),
    (8, "cat", "class 'cat' is not a class of digits (bundled NCSNv2, trained); choose one of ['any', '0', "),
    (9, -1, "guidance scale must be a finite number from 0 to 20, got -1."),
    (10, 0.5, "autoguidance scale must be a finite number from 1 to 4, got 0.5."),
    (10, 4.5, "autoguidance scale must be a finite number from 1 to 4, got 4.5."),
    (10, "2", "autoguidance scale must be a finite number from 1 to 4, got '2'."),
]


@pytest.mark.parametrize("index, value, message", BAD_GENERATE_INPUTS)
def test_generate_rejects_bad_input_quickly_with_a_readable_message(client, index, value, message):
    started = time.perf_counter()
    with pytest.raises(AppError) as error:
        client.predict(*_with(SMALL_GENERATE, index, value), api_name="/generate")
    assert message in str(error.value)
    assert time.perf_counter() - started < QUICK_S


@pytest.mark.parametrize(
    ("levels", "steps", "batch", "message"),
    [
        (100, 200, 64, r"Too many network calls: 20001, the limit is 400"),
        (100, 81, 1, r"Too many network calls: 8101, the limit is 400"),  # the 14-minute request of issue 9
        (50, 5, 64, r"Too much work: 251 network calls x 64 \(batch size\) = 16064, the limit is 8192"),
    ],
)
def test_generate_refuses_too_much_work(client, levels, steps, batch, message):
    too_much = ["ncsn-digits", "NCSNScheduler", levels, steps, 1.0, 0, batch, False, "any", 2.0, 1.0]
    started = time.perf_counter()
    with pytest.raises(AppError, match=message):
        client.predict(*too_much, api_name="/generate")
    assert time.perf_counter() - started < QUICK_S


def test_a_class_guides_the_digits_model_and_models_without_classes_refuse_one(client):
    guided = client.predict(*_with(SMALL_GENERATE, 8, "3"), api_name="/generate")[2]
    assert "guided toward class 3 (classifier guidance, scale 2)" in guided
    with pytest.raises(AppError, match=r"class '3' is not a class of glyph-mixture .*choose one of \['any'\]"):
        client.predict(*_with(_with(SMALL_GENERATE, 0, "glyph-mixture"), 8, "3"), api_name="/generate")


def test_a_model_with_the_no_class_label_is_steered_by_classifier_free_guidance_priced_on_the_doubled_batch(
    server, client
):
    """ncsn-digits-classes has the "no class" label: a guidance scale other than 1 steers it by classifier-free
    guidance (other images than at 1), each call on the doubled batch, which the request's price and work count."""
    entry = server.ncsn_models.images["ncsn-digits-classes"]
    assert entry.classifier_free and not server.ncsn_models.images["ncsn-fashion"].classifier_free
    guided = entry.class_arguments("7", 2.0, 4)
    assert guided["guidance_scale"] == 2.0 and entry.network_batch(guided, 4) == 8
    assert "guidance_scale" not in entry.class_arguments("7", 1.0, 4)  # 1: the model alone, one batch
    request = _with(_with(SMALL_GENERATE, 0, "ncsn-digits-classes"), 8, "7")
    cfg = client.predict(*request, api_name="/generate")
    plain = client.predict(*_with(request, 9, 1.0), api_name="/generate")
    assert "classifier-free guidance at scale 2 (each call on the doubled batch of 8)" in cfg[-1]
    assert "classifier-free" not in plain[-1]
    assert not np.array_equal(_pixels(cfg[0]), _pixels(plain[0]))
    # Work is calls x the network's batch: a request within the limit alone is refused once doubled.
    calls = demo_module.MAX_IMAGE_WORK // (2 * demo_module.MAX_BATCH_SIZE) + 1
    assert calls * demo_module.MAX_BATCH_SIZE <= demo_module.MAX_IMAGE_WORK
    with pytest.raises(ValueError, match="Too much work"):
        demo_module.generate_images(server.ncsn_models, "ncsn-digits-classes", "NCSNScheduler", calls, 1, 1.0, 0,
                                    demo_module.MAX_BATCH_SIZE, False, "7", 2.0, 1.0)  # fmt: skip


def test_editing_is_autoguided_by_the_guide_a_model_ships(client):
    grid, summary = client.predict(*_with(SMALL_EDIT, 11, 1.5), api_name="/edit")
    assert "autoguided by its guide (w 1.5" in summary
    with pytest.raises(AppError, match="needs a model that ships a guide"):
        client.predict(*_with(_with(SMALL_EDIT, 0, "ncsn-fashion"), 11, 1.5), api_name="/edit")


def test_the_class_conditional_digits_model_takes_the_class(server, client):
    if "ncsn-digits-classes" not in server.ncsn_models.images:
        pytest.skip("the class-conditional digits model is not bundled in this checkout")
    chosen = _with(_with(_with(SMALL_GENERATE, 0, "ncsn-digits-classes"), 8, "7"), 9, 1.0)  # no guidance
    assert " of class 7 with " in client.predict(*chosen, api_name="/generate")[2]
    every = client.predict(*_with(SMALL_GENERATE, 0, "ncsn-digits-classes"), api_name="/generate")[2]
    assert "of each class in turn" in every


def _tiles(path, count):
    """The ``count`` tiles of a result grid (left to right, top to bottom), as RGB arrays."""
    grid = _pixels(path)
    cell = demo_module.TILE_SIZE + 2 * demo_module.GRID_BORDER
    columns = grid.shape[1] // cell
    border, tile = demo_module.GRID_BORDER, demo_module.TILE_SIZE
    return [
        grid[row * cell + border : row * cell + border + tile, column * cell + border : column * cell + border + tile]
        for row, column in (divmod(index, columns) for index in range(count))
    ]


def test_repainting_with_any_class_keeps_the_class_of_the_image(client):
    """The page's default Inpainting request on the class-conditional Fashion model repaints the ankle boot as an
    ankle boot (not the classes in turn), and says so."""
    request = ["ncsn-fashion", 0, "right half", "DPMSolverPlusPlusScheduler", 5, 1, 1.0, 0, 2, 1, "any", 2.0]
    summary = client.predict(*request, api_name="/inpaint")[-1]
    assert "(Ankle boot), right half repainted by Fashion-MNIST" in summary and "as class Ankle boot" in summary


def test_inpaint_fills_the_masked_half_and_keeps_the_rest(client):
    grid, summary = client.predict(*SMALL_INPAINT, api_name="/inpaint")
    original, masked, *fills = _tiles(grid, 5)
    half = demo_module.TILE_SIZE // 2
    assert np.array_equal(masked[:, :half], original[:, :half])  # the kept half is shown as it is
    assert (masked[:, half:] == 128).all()  # the repainted half is shown grey
    for fill in fills:
        assert np.array_equal(fill[:, :half], original[:, :half])  # known pixels returned unchanged
    assert not np.array_equal(fills[0][:, half:], fills[1][:, half:])  # the fills differ
    assert "Held-out digit 5 (" in summary and "right half repainted" in summary and "network calls" in summary
    resampled = client.predict(*_with(SMALL_INPAINT, 9, 3), api_name="/inpaint")[1]
    assert "RePaint resampling x3" in resampled


@pytest.mark.parametrize(
    "index, value, message",
    [
        (1, 359, "digit must be a whole number from 0 to 358, got 359."),
        (2, "diagonal", "Unknown mask 'diagonal'; choose one of ['right half', "),
        (9, 11, "resampling must be a whole number from 1 to 10, got 11."),
        (3, "AdaptiveSDEScheduler", "needs a sampler that can restart"),  # with resampling 2, below
        (4, 100, "Too many network calls: 41000, the limit is 400"),  # 100 levels x 41 calls x 10 runs
    ],
)
def test_inpaint_rejects_bad_input_with_a_readable_message(client, index, value, message):
    arguments = _with(SMALL_INPAINT, index, value)
    if index == 3:
        arguments = _with(arguments, 9, 2)
    if index == 4:
        arguments = _with(_with(_with(arguments, 5, 40), 8, 64), 9, 10)
    with pytest.raises(AppError) as error:
        client.predict(*arguments, api_name="/inpaint")
    assert message in str(error.value)


def test_edit_keeps_a_light_edit_near_the_image_and_strength_zero_returns_it(client):
    grid, summary = client.predict(*SMALL_EDIT, api_name="/edit")
    original, noised, *edits = _tiles(grid, 5)
    assert not np.array_equal(noised, original)  # the start is the image plus noise
    assert all(np.abs(edit.astype(float) - original).mean() < 60 for edit in edits)  # strength 0.5 keeps the digit
    assert not np.array_equal(edits[0], edits[1])  # the edits differ
    assert "Held-out digit 5 (" in summary and "at strength 0.5 (noised to sigma" in summary
    assert "DPM-Solver++" in summary and "network calls on the batch of 3" in summary
    grid, summary = client.predict(*_with(SMALL_EDIT, 2, 0.0), api_name="/edit")
    original, noised, *edits = _tiles(grid, 5)
    assert all(np.array_equal(tile, original) for tile in (noised, *edits)) and "0 network calls" in summary


def test_a_class_conditional_model_edits_within_the_images_own_class_unless_told_otherwise(server):
    """Fashion-MNIST test image 0 is an ankle boot: with class "any" the class-conditional model edits it as an ankle
    boot (classes in turn would turn it into sandals and shirts); a chosen class is used as chosen."""
    from ncsn_pipeline.demo.editing import edit_image

    fashion = demo_module.FASHION_MODEL
    kept = edit_image(server.ncsn_models, fashion, 0, 0.3, "DPMSolverPlusPlusScheduler", 10, 1, 1.0, 0, 1)
    assert "test image 0 (Ankle boot) edited by" in kept.summary and "as class Ankle boot at strength" in kept.summary
    other = edit_image(server.ncsn_models, fashion, 0, 0.3, "DPMSolverPlusPlusScheduler", 10, 1, 1.0, 0, 1, "Sandal")
    assert "as class Sandal at strength" in other.summary


@pytest.mark.parametrize(
    "index, value, message",
    [
        (1, 359, "digit must be a whole number from 0 to 358, got 359."),
        (2, 1.5, "strength must be a finite number from 0 to 1, got 1.5."),
        (2, "half", "strength must be a finite number from 0 to 1, got 'half'."),
        (3, "DDIM", "Unknown sampler 'DDIM'"),
        (4, 100, "Too many network calls"),  # 100 levels x 41 calls at strength 1
        (9, "cat", "class 'cat' is not a class of"),
    ],
)
def test_edit_rejects_bad_input_with_a_readable_message(client, index, value, message):
    arguments = _with(SMALL_EDIT, index, value)
    if index == 4:
        arguments = _with(_with(_with(arguments, 5, 40), 3, "NCSNScheduler"), 2, 1.0)
    with pytest.raises(AppError) as error:
        client.predict(*arguments, api_name="/edit")
    assert message in str(error.value)


def _call_raw(url: str, api_name: str, body: str) -> str:
    """Send a raw JSON body (NaN and Infinity included) through the queued ``/call`` route; return the SSE text."""
    joined = httpx.post(
        f"{url}gradio_api/call/{api_name}", content=body, headers={"content-type": "application/json"}, timeout=30
    )
    assert joined.status_code == 200, joined.text
    event_id = joined.json()["event_id"]
    return httpx.get(f"{url}gradio_api/call/{api_name}/{event_id}", timeout=30).text


@pytest.mark.parametrize(
    "raw, message",
    [
        (
            '"ncsn-digits", "NCSNScheduler", NaN, 2, 1.0, 0, 4, false, "any", 2.0, 1.0',
            "noise levels must be a whole number from 2 to 100",
        ),
        (
            '"ncsn-digits", "NCSNScheduler", 4, 2, Infinity, 0, 4, false, "any", 2.0, 1.0',
            "step size scale must be a finite number",
        ),
        ('"ncsn-digits", "NCSNScheduler", 4, 2, NaN, 0, 4, false, "any", 2.0, 1.0', "from 0.05 to 2, got nan."),
        (
            '"ncsn-digits", "NCSNScheduler", 4, 2, 1.0, NaN, 4, false, "any", 2.0, 1.0',
            "seed must be a whole number from 0 to 2147483647",
        ),
        (
            '"ncsn-digits", "NCSNScheduler", 4, 2, 1.0, 0, 4, false, "any", 2.0, NaN',
            "autoguidance scale must be a finite number from 1 to 4, got nan.",
        ),
    ],
)
def test_non_finite_numbers_are_rejected(server, raw, message):
    started = time.perf_counter()
    stream = _call_raw(server.test_url, "generate", '{"data": [' + raw + "]}")
    assert "event: error" in stream and message in stream, stream
    assert time.perf_counter() - started < QUICK_S


# --------------------------------------------------------------------------------------------------
# 2-D playground
# --------------------------------------------------------------------------------------------------
def test_playground_annealed_recovers_the_weights_better_than_plain(client):
    field_plot, samples_plot, weights, summary = client.predict(*SMALL_PLAYGROUND, api_name="/playground")
    for plot in (field_plot, samples_plot):
        plot = json.loads(plot) if isinstance(plot, str) else plot
        assert plot["type"] == "matplotlib" and plot["plot"].startswith("data:image/png;base64,")
    assert weights["true"] == [0.2, 0.8]
    assert abs(weights["annealed"][1] - 0.8) < 0.07
    assert abs(weights["annealed"][1] - 0.8) < abs(weights["plain"][1] - 0.8) - 0.15
    assert "plain Langevin recovers" in summary


@pytest.mark.parametrize("sampler", sorted(demo_module.SAMPLERS))
def test_playground_with_every_sampler(client, sampler):
    arguments = _with(_with(_with(SMALL_PLAYGROUND, 1, sampler), 2, 20), 3, 15)  # at most 320 calls
    weights = client.predict(*arguments, api_name="/playground")[2]
    assert abs(weights["annealed"][1] - 0.8) < abs(weights["plain"][1] - 0.8)


def test_playground_learned_model_and_three_modes(client):
    learned = _with(SMALL_PLAYGROUND, 0, "ncsn-two-gaussians")
    assert client.predict(*learned, api_name="/playground")[2]["true"] == [0.2, 0.8]
    three = _with(SMALL_PLAYGROUND, 0, "three-gaussians")
    assert client.predict(*three, api_name="/playground")[2]["true"] == [0.5, 0.3, 0.2]


BAD_PLAYGROUND_INPUTS = [
    (0, "moons", "Unknown distribution 'moons'"),
    (5, 0.0, "score-field sigma must be a finite number from 0.01 to 50, got 0.0."),
    (7, 5, "number of points must be a whole number from 10 to 2000, got 5."),
    (7, 100.5, "number of points must be a whole number from 10 to 2000, got 100.5."),
    (2, 100, None),  # with 200 steps per level and 2000 points: too much work
]


@pytest.mark.parametrize("index, value, message", BAD_PLAYGROUND_INPUTS)
def test_playground_rejects_bad_input(client, index, value, message):
    arguments = _with(SMALL_PLAYGROUND, index, value)
    if message is None:
        arguments = _with(_with(arguments, 3, 200), 7, 2000)
        message = "Too many network calls: 20000, the limit is 1000."
    started = time.perf_counter()
    with pytest.raises(AppError) as error:
        client.predict(*arguments, api_name="/playground")
    assert message in str(error.value)
    assert time.perf_counter() - started < QUICK_S


# --------------------------------------------------------------------------------------------------
# The queue: bounded, and the only way in
# --------------------------------------------------------------------------------------------------
def test_every_event_is_queued_and_no_direct_route_runs_it(server):
    assert server._queue.max_size == demo_module.QUEUE_MAX_SIZE
    assert server.api_open is False
    # api_open=False refuses queued events on the direct routes, so every event with a server function must be
    # queued; the others run only in the browser (JavaScript) and have no server function.
    assert all(fn.queue or fn.fn is None for fn in server.fns.values())
    served = [fn.api_name for fn in server.fns.values() if fn.fn is not None]
    assert served == ["generate", "inpaint", "edit", "playground"]
    sampling = [fn for fn in server.fns.values() if fn.api_name in ("generate", "playground", "inpaint", "edit")]
    assert len(sampling) == 4
    assert all(fn.concurrency_id == demo_module.SAMPLING_CONCURRENCY_ID for fn in sampling)
    assert all(fn.concurrency_limit == demo_module.CONCURRENCY_LIMIT for fn in sampling)

    demo_module.ACTIVE_RUNS.reset_peak()
    body = {"data": SMALL_GENERATE}
    for fn in server.fns.values():
        for prefix in ("gradio_api/run", "gradio_api/api"):
            response = httpx.post(f"{server.test_url}{prefix}/{fn.api_name}", json=body, timeout=30)
            assert response.status_code == 404, (prefix, fn.api_name, response.text)
    assert demo_module.ACTIVE_RUNS.peak == 0  # nothing ran
    for path in ("gradio_api/mcp/sse", "gradio_api/mcp/"):  # no MCP server calling the functions directly
        assert httpx.get(f"{server.test_url}{path}", timeout=30).status_code == 404


def test_only_the_documented_endpoints_run_and_requests_stay_small(server):
    public = {fn._id for fn in server.fns.values() if fn.api_name in ("generate", "playground", "inpaint", "edit")}
    join = f"{server.test_url}gradio_api/queue/join"
    for fn_index in [*(set(range(len(server.fns) + 2)) - public), 99]:
        body = {"data": [], "fn_index": fn_index, "session_hash": "probe", "event_data": None, "trigger_id": None}
        response = httpx.post(join, json=body, timeout=30)
        assert response.status_code == 404, fn_index
        assert "call /generate, /playground, /inpaint or /edit" in response.text, fn_index
    huge = httpx.post(join, content=b"x" * (2 * 1024 * 1024), headers={"content-type": "application/json"}, timeout=30)
    assert huge.status_code == 413 and "x" * 100 not in huge.text  # refused, and not echoed back
    for name in ("js_fn", "update", "nothing"):
        assert httpx.post(f"{server.test_url}gradio_api/call/{name}", json={"data": []}, timeout=30).status_code == 404
    # 2 KB of nested lists (Python's json gives up with RecursionError near 1,000 levels): a 400, no traceback.
    nested = b'{"data": ' + b"[" * 1000 + b"]" * 1000 + b', "fn_index": 0}'
    for url in (join, f"{server.test_url}gradio_api/call/generate"):
        deep = httpx.post(url, content=nested, headers={"content-type": "application/json"}, timeout=30)
        assert deep.status_code == 400 and "deeper than 16 levels" in deep.text and "Traceback" not in deep.text
    brackets_in_a_string = {"data": ["[" * 100], "fn_index": 99, "session_hash": "probe"}
    assert httpx.post(join, json=brackets_in_a_string, timeout=30).status_code == 404  # a string is no nesting
    upload = httpx.post(f"{server.test_url}gradio_api/upload", files={"files": ("a.txt", b"x" * 1000)}, timeout=30)
    assert upload.status_code == 404
    info = httpx.get(f"{server.test_url}gradio_api/info", timeout=30).json()
    assert set(info["named_endpoints"]) == {"/generate", "/playground", "/inpaint", "/edit"}
    assert not info.get("unnamed_endpoints")
    labels = [item["label"] for endpoint in info["named_endpoints"].values() for item in endpoint["returns"]]
    assert all(label and not label.startswith("value_") for label in labels), labels


class _CallCounter:
    """Counts the forward calls of a module (a hook added for one test)."""

    def __init__(self, module):
        self.calls = 0
        self.handle = module.register_forward_hook(self._count)

    def _count(self, *_):
        self.calls += 1


@pytest.mark.parametrize("api_name", ["generate", "playground"])
def test_a_run_stops_when_its_client_disconnects(server, api_name):
    """Closing the event stream stops the run at its next network call (before the fix it ran to the end and held
    the only worker: 397 calls here, several seconds; batch 1 keeps it well within the predicted-time limit)."""
    if api_name == "generate":
        entry = server.ncsn_models.images["ncsn-digits"]
        long_run = ["ncsn-digits", "NCSNScheduler", 99, 4, 1.0, 0, 1, False, "any", 2.0, 1.0]
    else:
        entry = server.ncsn_models.points["ncsn-two-gaussians"]  # a learned (module) score: its calls can be counted
        long_run = ["ncsn-two-gaussians", "NCSNScheduler", 100, 10, 1.0, 1.0, 0, 2000]
    total = 99 * 4 + 1 if api_name == "generate" else 2 * 1000  # network calls of the whole run
    fn_index = next(fn._id for fn in server.fns.values() if fn.api_name == api_name)
    session = f"disconnect-{api_name}"
    body = {"data": long_run, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    counter = _CallCounter(entry.pipeline.unet)
    # Priced from a fixed call cost, not the start-up timing: a slow moment while the demo timed its models once
    # priced this request over the limit and refused it before it ran (the stream then ended with no progress).
    measured_costs = dict(getattr(entry, "costs", {}))
    if hasattr(entry, "costs"):
        entry.costs.update({False: CallCost(0.001, 0.0001), True: CallCost(0.001, 0.0001)})
    try:
        joined = httpx.post(f"{server.test_url}gradio_api/queue/join", json=body, timeout=30)
        assert joined.status_code == 200, joined.text
        events = f"{server.test_url}gradio_api/queue/data"
        with httpx.stream("GET", events, params={"session_hash": session}, timeout=30) as stream:
            for line in stream.iter_lines():
                if '"progress"' in line and counter.calls > 0:
                    break  # it runs; now the client goes away
            else:
                pytest.fail(f"the run ended before the client could disconnect: {line}")
        disconnected = time.perf_counter()
        while demo_module.ACTIVE_RUNS.current and time.perf_counter() - disconnected < 20:
            time.sleep(0.05)
        stopped_after = time.perf_counter() - disconnected
        calls_at_stop = counter.calls
        time.sleep(0.5)
        assert counter.calls == calls_at_stop  # nothing runs on
    finally:
        counter.handle.remove()
        if hasattr(entry, "costs"):
            entry.costs.clear()
            entry.costs.update(measured_costs)
    assert demo_module.ACTIVE_RUNS.current == 0
    assert calls_at_stop < total / 2, (calls_at_stop, total)
    assert stopped_after < 5.0, stopped_after


def _resident_mb() -> float:
    """Resident memory of this process (the server runs in it), in MB, after glibc has returned the memory it holds
    free to the system (``malloc_trim``): what is measured is what the process keeps, not the allocator's cache of
    freed pages, whose size varied from run to run (+19 to +69 MB over the 300 requests with nothing retained)."""
    import ctypes
    import ctypes.util

    gc.collect()
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: measure as it is
        pass
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:"))


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads resident memory from /proc")
def test_memory_stays_bounded_over_hundreds_of_requests(server):
    """Every request from a new session (as browsers and API clients are): Gradio kept a copy of the page's
    state, with the last outputs, for each of up to 10,000 sessions, so memory grew by ~0.25 MB per request
    without a plateau (measured: +90 MB over 350 requests). Now at most MAX_SESSIONS are kept. Run after the
    concurrency test (as in a full run), glibc's per-thread malloc arenas added +118 MB; the demo caps them at two
    (`cap_malloc_arenas`): +19 MB in the same order.

    Bound: 150 requests after a warm-up that fills the kept sessions may add at most 30 MB (allocator noise: +6 to
    +13 MB measured; before the fix the kept sessions added ~0.25 MB per request, 37 MB here).
    `test_a_burst_of_fifty_requests_is_answered_and_leaves_nothing_behind` measures the Python objects kept."""
    generate = '{"data": ["ncsn-digits", "NCSNScheduler", 2, 1, 1.0, 0, 2, true, "any", 2.0, 1.0]}'
    playground = '{"data": ["two-gaussians", "NCSNScheduler", 2, 1, 1.0, 1.0, 0, 50]}'

    def requests(count):
        for number in range(count):
            stream = _call_raw(
                server.test_url, "playground" if number % 2 else "generate", playground if number % 2 else generate
            )
            assert "event: complete" in stream, stream[-500:]

    requests(demo_module.MAX_SESSIONS + 8)
    gc.collect()
    before = _resident_mb()
    requests(150)
    gc.collect()
    grown = _resident_mb() - before
    print(f"resident memory: {before:.0f} MB -> {before + grown:.0f} MB over 150 requests")
    assert len(server.state_holder.session_data) <= demo_module.MAX_SESSIONS
    assert grown < 30, f"memory grew by {grown:.0f} MB over 150 requests"


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="glibc's mallopt (Linux)")
def test_the_demo_caps_malloc_arenas():
    """The memory soak's cause: one glibc arena per Gradio worker thread kept freed memory resident (+118 MB over 300
    requests after the concurrency test, +19 MB with two arenas); `launch_demo` caps them."""
    from ncsn_pipeline.demo.limits import MALLOC_ARENAS, cap_malloc_arenas

    assert MALLOC_ARENAS == 2 and cap_malloc_arenas() is True


def test_every_suggested_setting_is_accepted(server):
    """The sliders' suggestions for every model and sampler stay within the tab's call limit and, for image models at
    the default batch, within the predicted-time limit (else Run fails: the default model's annealed-Langevin
    suggestion was refused once the time was priced)."""
    from ncsn_pipeline.demo.cost import check_request_time, max_image_calls

    models = server.ncsn_models
    for tab, table in (("images", models.images), ("points", models.points)):
        for key, entry in table.items():
            for sampler in demo_module.SAMPLERS:
                suggested = models.defaults(tab, key, sampler)
                config = entry.pipeline.scheduler.config
                max_calls = (  # what a request of the default batch may make (the cap of an adaptive sampler)
                    max_image_calls(entry.call_cost(), demo_module.DEFAULT_BATCH_SIZE)
                    if tab == "images"
                    else demo_module.MAX_PLAYGROUND_CALLS
                )
                levels, steps = suggested["noise_levels"], suggested["steps_per_level"]
                run = demo_module.prepare_run(sampler, config, levels, steps, 1.0, max_calls)
                assert run.max_model_calls <= max_calls, (tab, key, sampler, suggested)
                if tab == "images":  # and within the predicted-time limit at the default batch, on this machine
                    check_request_time(entry.call_cost(), run.max_model_calls, demo_module.DEFAULT_BATCH_SIZE)


def test_twenty_concurrent_clients(server):
    """20 clients at once on both tabs: at most CONCURRENCY_LIMIT run together, the rest wait or get "queue full"."""
    workers = 20
    with ThreadPoolExecutor(workers) as pool:
        clients = list(pool.map(lambda _: gradio_client.Client(server.test_url, verbose=False), range(workers)))
    start_together = threading.Barrier(workers)

    def call(numbered):
        number, api = numbered
        start_together.wait()
        try:
            if number % 2:
                api.predict(*_with(SMALL_PLAYGROUND, 7, 200), api_name="/playground")
            else:
                api.predict(*_with(SMALL_GENERATE, 6, 8), api_name="/generate")
            return "done"
        except QueueError:
            return "queue full"
        except Exception as error:  # anything else is a failure of the test
            return f"unexpected {error!r}"

    demo_module.ACTIVE_RUNS.reset_peak()
    try:
        with ThreadPoolExecutor(workers) as pool:
            outcomes = list(pool.map(call, enumerate(clients)))
    finally:
        for api in clients:
            api.close()
    assert set(outcomes) <= {"done", "queue full"}, outcomes
    assert outcomes.count("done") >= 1
    assert outcomes.count("done") <= workers
    assert 1 <= demo_module.ACTIVE_RUNS.peak <= demo_module.CONCURRENCY_LIMIT
    assert demo_module.ACTIVE_RUNS.current == 0
    print(f"20 clients: {outcomes.count('done')} served, {outcomes.count('queue full')} told the queue is full")
    # The server still answers.
    api = gradio_client.Client(server.test_url, verbose=False)
    try:
        assert "9 model calls" in api.predict(*SMALL_GENERATE, api_name="/generate")[2]
    finally:
        api.close()


# --------------------------------------------------------------------------------------------------
# app.py
# --------------------------------------------------------------------------------------------------
def test_app_reports_a_model_that_cannot_be_loaded(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("demo_app", Path(__file__).resolve().parents[1] / "app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    assert app.build_parser().parse_args([]).port == 7860
    with pytest.raises(SystemExit) as exit_info:
        app.main(["--model", str(tmp_path / "missing"), "--port", "7999"])
    assert exit_info.value.code == 2
    assert "Could not load --model" in capsys.readouterr().err


def test_user_model_joins_the_matching_tab(tmp_path):
    from ncsn_pipeline.pretrained import load_pretrained

    toy, glyphs = str(tmp_path / "toy"), str(tmp_path / "glyphs")
    load_pretrained("ncsn-toy").save_pretrained(toy)
    load_pretrained("glyph-mixture").save_pretrained(glyphs)
    models = demo_module.DemoModels.load(extra_model=toy)
    assert models.points[toy].exact and models.points[toy].label == f"{toy} (--model)"
    result = demo_module.run_playground(models, toy, "NCSNScheduler", 5, 10, 1.0, 2.0, 0, 100)
    assert result.weights["true"] == [0.2, 0.8]
    assert models.add_user_model(glyphs) == "images" and models.default_image_model == glyphs  # opened on it
    result = demo_module.generate_images(models, glyphs, "NCSNScheduler", 3, 2, 1.0, 0, 2, False)
    assert result.calls == 7 and result.animation_path is None


def test_a_fashion_mnist_model_repaints_held_out_fashion_images(tmp_path):
    """A 1 x 28 x 28 model gets Fashion-MNIST's held-out test images (shipped with the package) in the Inpainting
    tab; a digits model keeps the held-out digits; each set's own range is checked."""
    import torch

    from ncsn_pipeline import EDMScoreModel, NCSNPipeline, NCSNScheduler
    from ncsn_pipeline.data.fashion_mnist import load_held_out_slice
    from ncsn_pipeline.demo.inpainting import HELD_OUT_SETS, held_out_count, held_out_image, inpaint_image

    folder = str(tmp_path / "fashion")
    torch.manual_seed(0)
    model = EDMScoreModel(sample_size=28, block_out_channels=(8, 16), norm_num_groups=4)
    NCSNPipeline(model, NCSNScheduler(sigma_max=20.0, num_noise_levels=3), data_range=(0, 1)).save_pretrained(folder)
    models = demo_module.DemoModels.load(extra_model=folder)
    assert models.images[folder].held_out == "fashion-mnist" and models.images["ncsn-digits"].held_out == "digits"
    assert held_out_count("fashion-mnist") == 200 and held_out_count("digits") == 359
    images, labels = load_held_out_slice()
    assert torch.bincount(labels).tolist() == [20] * 10  # 20 test images per class
    expected = (images[3].float() + 0.5) / 256
    torch.testing.assert_close(held_out_image("fashion-mnist", 3, 1, 28), expected)
    assert held_out_image("fashion-mnist", 3, 3, 56).shape == (3, 56, 56)  # whole pixel blocks, grey to RGB
    result = inpaint_image(models, folder, 3, "right half", "DPMSolverPlusPlusScheduler", 3, 1, 1.0, 0, 2, 1)
    class_name = HELD_OUT_SETS["fashion-mnist"][3][int(labels[3])]
    assert result.summary.startswith(f"Held-out Fashion-MNIST test image 3 ({class_name}), right half repainted")
    with pytest.raises(ValueError, match="held-out Fashion-MNIST test image must be a whole number from 0 to 199"):
        inpaint_image(models, folder, 200, "right half", "DPMSolverPlusPlusScheduler", 3, 1, 1.0, 0, 2, 1)
    assert tab_inpainting.held_out_slider(models) == (
        358,
        "Image (held-out digits 0-358; held-out Fashion-MNIST test images 0-199)",
    )


# --------------------------------------------------------------------------------------------------
# Predicted time and deadline (issue 21, item 8)
# --------------------------------------------------------------------------------------------------
def test_call_cost_separates_the_fixed_and_the_per_sample_time():
    """A call of 20 ms plus 5 ms per sample (sleeps: they only ever overshoot, by well under a millisecond here,
    and the fastest of three repeats is kept) is measured as such within 5 ms / 2 ms."""
    from ncsn_pipeline.demo.cost import CallCost, measure_call_cost

    cost = measure_call_cost(lambda n: time.sleep(0.020 + 0.005 * n))
    assert abs(cost.fixed_seconds - 0.020) < 0.005 and abs(cost.seconds_per_sample - 0.005) < 0.002, cost
    assert CallCost(0.01, 0.002).seconds(calls=100, batch_size=20) == pytest.approx(5.0)
    assert CallCost(0.01, 0.002).calls_within(5.0, batch_size=20) == 100


def _unpriced(loaded):
    """The same models (networks shared, nothing loaded again) without their measured times."""
    import dataclasses

    return demo_module.DemoModels(
        images={key: dataclasses.replace(entry, costs={}) for key, entry in loaded.images.items()},
        points=dict(loaded.points),
    )


@pytest.fixture(scope="module")
def priced_models(server):
    """The demo's models with made-up network times: a call of the digits model costs 0.5 s, whatever the batch."""
    from ncsn_pipeline.demo.cost import CallCost

    priced = _unpriced(server.ncsn_models)
    priced.images["ncsn-digits"].costs.update({False: CallCost(0.5, 0.0), True: CallCost(0.5, 0.0)})
    priced.images["glyph-mixture"].costs[False] = CallCost(0.1, 0.0)
    return priced


@pytest.mark.parametrize("tab", ["images", "inpainting", "editing"])
def test_a_request_predicted_to_take_too_long_is_refused_before_any_network_call(priced_models, tab):
    """40 calls x 0.5 s = 20 s > MAX_PREDICTED_SECONDS (12 s): refused with the prediction, nothing sampled; 23 calls
    (11.5 s predicted) are accepted (and, the real network being fast, run)."""
    from ncsn_pipeline.demo.editing import edit_image
    from ncsn_pipeline.demo.inpainting import inpaint_image

    entry = priced_models.images["ncsn-digits"]
    counter = _CallCounter(entry.pipeline.unet)
    try:
        if tab == "images":
            request = lambda levels: demo_module.generate_images(  # noqa: E731
                priced_models, "ncsn-digits", "DPMSolverPlusPlusScheduler", levels, 1, 1.0, 0, 2, False, "3", 20.0
            )
        elif tab == "inpainting":
            request = lambda levels: inpaint_image(  # noqa: E731
                priced_models, "ncsn-digits", 0, "right half", "DPMSolverPlusPlusScheduler", levels, 1, 1.0, 0, 2, 1,
                "3", 20.0,
            )  # fmt: skip
        else:  # editing at strength 1: every call of the run
            request = lambda levels: edit_image(  # noqa: E731
                priced_models, "ncsn-digits", 0, 1.0, "DPMSolverPlusPlusScheduler", levels, 1, 1.0, 0, 2, "3", 20.0
            )
        with pytest.raises(ValueError, match=r"40 network calls on a batch of 2 would take about 20 s here, the limit "
                           r"is 12 s\. Use fewer noise levels"):  # fmt: skip
            request(40)
        assert counter.calls == 0
        request(23)
        assert counter.calls == 23
    finally:
        counter.handle.remove()


def test_an_adaptive_run_is_capped_at_the_calls_that_fit_in_the_time_limit(priced_models):
    """0.1 s a call: at most 120 calls fit in 12 s, so the adaptive sampler gets a cap of 120, not the demo's 400."""
    adaptive = "AdaptiveSDEScheduler"
    result = demo_module.generate_images(priced_models, "glyph-mixture", adaptive, 10, 1, 1.0, 0, 1, False)
    assert "(at most 120 model calls)" in result.summary, result.summary
    assert result.calls <= 120


def test_the_demo_times_every_image_network_and_the_classifier_gradient_where_it_guides(server):
    loaded = _unpriced(server.ncsn_models)
    digits = loaded.images["ncsn-digits"]
    counter = _CallCounter(digits.classifier)
    try:
        loaded.time_networks()
    finally:
        counter.handle.remove()
    assert counter.calls > 0  # the guided cost includes the classifier's forward (and backward) pass
    for key, entry in loaded.images.items():
        expected = {False} | ({True} if entry.classifier is not None else set()) | ({"guide"} if entry.guide else set())
        assert set(entry.costs) == expected, key
        assert all(cost.fixed_seconds + cost.seconds_per_sample > 0 for cost in entry.costs.values()), key


def test_a_run_past_its_deadline_is_stopped_with_a_message(client, monkeypatch):
    """A run is stopped at its next network call once REQUEST_DEADLINE_SECONDS have passed (the machine may be busier
    than when the models were timed): the user gets the reason, not a late answer."""
    from ncsn_pipeline.demo import cost

    monkeypatch.setattr(cost, "REQUEST_DEADLINE_SECONDS", 0.0)
    with pytest.raises(AppError, match=r"Stopped after 0 s: requests are limited to 0 s and this machine is busier"):
        client.predict(*SMALL_GENERATE, api_name="/generate")
    monkeypatch.undo()
    assert "9 model calls" in client.predict(*SMALL_GENERATE, api_name="/generate")[2]


@pytest.mark.slow
def test_a_burst_of_fifty_requests_is_answered_and_leaves_nothing_behind(server):
    """Issue 21, item 8: 50 raw requests at once (the three tabs in turn), four times. Each one is served or told that
    the queue is full (no error, none left hanging) and the page is served meanwhile, and the bursts leave nothing
    behind: over the last three, the Python objects kept (traced by ``tracemalloc``) grow by less than 2 MB and no
    tensor is kept.

    Why not resident memory: it moved by +4 to +25 MB over four bursts from run to run with nothing kept (glibc's
    free lists, Gradio's worker threads coming and going; the CI run that saw +25 MB failed a 25 MB bound), so it
    could neither pass reliably nor see a small leak. What is kept is measured instead. The server keeps four sessions
    (not MAX_SESSIONS) so that the first traced burst replaces every kept session; after it, what remains per served
    request is Gradio's own bookkeeping (~1.2 KB: a message queue in a 2000-entry LRU, an analytics record, an empty
    set; measured +0.1 to +0.7 MB in all, the kept sessions' outputs varying). A leak of 0.1 MB per served request
    would add 2.7 MB; the per-session copies this demo once kept without bound added ~0.25 MB each.
    `test_memory_stays_bounded_over_hundreds_of_requests` keeps a resident-memory bound for what tracing cannot see
    (native memory)."""
    import tracemalloc

    import torch

    app = demo_module.build_demo(models=server.ncsn_models)
    port = _free_port()
    demo_module.launch_demo(app, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True, max_sessions=4)
    base_url = f"http://127.0.0.1:{port}/"
    bodies = {
        "generate": json.dumps({"data": _with(_with(SMALL_GENERATE, 2, 2), 3, 1)}),  # the smallest work: what
        "inpaint": json.dumps({"data": _with(_with(SMALL_INPAINT, 4, 2), 8, 1)}),  # is left behind does not depend
        "playground": json.dumps({"data": _with(_with(SMALL_PLAYGROUND, 2, 2), 3, 5)}),  # on how long a run is
    }
    apis = [list(bodies)[number % 3] for number in range(50)]

    def request(api):
        url = f"{base_url}gradio_api/call/{api}"
        joined = httpx.post(url, content=bodies[api], headers={"content-type": "application/json"}, timeout=60)
        if joined.status_code == 503 and "Queue is full" in joined.text:  # refused at once, as it should be
            return "queue full"
        if joined.status_code != 200:
            return f"unexpected: {joined.status_code} {joined.text[:300]}"
        stream = httpx.get(f"{url}/{joined.json()['event_id']}", timeout=600).text
        return "served" if "event: complete" in stream else f"unexpected: {stream[-300:]}"

    def burst():
        with ThreadPoolExecutor(50) as pool:
            pending = [pool.submit(request, api) for api in apis]
            page = httpx.get(base_url, timeout=30)  # while the burst runs
            outcomes = [future.result(timeout=600) for future in pending]
        assert page.status_code == 200
        assert set(outcomes) <= {"served", "queue full"}, outcomes
        assert outcomes.count("served") >= demo_module.QUEUE_MAX_SIZE // 2
        return outcomes

    def kept():
        gc.collect()
        tensors = sum(1 for thing in gc.get_objects() if issubclass(type(thing), torch.Tensor))  # no __class__ lookups
        return tracemalloc.get_traced_memory()[0] / 2**20, tensors

    tracing_before = tracemalloc.is_tracing()
    try:
        tracemalloc.start()
        burst()  # warm-up (caches, worker threads); every kept session is replaced by one made under tracing
        before = kept()
        for _ in range(3):
            outcomes = burst()
        after = kept()
    finally:
        if not tracing_before:
            tracemalloc.stop()
        app.close()
    print(f"bursts of 50: {outcomes.count('served')} served, {outcomes.count('queue full')} queue full each; Python "
          f"objects kept {before[0]:.2f} -> {after[0]:.2f} MB, tensors {before[1]} -> {after[1]}")  # fmt: skip
    assert len(app.state_holder.session_data) <= 4
    assert after[0] - before[0] < 2.0, f"the Python objects kept grew by {after[0] - before[0]:.2f} MB in three bursts"
    assert after[1] <= before[1], f"tensors kept: {before[1]} -> {after[1]}"


def test_the_gradio_internals_the_demo_reads_exist():
    """`ncsn_pipeline.demo.gradio_internals` is the one place the demo reads Gradio's non-public attributes (to stop
    a run whose client has gone); each one it names must exist in the installed Gradio, as a class attribute or one
    the class's code assigns: a Gradio that renames one fails here, not silently in production."""
    import importlib
    import inspect as inspect_module

    from ncsn_pipeline.demo.gradio_internals import INTERNALS

    missing = []
    for owner, attribute in INTERNALS:
        module_name, class_name = owner.rsplit(".", 1)
        cls = getattr(importlib.import_module(module_name), class_name)
        if hasattr(cls, attribute):
            continue
        if not re.search(rf"self\.{re.escape(attribute)} =", inspect_module.getsource(cls)):
            missing.append(f"{owner}.{attribute}")
    assert missing == []


def test_every_tab_wires_its_request_fields_to_its_work_function_by_name():
    """Each tab's request dataclass names exactly the parameters of its work function (less ``models`` and
    ``progress``), in the order of the endpoint's inputs: the wiring is by name, never by list position."""
    import dataclasses
    import inspect as inspect_module

    from ncsn_pipeline.demo import editing, inpainting, tab_editing

    pairs = [
        (tab_images.GenerateRequest, images.generate_images),
        (tab_inpainting.InpaintRequest, inpainting.inpaint_image),
        (tab_editing.EditRequest, editing.edit_image),
        (tab_playground.PlaygroundRequest, playground.run_playground),
    ]
    for request, work in pairs:
        parameters = [name for name in inspect_module.signature(work).parameters if name not in ("models", "progress")]
        assert [spec.name for spec in dataclasses.fields(request)] == parameters, request.__name__
