"""The demo's limits and defaults: every request is checked against these, whatever the UI components allow."""

MAX_BATCH_SIZE = 64
NOISE_LEVELS_RANGE = (2, 100)  # number of noise levels L of a run
STEPS_PER_LEVEL_RANGE = (1, 200)  # Langevin (corrector) steps per noise level, for samplers that take them
STEP_SCALE_RANGE = (0.05, 2.0)  # multiplies the sampler's step-size option (step_lr, snr)
SEED_RANGE = (0, 2**31 - 1)
POINTS_RANGE = (10, 2000)  # 2-D points per sampler in the playground
FIELD_SIGMA_RANGE = (0.01, 50.0)  # noise level of the plotted score field
# Cap on the work of one request, in (network calls x samples). Images: ~20 s for the bundled digits
# model on one CPU core; playground: both samplers together, ~5 s for the bundled MLP.
MAX_IMAGE_WORK = 8192
MAX_PLAYGROUND_WORK = 4_000_000

# The queue: at most QUEUE_MAX_SIZE requests wait, CONCURRENCY_LIMIT sampling requests run at once
# (both tabs share one concurrency group: they compete for the same CPU).
QUEUE_MAX_SIZE = 8
CONCURRENCY_LIMIT = 1
SAMPLING_CONCURRENCY_ID = "sampling"

# Presentation.
TILE_SIZE = 96  # px per sample in the result grid (nearest-neighbour upscaling)
FRAME_TILE_SIZE = 48  # px per sample in the animation
GRID_BORDER = 2
MAX_ANIMATION_FRAMES = 40
FRAME_DURATION_MS = 180
FIELD_GRID_POINTS = 21  # arrows per axis of the score field
DENSITY_GRID_POINTS = 160
ANIMATION_MAX_AGE_S = 1800  # animations older than this are deleted from the demo's temporary folder

DEFAULT_IMAGE_MODEL = "ncsn-digits"
DEFAULT_PLAYGROUND_MODEL = "two-gaussians"
DEFAULT_SEED = 0
DEFAULT_BATCH_SIZE = 16
DEFAULT_POINTS = 1000
DEFAULT_SAMPLER = "NCSNScheduler"


def check_work(calls: int, samples: int, limit: int, what: str) -> int:
    """Refuse a request whose ``calls x samples`` exceeds ``limit``; return the product.

    >>> check_work(111, 16, MAX_IMAGE_WORK, "batch size")
    1776
    """
    work = calls * samples
    if work > limit:
        raise ValueError(
            f"Too much work: {calls} network calls x {samples} ({what}) = {work}, the limit is {limit}. "
            f"Use fewer noise levels, fewer steps per level or a smaller {what}."
        )
    return work
