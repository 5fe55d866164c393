"""The demo's limits and defaults: every request is checked against these, whatever the UI components allow."""

MAX_BATCH_SIZE = 64
NOISE_LEVELS_RANGE = (2, 100)  # number of noise levels L of a run
STEPS_PER_LEVEL_RANGE = (1, 200)  # Langevin (corrector) steps per noise level, for samplers that take them
STEP_SCALE_RANGE = (0.05, 2.0)  # multiplies the sampler's step-size option (step_lr, snr)
SEED_RANGE = (0, 2**31 - 1)
GUIDANCE_SCALE_RANGE = (0.0, 20.0)  # classifier guidance (models guided toward a class by a classifier)
AUTOGUIDANCE_SCALE_RANGE = (1.0, 4.0)  # autoguidance's w (models that ship a guide); 1: the model alone
RESAMPLING_RANGE = (1, 10)  # RePaint's jump_n_sample on the Inpainting tab (1: plain replacement)
POINTS_RANGE = (10, 2000)  # 2-D points per sampler in the playground
FIELD_SIGMA_RANGE = (0.01, 50.0)  # noise level of the plotted score field
# Caps on one request: a call costs a fixed ~16 ms for the bundled digits RefineNet on 2 CPU cores plus ~1 ms
# per sample, so both the number of calls and calls x samples are bounded. The slowest request these admit is
# measured by benchmarks/demo_worst_case.py (it must stay under 30 s on 2 cores).
MAX_IMAGE_CALLS = 400  # network calls of one sampler run on the Images tab
MAX_PLAYGROUND_CALLS = 1000  # ... in the playground (a 2-D score model is cheap; NCSN's toy preset takes 1000)
MAX_IMAGE_WORK = 8192  # network calls x batch size
MAX_PLAYGROUND_WORK = 4_000_000  # 2 samplers x network calls x points

# The queue: at most QUEUE_MAX_SIZE requests wait, CONCURRENCY_LIMIT sampling requests run at once
# (both tabs share one concurrency group: they compete for the same CPU).
QUEUE_MAX_SIZE = 8
CONCURRENCY_LIMIT = 1
SAMPLING_CONCURRENCY_ID = "sampling"
# Gradio keeps a copy of the page's configuration for every browser or API session it has seen (10,000 by default:
# ~1 MB each here, so memory grew with every new client). The demo keeps no per-session state between requests,
# so only the most recent sessions are kept.
MAX_SESSIONS = 32

# Presentation.
TILE_SIZE = 96  # px per sample in the result grid (nearest-neighbour upscaling)
FRAME_TILE_SIZE = 48  # px per sample in the animation
GRID_BORDER = 2
MAX_ANIMATION_FRAMES = 40
FRAME_DURATION_MS = 180
FIELD_GRID_POINTS = 21  # arrows per axis of the score field
DENSITY_GRID_POINTS = 160
ANIMATION_MAX_AGE_S = 1800  # animations older than this are deleted from the demo's temporary folder
CACHE_CLEANUP = (600, ANIMATION_MAX_AGE_S)  # Gradio's copies of outputs: every 10 minutes, those older than 30

FASHION_MODEL = "ncsn-fashion"  # the bundled Fashion-MNIST model: the demo opens on it
DEFAULT_IMAGE_MODEL = FASHION_MODEL
DEFAULT_PLAYGROUND_MODEL = "two-gaussians"
DEFAULT_SEED = 0
DEFAULT_BATCH_SIZE = 16
DEFAULT_FILLS = 7  # the Inpainting tab's batch: with the original and the masked input, a grid of 3 x 3
DEFAULT_STRENGTH = 0.5  # the Editing tab's SDEdit strength
DEFAULT_POINTS = 1000
ANY_CLASS = "any"  # the class choice of models without classes, and of class-aware ones left free
DEFAULT_GUIDANCE_SCALE = 2.0
DEFAULT_AUTOGUIDANCE_SCALE = 1.0  # off: a guide costs a second network call per step
RESAMPLING_JUMP_LENGTH = 5  # noise levels per RePaint window on the Inpainting tab
DEFAULT_SAMPLER = "DPMSolverPlusPlusScheduler"  # the default of new pipelines (scheduling_dpmpp.default_sampler)


def check_work(calls: int, samples: int, max_calls: int, limit: int, what: str) -> int:
    """Refuse a request of more than ``max_calls`` network calls per sampler, or whose ``calls x samples`` exceeds
    ``limit``; return the product.

    >>> check_work(111, 16, MAX_IMAGE_CALLS, MAX_IMAGE_WORK, "batch size")
    1776
    """
    if calls > max_calls:
        raise ValueError(
            f"Too many network calls: {calls}, the limit is {max_calls}. Use fewer noise levels or steps per level."
        )
    work = calls * samples
    if work > limit:
        raise ValueError(
            f"Too much work: {calls} network calls x {samples} ({what}) = {work}, the limit is {limit}. "
            f"Use fewer noise levels, fewer steps per level or a smaller {what}."
        )
    return work


# glibc's malloc arenas the demo's process may use (see `cap_malloc_arenas`).
MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc's mallopt parameter (malloc.h)


def cap_malloc_arenas(count: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas at ``count``; return whether the cap is set (False off glibc, e.g. on macOS).

    Gradio runs each request on one of a pool of worker threads, and glibc gives every thread that allocates an
    arena of its own (up to 8 per core); what a request frees stays resident in its thread's arena, so resident
    memory grew by 118 MB over 300 requests once earlier concurrent requests had spread the work over many threads,
    against 19 MB with two arenas (tests/test_demo.py's soak, measured both ways, as MALLOC_ARENA_MAX=2 sets). Not a
    Python-level leak: the requests' objects are freed either way.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, int(count)))
    except (OSError, AttributeError):
        return False
