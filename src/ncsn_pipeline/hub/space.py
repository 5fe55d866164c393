"""Put the package's demo in front of a published model: a Gradio Space on the Hub (`push_demo_to_hub`).

A Space is a repository of type ``space`` that the Hub runs: its ``README.md`` declares the SDK in YAML front
matter, ``app.py`` is started with ``python app.py`` and ``requirements.txt`` is installed first. The Space written
here holds:

1. ``README.md``: the front matter of `space_card` (``sdk: gradio`` at the installed Gradio's version, ``app_file``,
   ``models`` and ``preload_from_hub`` naming the model, so the Hub lists the Space on the model's page and fetches
   its weights while building, ``license``, ``short_description``) and a page that links to the model.
2. ``app.py`` (`space_app`): ``ncsn_pipeline.demo`` on the model, every tab that fits it, opened on it.
3. ``requirements.txt`` and this package's wheel. The package is not on PyPI, so the Space installs the very version
   that published it from a wheel committed beside ``app.py`` (``./ncsn_pipeline-*.whl[demo]``): no source checkout
   or git URL to keep reachable, and the Space keeps working as the package changes. The wheel is built from the
   source tree of an editable install, or given (``wheel=``).

Then the model's card gets a line that links to the Space (`link_model_card_to_space`), so the links go both ways.
Everything of the Space goes up in one commit; a token is only ever passed to the client, never written.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, Optional, Union

from ..errors import HubError
from .transfer import _hub_call

SHORT_DESCRIPTION_MAX = 60  # the Hub refuses a longer short_description
SPACE_THREADS = 2  # a CPU Space's two vCPUs serve the demo alone (app.py's default of 1 is for shared machines)
_REPO_ID = re.compile(r"[\w.-]+/[\w.-]+")


def package_version() -> str:
    """This package's version (the one the Space will run), read from the loaded package: importing it here would
    close an import cycle (the package root imports the pipelines, which import the Hub layer lazily)."""
    return sys.modules[__name__.split(".")[0]].__version__


def space_app(model_id: str) -> str:
    """The Space's ``app.py``: the package's demo on ``model_id``, on the address and port a Space serves."""
    return f'''"""The demo Space of the score model {model_id}
(written by ncsn-pipeline {package_version()}: ncsn-push --space).

