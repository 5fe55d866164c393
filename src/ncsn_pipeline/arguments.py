"""argparse types for every command line of the package, built on `ncsn_pipeline.checks` (one rule, one message).

Every parser is built with `strict_parser`, which turns off argparse's prefix matching: an abbreviated
flag is an error, never silently another option.

>>> positive_int("3")
3
>>> sampler_option("steps_per_level=3")
('steps_per_level', 3)
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from typing import Any, Callable, List, Sequence, Tuple

from .checks import check_data_range, check_integer, check_number, check_positive

# How every command resolves a model argument (`ncsn_pipeline.pretrained.load_pipeline`), as its --help says.
LOCAL_FOLDER_RULE = "a pipeline folder wins over a named model of the same name"


def run_command(
    parser: argparse.ArgumentParser, run, argv=None, errors=(ValueError, OSError, RuntimeError, FloatingPointError)
) -> int:
    """Parse ``argv``, set torch's threads if the command takes ``--threads``, and call ``run(args)``; an expected
    error exits with status 2 and ``<prog>: error: <message>`` (no traceback), the convention of every command."""
    args = parser.parse_args(argv)
    if hasattr(args, "threads"):  # commands that sample take --threads (`add_threads_argument`)
        apply_threads(args)
    try:
        run(args)
    except errors as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")
    return 0


# A flag whose name says it holds a secret ("--hub_token", "--hub_tok", "--token", "--api_key", "--password").
SECRET_FLAG = re.compile(r"^--?[\w-]*(tok|secret|passw|api_?key)[\w-]*$", re.IGNORECASE)
HUB_TOKEN = re.compile(r"hf_[A-Za-z0-9]{8,}")  # the shape of a Hugging Face access token


def mask_secret_arguments(text: str, argv: Sequence[str]) -> str:
    """``text`` with every value given to a secret-looking flag in ``argv`` (``--hub_tok X``, ``--token=X``) and
    every token-shaped word (``hf_...``) replaced by ``***``."""
    secrets = []
    for index, argument in enumerate(argv):
        flag, equals, value = argument.partition("=")
        if SECRET_FLAG.match(flag):
            if equals:
                secrets.append(value)
            elif index + 1 < len(argv):
                secrets.append(argv[index + 1])
    for secret in sorted({secret for secret in secrets if secret}, key=len, reverse=True):
        text = text.replace(secret, "***")
    return HUB_TOKEN.sub("***", text)


class _StrictParser(argparse.ArgumentParser):
    """`strict_parser`'s class: usage errors never echo a secret (argparse repeats unknown arguments verbatim)."""

    def parse_known_args(self, args=None, namespace=None):
        self._argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str):
        super().error(mask_secret_arguments(message, getattr(self, "_argv", sys.argv[1:])))


