"""The web demo in a real browser: headless Chromium (Debian's ``/usr/bin/chromium``) driven by Playwright.

Opens the page, clicks Generate and waits for the sample grid, then runs the 2-D playground; saves a
screenshot of each tab in the test's temporary folder, and also in ``$NCSN_DEMO_SCREENSHOTS`` when that is
set (``NCSN_DEMO_SCREENSHOTS=docs/screenshots`` refreshes the committed ones). Skipped, with the reason,
only when Playwright or the browser cannot start.
"""

import os
import re
import shutil
import socket
from pathlib import Path
from urllib.parse import urlparse

import pytest

pytest.importorskip("gradio", reason="the web demo needs the demo extra: pip install -e '.[demo]'")

from types import SimpleNamespace  # noqa: E402

from ncsn_pipeline.demo import limits, ui  # noqa: E402

demo_module = SimpleNamespace(
    **{name: value for name, value in vars(limits).items() if not name.startswith("_")},
    build_demo=ui.build_demo,
    launch_demo=ui.launch_demo,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:::gradio.queueing")]

CHROMIUM = os.environ.get("NCSN_DEMO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
RESULT_TIMEOUT_MS = 120_000  # first Generate on a busy 2-core machine


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def demo_url():
    app = demo_module.build_demo()
    demo_module.models = app.ncsn_models
    port = _free_port()
    demo_module.launch_demo(app, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as error:
        pytest.skip(f"Playwright is not installed ({error}); pip install playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set NCSN_DEMO_CHROMIUM)")
    manager = sync_playwright().start()
    try:
        chromium = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS, headless=True)
    except Exception as error:  # the only reason to skip: the browser itself cannot start here
        manager.stop()
        pytest.skip(f"Chromium cannot start: {error}")
    yield chromium
    chromium.close()
    manager.stop()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.outside_requests = []
    tab.on(
        "request",
        lambda request: (
            urlparse(request.url).hostname not in ("127.0.0.1", "localhost", None)
            and request.url.startswith("http")
            and tab.outside_requests.append(request.url)
        ),
    )
    yield tab
    context.close()


def _save(page, tmp_path: Path, name: str) -> Path:
    """Screenshot the whole page into ``tmp_path`` (and into ``$NCSN_DEMO_SCREENSHOTS`` when set)."""
    path = tmp_path / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    target = os.environ.get("NCSN_DEMO_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, Path(target) / name)
    return path


def test_generate_in_the_browser(page, demo_url, tmp_path):
    """The page's default request (the default model, sampler and batch; as many levels as the page suggests on
    this machine: 50 where the default batch may take them)."""
    page.goto(demo_url)
    levels = demo_module.models.defaults("images", demo_module.DEFAULT_IMAGE_MODEL)["noise_levels"]
    page.locator("#generate").click()
    # Live progress: the callback reports every network call (DPM-Solver++: one per level).
    page.get_by_text(re.compile(rf"network call \d+ of {levels}")).first.wait_for(timeout=RESULT_TIMEOUT_MS)
    grid = page.locator('#result-grid img[src*="/gradio_api/file="]')
    grid.wait_for(state="visible", timeout=RESULT_TIMEOUT_MS)
    page.locator('#trajectory img[src*=".gif"]').wait_for(state="visible", timeout=RESULT_TIMEOUT_MS)
    summary = page.locator("#run-info textarea").input_value()
    assert f"{demo_module.DEFAULT_BATCH_SIZE} samples" in summary and f"({levels} model calls)" in summary
    cell = demo_module.TILE_SIZE + 2 * demo_module.GRID_BORDER
    assert grid.evaluate("image => image.naturalWidth") == 4 * cell  # 16 samples: 4 x 4 tiles
    _save(page, tmp_path, "image_tab.png")
    assert page.outside_requests == [], "the page fetched something from outside the machine"


def test_playground_in_the_browser(page, demo_url, tmp_path):
    page.goto(demo_url)
    page.get_by_role("tab", name="2-D playground").click()
    page.locator("#run-playground").click()
    page.locator("#samplers img").wait_for(state="visible", timeout=RESULT_TIMEOUT_MS)
    page.locator("#score-field img").wait_for(state="visible", timeout=RESULT_TIMEOUT_MS)
    summary = page.locator("#playground-summary")
    summary.get_by_text("True mode weights").wait_for(timeout=RESULT_TIMEOUT_MS)
    assert "plain Langevin recovers" in summary.inner_text()
    _save(page, tmp_path, "playground_tab.png")
    assert page.outside_requests == [], "the page fetched something from outside the machine"


def test_choosing_a_sampler_updates_the_controls_in_the_page_and_generates_with_it(page, demo_url):
    """The suggestions run as JavaScript in the page: the server only runs /generate and /playground."""
    page.goto(demo_url)
    steps = page.locator("#image-steps input[type=number]")
    levels = page.locator("#image-levels input[type=number]")
    assert steps.input_value() == "1"  # the default sampler (DPM-Solver++) takes no Langevin steps
    # The default model's own annealed-Langevin settings (kept in its scheduler config), as the page suggests them.
    expected = demo_module.models.defaults("images", demo_module.DEFAULT_IMAGE_MODEL, "NCSNScheduler")
    page.locator("#image-sampler input").click()
    page.get_by_role("option", name=re.compile("annealed Langevin")).click()
    for _ in range(100):
        if steps.input_value() == str(expected["steps_per_level"]):
            break
        page.wait_for_timeout(100)
    assert steps.input_value() == str(expected["steps_per_level"])
    assert levels.input_value() == str(expected["noise_levels"])
    page.locator("#generate").click()
    info = page.locator("#run-info textarea")
    for _ in range(int(RESULT_TIMEOUT_MS / 200)):
        if "annealed Langevin" in info.input_value():
            break
        page.wait_for_timeout(200)
    assert f"annealed Langevin dynamics, {expected['noise_levels']} noise levels" in info.input_value()


def test_inpainting_in_the_browser(page, demo_url, tmp_path):
    page.goto(demo_url)
    page.get_by_role("tab", name="Inpainting").click()
    page.locator("#inpaint-mask input").click()
    page.get_by_role("option", name="centre square").click()
    page.locator("#inpaint").click()
    grid = page.locator('#inpaint-grid img[src*="/gradio_api/file="]')
    grid.wait_for(state="visible", timeout=RESULT_TIMEOUT_MS)
    info = page.locator("#inpaint-info textarea")
    for _ in range(int(RESULT_TIMEOUT_MS / 200)):
        if "repainted" in info.input_value():
            break
        page.wait_for_timeout(200)
    from ncsn_pipeline.demo.inpainting import HELD_OUT_SETS, held_out_label

    source = demo_module.models.images[demo_module.DEFAULT_IMAGE_MODEL].held_out
    what = HELD_OUT_SETS[source][0]
    expected = f"{what[0].upper()}{what[1:]} 0 ({held_out_label(source, 0)}), centre square repainted"
    assert expected in info.input_value()
    cell = demo_module.TILE_SIZE + 2 * demo_module.GRID_BORDER
    assert grid.evaluate("image => image.naturalWidth") == 3 * cell  # original, masked and 7 fills: 3 x 3 tiles
    _save(page, tmp_path, "inpainting_tab.png")
    assert page.outside_requests == [], "the page fetched something from outside the machine"



def test_editing_in_the_browser(page, demo_url, tmp_path):
    """The Editing tab with the page's own defaults (strength 0.5, the default sampler), then a stronger edit."""
    page.goto(demo_url)
    page.get_by_role("tab", name="Editing").click()
    page.locator("#edit").click()
    grid = page.locator('#edit-grid img[src*="/gradio_api/file="]')
    grid.wait_for(state="visible", timeout=RESULT_TIMEOUT_MS)
    info = page.locator("#edit-info textarea")
    for _ in range(int(RESULT_TIMEOUT_MS / 200)):
        if "edited by" in info.input_value():
            break
        page.wait_for_timeout(200)
    from ncsn_pipeline.demo.inpainting import HELD_OUT_SETS, held_out_label

    source = demo_module.models.images[demo_module.DEFAULT_IMAGE_MODEL].held_out
    what = HELD_OUT_SETS[source][0]
    expected = f"{what[0].upper()}{what[1:]} 0 ({held_out_label(source, 0)}) edited by"
    assert expected in info.input_value() and "at strength 0.5 (noised to sigma" in info.input_value()
    cell = demo_module.TILE_SIZE + 2 * demo_module.GRID_BORDER
    assert grid.evaluate("image => image.naturalWidth") == 3 * cell  # original, noised start and 7 edits: 3 x 3
    _save(page, tmp_path, "editing_tab.png")
    strength = page.locator("#edit-strength input[type=number]")
    strength.fill("0.8")
    strength.press("Enter")
    page.locator("#edit").click()
    for _ in range(int(RESULT_TIMEOUT_MS / 200)):
        if "at strength 0.8" in info.input_value():
            break
        page.wait_for_timeout(200)
    assert "at strength 0.8 (noised to sigma" in info.input_value()
    assert page.outside_requests == [], "the page fetched something from outside the machine"


def _choose(page, dropdown: str, option) -> None:
    page.locator(f"{dropdown} input").click()
    page.get_by_role("option", name=option).click()


def _wait_for(info, text: str) -> str:
    for _ in range(int(RESULT_TIMEOUT_MS / 200)):
        if text in info.input_value():
            break
        info.page.wait_for_timeout(200)
    return info.input_value()


def test_class_controls_offer_classifier_free_guidance_and_the_guide_in_the_browser(page, demo_url):
    """Images: the class-conditional digits model (it has the "no class" label) steered by classifier-free guidance
    at the page's guidance scale; Editing: the digits model autoguided by the guide it ships."""
    page.goto(demo_url)
    assert "classifier-free" in page.locator("#image-guidance").inner_text()
    _choose(page, "#image-model", re.compile("digits, class-conditional"))
    _choose(page, "#image-class", "7")
    page.locator("#generate").click()
    summary = _wait_for(page.locator("#run-info textarea"), "classifier-free guidance")
    assert "of class 7, classifier-free guidance at scale 2 (each call on the doubled batch of" in summary

    page.get_by_role("tab", name="Editing").click()
    _choose(page, "#edit-model", re.compile(r"^digits \(bundled NCSNv2"))
    autoguidance = page.locator("#edit-autoguidance input[type=number]")
    autoguidance.fill("1.5")
    autoguidance.press("Enter")
    page.locator("#edit").click()
    summary = _wait_for(page.locator("#edit-info textarea"), "autoguided")
    assert "autoguided by its guide (w 1.5" in summary
    assert page.outside_requests == [], "the page fetched something from outside the machine"
