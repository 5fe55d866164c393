"""The demo Space in front of a published model (ncsn_pipeline.hub.space), against the local stand-in Hub."""

import site
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ncsn_pipeline import NCSNPipeline
from ncsn_pipeline.cli.push import main as push_main
from ncsn_pipeline.hub import HubError, push_demo_to_hub, push_folder_to_hub
from ncsn_pipeline.hub.space import SHORT_DESCRIPTION_MAX, build_wheel, space_card
from ncsn_pipeline.pretrained import pretrained_path

sys.path.insert(0, str(Path(__file__).parent))
from hub_stand_in import running_stand_in  # noqa: E402

gradio = pytest.importorskip("gradio", reason="the Space's card names the installed Gradio (the demo extra)")


def _front_matter(card: bytes) -> dict:
    text = card.decode()
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _fake_wheel(folder: Path, version: str = "0.2.0") -> Path:
    """A file named like the package's wheel (the fast tests publish it; the slow test builds and installs a real
    one)."""
    path = folder / f"ncsn_pipeline-{version}-py3-none-any.whl"
    path.write_bytes(b"not installed by these tests")
    return path


def test_a_space_is_a_gradio_repository_with_card_app_requirements_and_wheel_linked_both_ways(tmp_path):
    with running_stand_in() as hub, hub.patched_client(tmp_path / "home"):
        push_folder_to_hub(pretrained_path("ncsn-digits"), "alice/digits", private=False, pipeline_class=NCSNPipeline)
        card_before = hub.files("alice/digits")["README.md"].decode()
        url = push_demo_to_hub("alice/digits-demo", "alice/digits", private=True, wheel=_fake_wheel(tmp_path))
        assert url == f"{hub.url}/spaces/alice/digits-demo"
        space = hub.repo("alice/digits-demo", "space")
        assert (space.repo_type, space.sdk, space.private) == ("space", "gradio", True)
        files = hub.files("alice/digits-demo", repo_type="space")
        assert set(files) == {".gitattributes", "README.md", "app.py", "requirements.txt",
                              "ncsn_pipeline-0.2.0-py3-none-any.whl"}  # fmt: skip
        assert len(hub.commits("alice/digits-demo", "space")) == 2  # the initial commit + one
        meta = _front_matter(files["README.md"])
        assert meta["sdk"] == "gradio" and meta["sdk_version"] == gradio.__version__ and meta["app_file"] == "app.py"
        assert meta["models"] == meta["preload_from_hub"] == ["alice/digits"] and meta["license"] == "apache-2.0"
        assert 0 < len(meta["short_description"]) <= SHORT_DESCRIPTION_MAX
        assert f"]({hub.url}/alice/digits)" in files["README.md"].decode()  # the Space's card links to the model
        assert "./ncsn_pipeline-0.2.0-py3-none-any.whl[demo]" in files["requirements.txt"].decode().splitlines()
        app = files["app.py"].decode()
        compile(app, "app.py", "exec")
        assert "MODEL_ID = 'alice/digits'" in app and 'host="0.0.0.0"' in app
        card = hub.files("alice/digits")["README.md"].decode()  # the model's card links to the Space, once
        assert card.count(f"]({hub.url}/spaces/alice/digits-demo)") == 1
        assert _front_matter(card.encode()) == _front_matter(card_before.encode())  # the metadata is untouched
        link = f"\n**Try it in the browser:** the demo Space [alice/digits-demo]({hub.url}/spaces/alice/digits-demo).\n"
        assert card.replace(link, "") == card_before  # one line added, nothing else changed
        assert all(hub.token.encode() not in content for content in files.values())

        # An update replaces the wheel (a Space installs one) and does not link the card twice.
        push_demo_to_hub("alice/digits-demo", "alice/digits", private=True, wheel=_fake_wheel(tmp_path, "0.2.1"))
        files = hub.files("alice/digits-demo", repo_type="space")
        assert [name for name in files if name.endswith(".whl")] == ["ncsn_pipeline-0.2.1-py3-none-any.whl"]
        assert hub.files("alice/digits")["README.md"].decode().count("/spaces/alice/digits-demo)") == 1


