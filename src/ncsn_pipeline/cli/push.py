"""``ncsn-push FOLDER user/name --private|--public``: publish a saved pipeline folder to the Hub in one commit."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from ..arguments import strict_parser
from ..errors import HubError


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``ncsn-push``."""
    parser = strict_parser(prog="ncsn-push", description="Publish a saved NCSN pipeline folder to the Hub.")
    parser.add_argument("folder", help="a folder written by NCSNPipeline.save_pretrained or ncsn-train")
    parser.add_argument("repo_id", help="the Hub repository, 'user/name'")
    visibility = parser.add_mutually_exclusive_group(required=True)
    visibility.add_argument(
        "--private", dest="private", action="store_true", default=None, help="create the repository private"
    )
    visibility.add_argument("--public", dest="private", action="store_false", help="create the repository public")
    parser.add_argument("--token", default=None, help="a write token (default: the logged-in one or HF_TOKEN)")
    parser.add_argument("--commit_message", default=None, help="the commit's message")
    parser.add_argument(
        "--space",
        default=None,
        metavar="USER/NAME-demo",
        help="also create or update a Gradio Space that serves the demo on the pushed model (same visibility; the "
        "model's card links to it, the Space's card to the model)",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``ncsn-push``."""
    args = build_parser().parse_args(argv)
    from ..hub import push_demo_to_hub, push_folder_to_hub  # here, not at the top: --help loads no PyTorch
    from ..pipeline_ncsn import NCSNPipeline

    try:
        url = push_folder_to_hub(
            args.folder,
            args.repo_id,
            private=args.private,
            pipeline_class=NCSNPipeline,
            token=args.token,
            commit_message=args.commit_message,
        )
        print(f"Pushed {args.folder} to {args.repo_id}: {url}")
        if args.space is not None:
            space_url = push_demo_to_hub(args.space, args.repo_id, private=args.private, token=args.token)
            print(f"Published the demo Space {args.space}: {space_url}")
    except (HubError, ValueError) as error:
        print(f"ncsn-push: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