It serves ncsn-pipeline's Gradio demo: the tabs that fit the model, opened on it, beside the bundled models.
"""

import os

import torch

from ncsn_pipeline.demo import build_demo, launch_demo

MODEL_ID = {model_id!r}

torch.set_num_threads(int(os.environ.get("NCSN_THREADS", "{SPACE_THREADS}")))  # set explicitly, see the package docs
demo = build_demo(extra_model=MODEL_ID)

if __name__ == "__main__":
    launch_demo(demo, host="0.0.0.0", port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
'''


def space_card(space_id: str, model_id: str, license: str = "apache-2.0") -> str:
    """The Space's ``README.md``: its YAML front matter (huggingface_hub's `SpaceCardData`) and a page linking to
    the model."""
    try:
        import gradio
    except ImportError:
        raise HubError(
            "A Space declares the Gradio version it runs, and Gradio is not installed here: pip install "
            "'ncsn-pipeline[demo]'."
        ) from None
    from huggingface_hub import SpaceCard, SpaceCardData, constants

    short_description = f"Score-based samplers on {model_id}"
    if len(short_description) > SHORT_DESCRIPTION_MAX:
        short_description = "Score-based samplers, inpainting and editing"
    data = SpaceCardData(
        title=space_id.split("/")[-1],
        sdk="gradio",
        sdk_version=gradio.__version__,
        app_file="app.py",
        license=license,
        models=[model_id],
        preload_from_hub=[model_id],
        short_description=short_description,
        emoji="🌀",
        pinned=False,
    )
    body = (
        f"# {space_id.split('/')[-1]}\n\n"
        f"The demo of the score model [{model_id}]({constants.ENDPOINT}/{model_id}): sample it with any of "
        "ncsn-pipeline's samplers, steer it toward a class, fill in missing pixels and edit images, in the browser.\n\n"
        f"Written by ncsn-pipeline {package_version()} (`ncsn-push FOLDER {model_id} --space {space_id}`); it "
        "installs that version from the wheel in this repository (`requirements.txt`). To run it on your machine:\n\n"
        "```bash\npip install -r requirements.txt\npython app.py\n```\n"
    )
    return str(SpaceCard(f"---\n{data.to_yaml()}\n---\n\n{body}"))


def build_wheel(target: Union[str, os.PathLike]) -> Path:
    """Build this package's wheel into ``target`` from the source tree of an editable install.

    Raises:
        HubError: when the package was not installed from a source tree (pass a wheel instead) or the build fails.
    """
    root = Path(__file__).resolve().parents[3]  # src/ncsn_pipeline/hub/space.py -> the tree holding setup.py
    if not (root / "setup.py").is_file():
        raise HubError(
            "A Space installs this package from its wheel, and this install has no source tree to build one from: "
            "pass wheel=PATH (python -m pip wheel --no-deps ncsn-pipeline, or the wheel you installed)."
        )
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", os.fspath(target), str(root)],
        capture_output=True,
        text=True,
    )
    wheels = sorted(Path(target).glob("ncsn_pipeline-*.whl"))
    if result.returncode != 0 or not wheels:
        raise HubError(f"Could not build the package's wheel for the Space: {result.stderr.strip()[-2000:]}")
    return wheels[-1]


def space_files(space_id: str, model_id: str, wheel: Union[str, os.PathLike]) -> Dict[str, bytes]:
    """Every file of the Space (path in the repository -> content)."""
    wheel = Path(wheel)
    requirements = (
        f"# ncsn-pipeline {package_version()} with its demo extra, from the wheel in this Space (it is not on PyPI).\n"
        f"./{wheel.name}[demo]\n"
    )
    return {
        "README.md": space_card(space_id, model_id).encode(),
        "app.py": space_app(model_id).encode(),
        "requirements.txt": requirements.encode(),
        wheel.name: wheel.read_bytes(),
    }


def link_model_card_to_space(api, model_id: str, space_id: str) -> bool:
    """Add a line to the model repository's ``README.md`` that links to its Space (after its first heading), in one
    commit; nothing when the card links to it already. Returns whether a commit was made."""
    from huggingface_hub import CommitOperationAdd, constants

    url = f"{constants.ENDPOINT}/spaces/{space_id}"
    card_path = _hub_call(f"download the card of {model_id}", api.hf_hub_download, model_id, "README.md")
    text = Path(card_path).read_text(encoding="utf-8")
    if url in text:
        return False
    line = f"**Try it in the browser:** the demo Space [{space_id}]({url}).\n"
    lines = text.splitlines(keepends=True)
    position = next((index + 1 for index, current in enumerate(lines) if current.startswith("# ")), None)
    if position is None:  # no title: after the front matter (its closing "---"), else at the top
        fences = [index for index, current in enumerate(lines) if current.strip() == "---"]
        position = fences[1] + 1 if len(fences) > 1 and fences[0] == 0 else 0
    lines.insert(position, "\n" + line)
    _hub_call(
        f"link the card of {model_id} to {space_id}",
        api.create_commit,
        repo_id=model_id,
        operations=[CommitOperationAdd(path_in_repo="README.md", path_or_fileobj="".join(lines).encode())],
        commit_message=f"Link to the demo Space {space_id}",
    )
    return True


def push_demo_to_hub(
    space_id: str,
    model_id: str,
    *,
    private: bool,
    token: Optional[str] = None,
    wheel: Optional[Union[str, os.PathLike]] = None,
    commit_message: Optional[str] = None,
) -> str:
    """Create or update the Gradio Space ``space_id`` that serves the package's demo on the published model
    ``model_id`` (one commit), and link the model's card to it; return the Space's URL.

    Args:
        space_id (`str`): ``"user/name-demo"``; created (type ``space``, SDK ``gradio``) if needed.
        model_id (`str`): The published pipeline repository the Space shows (it must exist).
        private (`bool`): Visibility of a newly created Space; required, as for models.
        token (`str`, *optional*): A write token; defaults to the logged-in one or ``HF_TOKEN``. Never written.
        wheel (`str` or `os.PathLike`, *optional*): This package's wheel for the Space to install; built from the
            source tree when not given (`build_wheel`).
        commit_message (`str`, *optional*): The Space commit's message.

    Raises:
        ValueError: for a malformed id or a visibility that is not a bool.
        HubError: no token, an unreachable Hub, a refused token, a model repository that does not exist.

    Example:
        >>> push_demo_to_hub("me/ncsn-fashion-demo", "me/ncsn-fashion", private=False)  # doctest: +SKIP
        'https://huggingface.co/spaces/me/ncsn-fashion-demo'
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, constants, get_token

    if not isinstance(private, bool):
        raise ValueError(f"private must be True or False (the Space's visibility), got {private!r}.")
    for what, value in (("space_id", space_id), ("model_id", model_id)):
        if not _REPO_ID.fullmatch(value or ""):
            raise ValueError(f"{what} must look like 'user/name', got {value!r}.")
    if wheel is not None and not (Path(wheel).is_file() and Path(wheel).name.startswith("ncsn_pipeline-")):
        raise ValueError(f"wheel must be this package's wheel file (ncsn_pipeline-*.whl), got {os.fspath(wheel)!r}.")
    token = token or get_token()
    if not token:
        raise HubError("No Hugging Face token: run `hf auth login` or set HF_TOKEN (a token with write access).")
    api = HfApi(token=token)
    _hub_call(f"find the model {model_id}", api.model_info, model_id)  # a Space of a missing model would not start
    with tempfile.TemporaryDirectory(prefix="ncsn-space-") as staging:
        files = space_files(space_id, model_id, wheel if wheel is not None else build_wheel(staging))
        _hub_call(
            f"create the Space {space_id}",
            api.create_repo,
            space_id,
            repo_type="space",
            space_sdk="gradio",
            private=private,
            exist_ok=True,
        )
        old_wheels = [
            path
            for path in _hub_call(f"list the files of {space_id}", api.list_repo_files, space_id, repo_type="space")
            if path.startswith("ncsn_pipeline-") and path.endswith(".whl") and path not in files
        ]
        operations = [CommitOperationAdd(path_in_repo=path, path_or_fileobj=content) for path, content in files.items()]
        operations += [CommitOperationDelete(path_in_repo=path) for path in old_wheels]  # a Space installs one
        _hub_call(
            f"upload to the Space {space_id}",
            api.create_commit,
            repo_id=space_id,
            repo_type="space",
            operations=operations,
            commit_message=commit_message or f"Demo of {model_id} with ncsn-pipeline {package_version()}",
        )
    link_model_card_to_space(api, model_id, space_id)
    return f"{constants.ENDPOINT}/spaces/{space_id}"
