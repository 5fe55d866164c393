"""``ncsn-convert CHECKPOINT --config CONFIG --output_dir DIR [--weights ema|raw]``: a published NCSN, NCSNv2 or
score-SDE NCSN++ checkpoint as an `NCSNPipeline` folder (safetensors weights, configs, model card).

The checkpoint is read with ``torch.load(weights_only=True)`` only; a file holding other Python objects is
refused without being run. Afterwards::

    NCSNPipeline.from_pretrained(DIR)
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Optional, Sequence

from ..arguments import strict_parser
from ..conversion.published import PUBLISHED_CONFIGS


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``ncsn-convert``."""
    parser = strict_parser(
        prog="ncsn-convert",
        description="Convert a published NCSN (ermongroup/ncsn), NCSNv2 (ermongroup/ncsnv2) or score-SDE NCSN++ "
        "(yang-song/score_sde_pytorch) checkpoint into a pipeline folder that NCSNPipeline.from_pretrained loads. "
        "The checkpoint is never unpickled beyond tensors.",
    )
    parser.add_argument("checkpoint", help="the original checkpoint.pth")
    parser.add_argument(
        "--config",
        required=True,
        help="the checkpoint's training config: the original ermongroup YAML file, a score_sde config dumped as "
        "JSON or YAML (NCSN++), or a published configuration by name (" + ", ".join(sorted(PUBLISHED_CONFIGS)) + ")",
    )
    parser.add_argument("--output_dir", required=True, help="the pipeline folder to write (must not exist)")
    parser.add_argument(
        "--weights",
        choices=["ema", "raw"],
        default=None,
        help="which weights: the exponential moving average the papers sample with (ema), or the raw training "
        "weights (raw); default: ema where the checkpoint has it (NCSNv2, score-SDE), raw otherwise (NCSN v1 kept "
        "none)",
    )
    parser.add_argument(
        "--architecture",
        choices=["ncsnv2", "ncsnv2-deeper", "ncsnv2-deepest"],
        default=None,
        help="NCSNv2 checkpoints: which network (NCSNv2, Deeper, Deepest); default: the reference's choice for the "
        "config's data.dataset, else what the checkpoint's keys show (e.g. a 28-pixel MNIST NCSNv2)",
    )
    return parser


MAX_MESSAGE = 500  # an error may quote a value from the config: never echo an unbounded one


def _one_line(error: BaseException) -> str:
    """``error`` as one bounded line, naming its type where the message alone would not say what went wrong."""
    from ..conversion import ConversionError

    text = " ".join(str(error).split()) or type(error).__name__
    if not isinstance(error, (ConversionError, OSError)):
        text = f"the config or checkpoint does not fit the conversion ({type(error).__name__}: {text})"
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``ncsn-convert``."""
    args = build_parser().parse_args(argv)
    from safetensors import SafetensorError  # here, not at the top: --help loads no PyTorch

    from ..conversion import ConversionError, convert_checkpoint
    from ..conversion.convert import ConversionInterrupted

    try:
        folder = convert_checkpoint(
            args.checkpoint, args.config, args.output_dir, weights=args.weights, architecture=args.architecture
        )
    except ConversionInterrupted as stopped:
        print(f"ncsn-convert: {stopped}", file=sys.stderr)
        return 128 + getattr(signal, stopped.signal_name)
    except (ConversionError, ValueError, TypeError, AttributeError, KeyError, IndexError, RuntimeError) as error:
        # A config or checkpoint of the wrong shape, found wherever the conversion meets it: one line, status 2.
        print(f"ncsn-convert: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except (OSError, SafetensorError) as error:  # reading or writing files (a full disk, a file-size limit)
        print(f"ncsn-convert: error: {_one_line(error)}", file=sys.stderr)
        return 1
    print(f"Wrote {folder}. Load it with NCSNPipeline.from_pretrained({str(folder)!r}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