def test_ncsn_push_publishes_the_model_and_its_space(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("ncsn_pipeline.hub.space.build_wheel", lambda staging: _fake_wheel(Path(staging)))
    with running_stand_in() as hub, hub.patched_client(tmp_path / "home"):
        folder = str(pretrained_path("ncsn-two-gaussians"))
        assert push_main([folder, "bob/toy", "--public", "--space", "bob/toy-demo"]) == 0
        assert "Published the demo Space bob/toy-demo" in capsys.readouterr().out
        assert hub.repo("bob/toy-demo", "space").private is False and hub.repo("bob/toy-demo", "space").sdk == "gradio"
        assert "/spaces/bob/toy-demo)" in hub.files("bob/toy")["README.md"].decode()


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        (dict(space_id="alice/demo", model_id="alice/digits", private="yes"), ValueError, "private must be True or"),
        (dict(space_id="demo", model_id="alice/digits", private=True), ValueError, "space_id must look like"),
        (dict(space_id="alice/demo", model_id="alice digits", private=True), ValueError, "model_id must look like"),
        (dict(space_id="alice/demo", model_id="alice/missing", private=True), HubError, "find the model alice/missing"),
        (dict(space_id="alice/demo", model_id="alice/digits", private=True, wheel="setup.py"), ValueError,
         "wheel must be this package's wheel"),
    ],
)  # fmt: skip
def test_a_space_that_cannot_be_made_is_refused_before_anything_is_created(tmp_path, arguments, error, message):
    with running_stand_in() as hub, hub.patched_client(tmp_path / "home"):
        push_folder_to_hub(pretrained_path("ncsn-digits"), "alice/digits", private=False, pipeline_class=NCSNPipeline)
        arguments.setdefault("wheel", _fake_wheel(tmp_path))
        with pytest.raises(error, match=message):
            push_demo_to_hub(**arguments)
        assert hub.repo_ids("space") == []


def test_a_space_without_gradio_installed_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # as if the demo extra were not installed
    with pytest.raises(HubError, match=r"pip install 'ncsn-pipeline\[demo\]'"):
        space_card("alice/digits-demo", "alice/digits")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow  # builds the wheel, installs the Space in a fresh virtual environment and serves it (~1 min)
def test_a_downloaded_space_installs_in_a_fresh_environment_and_serves_the_published_model(tmp_path):
    """The Space as the Hub runs it: downloaded, ``pip install -r requirements.txt`` (offline, ``--no-index``) in a
    fresh virtual environment, then ``python app.py`` answers ``/generate`` with the published model.

    The fresh environment sees this environment's installed packages through a ``.pth`` line (PyTorch, diffusers,
    Gradio, ...: installing them again took 2.5 minutes of the CI's 15), so pip resolves requirements.txt against
    those versions and installs the package itself from the Space's wheel into the fresh environment, where it is
    imported from (checked below)."""
    from gradio_client import Client
    from huggingface_hub import snapshot_download

    with running_stand_in() as hub:
        with hub.patched_client(tmp_path / "home"):
            push_folder_to_hub(
                pretrained_path("ncsn-digits"), "alice/digits", private=False, pipeline_class=NCSNPipeline
            )
            push_demo_to_hub("alice/digits-demo", "alice/digits", private=False, wheel=build_wheel(tmp_path / "whl"))
            space = Path(snapshot_download("alice/digits-demo", repo_type="space", local_dir=tmp_path / "space"))
        venv = tmp_path / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = str(venv / "bin" / "python")
        fresh_site = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                                    capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
        this_site = site.getsitepackages()[0]
        (Path(fresh_site) / "test-environment.pth").write_text(this_site + "\n")
        # The venv's own older setuptools would hide this environment's (PyTorch requires a newer one).
        subprocess.run([python, "-m", "pip", "uninstall", "--yes", "--quiet", "setuptools"], capture_output=True)
        pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index"]
        result = subprocess.run([*pip, "-r", "requirements.txt"], cwd=space, capture_output=True, text=True,
                                timeout=600)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        port = _free_port()
        environment = {**hub.client_env(tmp_path / "space-home"), "GRADIO_SERVER_PORT": str(port), "NCSN_THREADS": "1"}
        environment.pop("PYTHONPATH", None)  # the Space's package comes from its wheel, not this checkout
        server = subprocess.Popen([str(venv / "bin" / "python"), "app.py"], cwd=space, env=environment,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
        try:
            client, started = None, time.monotonic()
            while client is None and time.monotonic() - started < 180 and server.poll() is None:
                try:
                    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                except Exception:  # not serving yet
                    time.sleep(1)
            assert client is not None, server.stdout.read() if server.poll() is not None else "no answer in 180 s"
            where = "import ncsn_pipeline; print(ncsn_pipeline.__file__)"
            located = subprocess.run([str(venv / "bin" / "python"), "-c", where], capture_output=True, text=True,
                                     env=environment, cwd=space)  # fmt: skip
            assert str(venv) in located.stdout  # installed from the Space's wheel
            # The page opens on the published model: /generate on it, as the Space's visitors ask.
            request = ["alice/digits", "NCSNScheduler", 3, 1, 1.0, 0, 2, False, "any", 2.0, 1.0]
            summary = client.predict(*request, api_name="/generate")[-1]
            assert "2 samples of alice/digits (--model)" in summary
            client.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
