"""Launch the ncsn-pipeline web demo (Gradio); the demo itself lives in ``ncsn_pipeline.demo``.

    python app.py                          # http://127.0.0.1:7860, bundled Fashion-MNIST model selected
    python app.py --port 8080 --host 0.0.0.0
    python app.py --model path/to/pipeline # or a Hub repository id 'user/name' (cached copy when offline)
    python app.py --share                  # also a temporary public gradio.live link (needs internet)

Needs the demo extra: ``pip install -e ".[demo]"``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ncsn_pipeline.arguments import LOCAL_FOLDER_RULE, add_threads_argument, apply_threads, port, strict_parser


def build_parser() -> argparse.ArgumentParser:
    """Command-line options of the demo."""
    parser = strict_parser(prog="app.py", description="Web demo of ncsn-pipeline (Gradio).")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=port, default=7860, help="port (default: 7860)")
    parser.add_argument("--share", action="store_true", help="create a public gradio.live link (needs internet)")
    parser.add_argument(
        "--model",
        default=None,
        help="an extra pipeline: a named model, a folder saved with NCSNPipeline.save_pretrained or a Hub "
        f"repository id 'user/name' ({LOCAL_FOLDER_RULE}); image models join the image tabs, 2-D models the "
        "playground, and the page opens on it",
    )
    add_threads_argument(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the options, load the models (failing early with a clear message) and serve the demo."""
    parser = build_parser()
    args = parser.parse_args(argv)
    apply_threads(args)  # requests run one at a time: one thread each is fastest on a shared machine
    try:
        from ncsn_pipeline.demo import DemoModelError, build_demo, launch_demo
    except ImportError as error:
        parser.exit(2, f"app.py: error: {error}\n")
    try:
        demo = build_demo(extra_model=args.model)
    except (DemoModelError, ImportError) as error:
        parser.exit(2, f"app.py: error: {error}\n")
    launch_demo(demo, host=args.host, port=args.port, share=args.share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
