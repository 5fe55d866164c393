"""``ncsn-export SOURCE TARGET``: write a pipeline in the self-contained layout that plain diffusers loads.

``SOURCE`` is a named model, a folder saved with ``NCSNPipeline.save_pretrained`` (or ``ncsn-train``) or a
Hub repository id; ``TARGET`` is a new folder. Afterwards, without this package::

    DiffusionPipeline.from_pretrained(TARGET, trust_remote_code=True)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..arguments import LOCAL_FOLDER_RULE, strict_parser
from ..errors import HubError
from ..pretrained import is_local_pipeline, load_pipeline, model_names


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface of ``ncsn-export``."""
    parser = strict_parser(
        prog="ncsn-export",
        description="Write a pipeline as a self-contained folder (code files, model card) that plain diffusers loads "
        "with DiffusionPipeline.from_pretrained(folder, trust_remote_code=True).",
    )
    parser.add_argument(
        "source",
        help=f"a named model ({', '.join(model_names())}), a saved pipeline folder or a Hub repository id; "
        f"{LOCAL_FOLDER_RULE}",
    )
    parser.add_argument("target", help="the folder to write (must not exist)")
    parser.add_argument("--repo_id", default=None, help="the repository id the model card's examples name")
    return parser


def export(source: str, target: str, repo_id: Optional[str] = None) -> Path:
    """Export ``source`` into ``target``; a saved folder is copied as it is (training record, evaluation)."""
    from ..hub import export_for_hub, save_standalone  # here, not at the top: --help loads no PyTorch
    from ..pipeline_ncsn import NCSNPipeline

    if Path(target).exists():
        raise FileExistsError(f"{target} already exists; choose a new folder.")
    if is_local_pipeline(source):  # a local folder wins over a name (`load_pipeline`'s rule)
        load_pipeline(source)  # refuse a broken folder before writing anything
        return export_for_hub(source, target, repo_id=repo_id, pipeline_class=NCSNPipeline)
    return save_standalone(load_pipeline(source), target, repo_id=repo_id, pipeline_class=NCSNPipeline)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``ncsn-export``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        folder = export(args.source, args.target, args.repo_id)
    except (HubError, ValueError, OSError) as error:
        print(f"ncsn-export: error: {error}", file=sys.stderr)
        return 2
    print(
        f"Wrote {folder}. Load it with plain diffusers: "
        f"DiffusionPipeline.from_pretrained({str(folder)!r}, trust_remote_code=True)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