def strict_parser(**kwargs: Any) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` that refuses abbreviated flags (``allow_abbrev=False``) and masks secrets in its usage
    errors (`mask_secret_arguments`)."""
    return _StrictParser(allow_abbrev=False, **kwargs)


def _argument_type(check: Callable[[Any], Any], convert: Callable[[str], Any], expected: str) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        try:
            return check(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None

    return parse


def integer_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``."""
    return _argument_type(
        lambda value: check_integer("value", value, low=low, high=high), int, f"an integer from {low} to {high}"
    )


positive_int = _argument_type(lambda value: check_integer("value", value), int, "an integer >= 1")
non_negative_int = _argument_type(lambda value: check_integer("value", value, low=0), int, "an integer >= 0")
positive_float = _argument_type(lambda value: check_positive("value", value), float, "a positive finite number")
port = _argument_type(lambda value: check_integer("port", value, high=65535), int, "a port number from 1 to 65535")
non_negative_float = _argument_type(
    lambda value: check_number("value", value, 0.0, math.inf), float, "a finite number >= 0"
)
unit_float = _argument_type(lambda value: check_number("value", value, 0.0, 1.0), float, "a number from 0 to 1")

# Torch CPU threads of every command and the demo unless --threads says otherwise: one, measured by
# benchmarks/command_threads.py (the bundled models' network calls are small, and on a shared machine a second
# intra-op thread waits for a busy core; the default of torch, one per core, made ncsn-eval 24x slower there).
DEFAULT_THREADS = 1


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's CPU threads for the command (`apply_threads` sets them)."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=DEFAULT_THREADS,
        help=f"torch CPU threads (default: {DEFAULT_THREADS}; more help large models on an otherwise idle machine)",
    )


def apply_threads(args: argparse.Namespace) -> None:
    """Set torch's CPU threads to ``--threads`` (set explicitly: torch's default oversubscribes a shared machine)."""
    import torch

    torch.set_num_threads(args.threads)


def data_range(text: str) -> List[float]:
    """``'low,high'`` (e.g. ``'0,1'`` or ``'-1,1'``) as ``[low, high]`` (`check_data_range`)."""
    try:
        return check_data_range([float(part) for part in text.split(",")])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected two finite numbers 'low,high' with low < high, such as '0,1' or '-1,1', got {text!r}"
        ) from None


def channel_list(text: str) -> List[int]:
    """``'a,b,c'`` (e.g. ``'32,64,64'``): one to six channel counts, each an integer in [1, 1024]."""
    parts = text.split(",")
    try:
        channels = [int(part) for part in parts]
    except ValueError:
        channels = []
    if not 1 <= len(channels) <= 6 or any(not 1 <= value <= 1024 for value in channels):
        raise argparse.ArgumentTypeError(
            f"expected one to six comma-separated channel counts in [1, 1024], such as '32,64,64', got {text!r}"
        )
    return channels


def sampler_option(text: str) -> Tuple[str, Any]:
    """``KEY=VALUE`` with a JSON value (``3``, ``0.2``, ``true``); a bare word stays a string."""
    key, separator, raw = text.partition("=")
    if not separator or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as steps_per_level=3, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def sampler_names() -> List[str]:
    """The class names of the package's score samplers, read from the source of its ``scheduling_*`` modules
    (public classes named ``...Scheduler``), so that --help lists them without importing PyTorch and diffusers;
    ``tests/test_cli.py`` checks them against `ncsn_pipeline.scheduling_utils.score_schedulers`."""
    import ast
    from pathlib import Path

    names = []
    for path in sorted(Path(__file__).parent.glob("scheduling_*.py")):
        if path.stem == "scheduling_utils":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names += [node.name for node in tree.body if isinstance(node, ast.ClassDef)
                  and node.name.endswith("Scheduler") and not node.name.startswith("_")]  # fmt: skip
    return sorted(names)


def add_sampler_arguments(parser: argparse.ArgumentParser) -> None:
    """``--sampler NAME``, ``--sampler_option KEY=VALUE`` (repeatable) and ``--num_inference_steps N``."""
    parser.add_argument(
        "--sampler",
        default=None,
        help=f"the sampler: {', '.join(sampler_names())} (default: the model's own), set up from the model's "
        "tuned noise schedule",
    )
    parser.add_argument(
        "--sampler_option",
        type=sampler_option,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config option of the sampler, e.g. steps_per_level=3, num_corrector_steps=2 or snr=0.1 "
        "(repeatable; an unknown option is refused with the sampler's list)",
    )
    parser.add_argument(
        "--num_inference_steps", type=positive_int, default=None, help="number of noise levels (default: the sampler's)"
    )


def apply_sampler_arguments(pipe, args: argparse.Namespace) -> None:
    """Give ``pipe`` the sampler ``--sampler`` names (set up from its own config) with ``--sampler_option``s."""
    from .scheduling_utils import score_schedulers

    samplers = score_schedulers()
    if args.sampler is not None and args.sampler not in samplers:
        raise ValueError(f"--sampler {args.sampler!r} is not a sampler of the package; choose one of {list(samplers)}.")
    sampler_class = samplers[args.sampler] if args.sampler else type(pipe.scheduler)
    if args.sampler or args.sampler_option:
        pipe.scheduler = sampler_class.from_scheduler_config(pipe.scheduler.config, **dict(args.sampler_option))
