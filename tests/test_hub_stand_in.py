"""The local Hub stand-in, exercised through the REAL huggingface_hub client (no internet, no torch).

`tests/conftest.py` sets HF_HUB_OFFLINE=1 for the whole suite before huggingface_hub is imported, so every test
here runs the client either in-process inside `hub.patched_client(...)` (which patches the constants the client
froze at import, see `hub_stand_in`'s docstring) or in a subprocess with `env=hub.client_env(...)`.
"""

import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hub_stand_in import DEFAULT_TOKEN, DEFAULT_USER, running_stand_in, validate_card_metadata

READ_TOKEN = "hf_read_only_token"
GOOD_CARD = """---
license: mit
library_name: diffusers
pipeline_tag: unconditional-image-generation
tags:
- ncsn
- score-based
---
# NCSN demo

A tiny test model.
"""


def _folder_files(seed: int = 0) -> dict:
    rng = random.Random(seed)
    return {
        "README.md": GOOD_CARD.encode(),
        "model_index.json": json.dumps({"_class_name": "NCSNPipeline", "seed": seed}).encode(),
        "unet/config.json": json.dumps({"sample_size": 8, "seed": seed}).encode(),
        "unet/diffusion_pytorch_model.safetensors": bytes(rng.getrandbits(8) for _ in range(4096)),
        "scheduler/scheduler_config.json": b'{"num_train_timesteps": 10}',
        "extra/deeper/notes.txt": f"nested file {seed}\n".encode(),
    }


def _write_folder(root: Path, files: dict) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _tree_bytes(root) -> dict:
    root = Path(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def hub():
    with running_stand_in(read_tokens={READ_TOKEN: "reader"}) as hub:
        yield hub
        assert hub.unhandled == [], "the client used a route the stand-in does not implement"
        assert hub.server_errors == []


@pytest.fixture
def client(hub, tmp_path):
    """huggingface_hub (already imported, offline per conftest) pointed at the stand-in with its write token."""
    with hub.patched_client(tmp_path / "hf_home"):
        yield hub


def _commit_posts(hub):
    return hub.requests("POST", r"^/api/models/.+/commit/")


def test_create_repo_exist_ok_and_conflict(client):
    hub = client
    url = huggingface_hub.create_repo("alice/demo")  # module-level function: bound to hf_api.api (patched)
    assert url == f"{hub.url}/alice/demo" and url.repo_id == "alice/demo"
    repo = hub.repo("alice/demo")
    assert repo.private is False and repo.created_by == DEFAULT_USER
    initial = hub.commits("alice/demo")
    assert len(initial) == 1 and initial[0][1] == [".gitattributes"]  # like the Hub's initial commit

    with pytest.raises(HfHubHTTPError) as conflict:
        huggingface_hub.create_repo("alice/demo")
    assert conflict.value.response.status_code == 409
    assert conflict.value.response.json()["url"] == url
    assert huggingface_hub.create_repo("alice/demo", exist_ok=True) == url
    assert hub.commits("alice/demo") == initial

    assert HfApi().create_repo("bare-name").repo_id == f"{DEFAULT_USER}/bare-name"
    assert HfApi().whoami()["name"] == DEFAULT_USER
    assert huggingface_hub.repo_exists("alice/demo") and not huggingface_hub.repo_exists("alice/nope")


def test_upload_folder_is_one_commit_that_model_info_lists(client, tmp_path):
    hub = client
    files = _folder_files()
    huggingface_hub.create_repo("alice/pipe")
    info = huggingface_hub.upload_folder(repo_id="alice/pipe", folder_path=_write_folder(tmp_path / "src", files))

    expected_paths = sorted([*files, ".gitattributes"])
    assert len(_commit_posts(hub)) == 1
    commits = hub.commits("alice/pipe")
    assert len(commits) == 2 and commits[-1] == (info.oid, expected_paths)
    assert hub.head("alice/pipe") == info.oid
    assert {path: hub.files("alice/pipe")[path] for path in files} == files

    model = huggingface_hub.model_info("alice/pipe")
    assert model.sha == info.oid and model.id == "alice/pipe" and model.private is False
    assert sorted(s.rfilename for s in model.siblings) == expected_paths
    assert model.pipeline_tag == "unconditional-image-generation" and model.card_data.license == "mit"
    sized = huggingface_hub.model_info("alice/pipe", files_metadata=True)
    assert {s.rfilename: s.size for s in sized.siblings}["unet/config.json"] == len(files["unet/config.json"])

    assert huggingface_hub.list_repo_files("alice/pipe") == expected_paths
    top = {entry.path: type(entry).__name__ for entry in huggingface_hub.list_repo_tree("alice/pipe")}
    assert top == {
        ".gitattributes": "RepoFile",
        "README.md": "RepoFile",
        "model_index.json": "RepoFile",
        "unet": "RepoFolder",
        "scheduler": "RepoFolder",
        "extra": "RepoFolder",
    }
    nested = [entry.path for entry in huggingface_hub.list_repo_tree("alice/pipe", "extra", recursive=True)]
    assert nested == ["extra/deeper", "extra/deeper/notes.txt"]
    commit_titles = [c.title for c in HfApi().list_repo_commits("alice/pipe")]
    assert commit_titles == ["Upload folder using huggingface_hub", "initial commit"]


def test_hf_hub_download_and_snapshot_download_return_identical_bytes(client, tmp_path):
    files = _folder_files()
    huggingface_hub.create_repo("alice/pipe")
    sha = huggingface_hub.upload_folder(repo_id="alice/pipe", folder_path=_write_folder(tmp_path / "src", files)).oid

    for rel, data in files.items():
        path = huggingface_hub.hf_hub_download("alice/pipe", rel, cache_dir=tmp_path / "cache-a")
        assert Path(path).read_bytes() == data
        assert f"snapshots/{sha}/" in Path(path).as_posix()

    folder = huggingface_hub.snapshot_download("alice/pipe", cache_dir=tmp_path / "cache-b")
    assert Path(folder).name == sha
    downloaded = _tree_bytes(folder)
    assert downloaded.pop(".gitattributes")
    assert downloaded == files

    with pytest.raises(RemoteEntryNotFoundError):
        huggingface_hub.hf_hub_download("alice/pipe", "missing.bin", cache_dir=tmp_path / "cache-a")


def test_second_commit_moves_main_but_first_revision_stays_downloadable(client, tmp_path):
    hub = client
    api = HfApi()
    api.create_repo("alice/weights")
    first = api.create_commit(
        "alice/weights",
        operations=[CommitOperationAdd("w.bin", b"version one"), CommitOperationAdd("config.json", b"{}")],
        commit_message="v1",
    )
    second = api.upload_file(path_or_fileobj=b"version two", path_in_repo="w.bin", repo_id="alice/weights")
    assert first.oid != second.oid and hub.head("alice/weights") == second.oid
    assert hub.files("alice/weights", revision=first.oid)["w.bin"] == b"version one"

    assert api.model_info("alice/weights").sha == second.oid
    assert api.model_info("alice/weights", revision=first.oid).sha == first.oid
    cache = tmp_path / "cache"
    latest = huggingface_hub.hf_hub_download("alice/weights", "w.bin", cache_dir=cache)
    old = huggingface_hub.hf_hub_download("alice/weights", "w.bin", revision=first.oid, cache_dir=cache)
    assert Path(latest).read_bytes() == b"version two" and Path(old).read_bytes() == b"version one"
    old_snapshot = huggingface_hub.snapshot_download("alice/weights", revision=first.oid, cache_dir=tmp_path / "s")
    assert (Path(old_snapshot) / "w.bin").read_bytes() == b"version one"

    with pytest.raises(RevisionNotFoundError):
        api.model_info("alice/weights", revision="no-such-branch")
    with pytest.raises(HfHubHTTPError) as stale:  # parent_commit is not main's head any more
        api.create_commit(
            "alice/weights",
            operations=[CommitOperationAdd("w.bin", b"version three")],
            commit_message="stale",
            parent_commit=first.oid,
        )
    assert stale.value.response.status_code == 412
    assert hub.head("alice/weights") == second.oid


def test_private_repo_reads_need_a_token(client, tmp_path):
    hub = client
    huggingface_hub.create_repo("alice/secret", private=True)
    huggingface_hub.upload_file(path_or_fileobj=b"hidden", path_in_repo="w.bin", repo_id="alice/secret")
    assert hub.repo("alice/secret").private is True

    anonymous = HfApi(token=False)
    with pytest.raises(RepositoryNotFoundError) as denied:
        anonymous.model_info("alice/secret")
    assert denied.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError):
        huggingface_hub.hf_hub_download("alice/secret", "w.bin", token=False, cache_dir=tmp_path / "anon")
    with pytest.raises(RepositoryNotFoundError):
        huggingface_hub.snapshot_download("alice/secret", token=False, cache_dir=tmp_path / "anon")

    assert HfApi().model_info("alice/secret").private is True  # HF_TOKEN from the environment
    assert HfApi(token=READ_TOKEN).model_info("alice/secret").sha == hub.head("alice/secret")
    path = huggingface_hub.hf_hub_download("alice/secret", "w.bin", cache_dir=tmp_path / "authed")
    assert Path(path).read_bytes() == b"hidden"

    huggingface_hub.create_repo("alice/open")
    huggingface_hub.upload_file(path_or_fileobj=b"public", path_in_repo="w.bin", repo_id="alice/open")
    path = huggingface_hub.hf_hub_download("alice/open", "w.bin", token=False, cache_dir=tmp_path / "anon")
    assert Path(path).read_bytes() == b"public"
    with pytest.raises(HfHubHTTPError) as wrong:  # like the Hub, an invalid token is refused even on public reads
        HfApi(token="hf_wrong").model_info("alice/open")
    assert wrong.value.response.status_code == 401
    assert not isinstance(wrong.value, RepositoryNotFoundError)


@pytest.mark.parametrize("token", [False, "hf_wrong"], ids=["no-token", "wrong-token"])
def test_writes_without_a_valid_token_get_401(client, token):
    hub = client
    with pytest.raises(HfHubHTTPError) as create:
        HfApi(token=token).create_repo("alice/denied")
    assert create.value.response.status_code == 401
    assert hub.repo_ids() == []

    huggingface_hub.create_repo("alice/target")
    before = hub.commits("alice/target")
    with pytest.raises(HfHubHTTPError) as commit:
        HfApi(token=token).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/target")
    assert commit.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as read_only:
        HfApi(token=READ_TOKEN).upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/target")
    assert read_only.value.response.status_code == 403
    assert hub.commits("alice/target") == before


def test_a_commit_that_fails_mid_upload_stores_nothing_and_a_retry_succeeds(client, tmp_path):
    hub = client
    v1, v2 = _folder_files(seed=1), _folder_files(seed=2)
    huggingface_hub.create_repo("alice/flaky")
    first = huggingface_hub.upload_folder(repo_id="alice/flaky", folder_path=_write_folder(tmp_path / "v1", v1))
    before = hub.commits("alice/flaky")
    source = _write_folder(tmp_path / "v2", v2)

    hub.fail_next_commit(after_bytes=64)  # connection dropped while the NDJSON body is being sent
    with pytest.raises(httpx2.TransportError):
        huggingface_hub.upload_folder(repo_id="alice/flaky", folder_path=source)
    hub.fail_next_commit(status=500)
    with pytest.raises(HfHubHTTPError) as server_error:
        huggingface_hub.upload_folder(repo_id="alice/flaky", folder_path=source)
    assert server_error.value.response.status_code == 500
    assert hub.commits("alice/flaky") == before
    assert huggingface_hub.model_info("alice/flaky").sha == first.oid
    assert {path: hub.files("alice/flaky")[path] for path in v1} == v1

    retried = huggingface_hub.upload_folder(repo_id="alice/flaky", folder_path=source)
    assert [c.status for c in _commit_posts(hub)] == [200, None, 500, 200]
    assert hub.commits("alice/flaky")[:-1] == before and hub.head("alice/flaky") == retried.oid
    assert {path: hub.files("alice/flaky")[path] for path in v2} == v2
    snapshot = huggingface_hub.snapshot_download("alice/flaky", cache_dir=tmp_path / "cache")
    assert {k: v for k, v in _tree_bytes(snapshot).items() if k in v2} == v2


def test_with_xet_enabled_upload_folder_retries_a_failed_commit_by_itself(hub, tmp_path):
    pytest.importorskip("hf_xet")
    with hub.patched_client(tmp_path / "hf_home", disable_xet=False):
        from huggingface_hub.utils._runtime import is_xet_available

        assert is_xet_available()  # upload_folder takes the pipelined (multi-commit, retrying) path
        huggingface_hub.create_repo("alice/xet")
        hub.fail_next_commit(status=503)
        files = _folder_files()
        info = huggingface_hub.upload_folder(repo_id="alice/xet", folder_path=_write_folder(tmp_path / "src", files))
    assert [c.status for c in _commit_posts(hub)] == [503, 200]
    assert [sha for sha, _ in hub.commits("alice/xet")][1:] == [info.oid]
    assert {path: hub.files("alice/xet")[path] for path in files} == files


def test_model_card_metadata_is_validated_by_the_stand_in(client):
    hub = client
    assert ModelCard(GOOD_CARD).validate() is None
    with pytest.raises(ValueError, match="pipeline_tag"):
        ModelCard(GOOD_CARD.replace("unconditional-image-generation", "not-a-task")).validate()
    with pytest.raises(ValueError, match="license"):
        ModelCard(GOOD_CARD.replace("license: mit", "license: 3")).validate()

    api = HfApi()
    api.create_repo("alice/card")
    before = hub.commits("alice/card")
    for bad in ["---\ntags: [unclosed\n---\n# x\n", "---\npipeline_tag: [1, 2]\n---\n# x\n"]:
        with pytest.raises(ValueError, match="Invalid metadata in README.md"):
            api.upload_file(path_or_fileobj=bad.encode(), path_in_repo="README.md", repo_id="alice/card")
    assert hub.commits("alice/card") == before and _commit_posts(hub) == []
    with pytest.warns(UserWarning, match="empty or missing yaml metadata"):
        api.upload_file(path_or_fileobj=b"# no metadata\n", path_in_repo="README.md", repo_id="alice/card")

    ModelCard(GOOD_CARD).push_to_hub("alice/card")
    assert hub.files("alice/card")["README.md"].decode() == str(ModelCard(GOOD_CARD))
    assert api.model_info("alice/card").card_data.tags == ["ncsn", "score-based"]


def test_validate_card_metadata_rules():
    assert validate_card_metadata(GOOD_CARD) == ([], [])
    assert validate_card_metadata("# text only") == ([], ["empty or missing yaml metadata in repo card"])
    errors, _ = validate_card_metadata("---\ntags: ncsn\nlibrary_name: 3\n---\n")
    assert errors == ['"tags" must be an array of strings', '"library_name" must be a string']
    errors, _ = validate_card_metadata("---\n- a list\n---\n")
    assert errors == ['"metadata" must be a YAML mapping, got list']
    for task in ("unconditional-image-generation", "text-to-image", "image-classification"):
        assert validate_card_metadata(f"---\npipeline_tag: {task}\n---\n") == ([], [])


def test_unreachable_hub_then_back(client, tmp_path):
    hub = client
    huggingface_hub.create_repo("alice/offline")
    huggingface_hub.upload_file(path_or_fileobj=b"cached", path_in_repo="w.bin", repo_id="alice/offline")
    cached = huggingface_hub.hf_hub_download("alice/offline", "w.bin")
    url = hub.url

    hub.down()
    with pytest.raises(httpx2.ConnectError):
        huggingface_hub.model_info("alice/offline")
    # A cached file is served from the cache when the HEAD call cannot connect (no retry for cached files).
    assert huggingface_hub.hf_hub_download("alice/offline", "w.bin") == cached

    hub.up()
    assert hub.url == url
    assert huggingface_hub.model_info("alice/offline").sha == hub.head("alice/offline")


SUBPROCESS_SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    import huggingface_hub
    from huggingface_hub import HfApi, ModelCard, constants

    folder = sys.argv[1]
    assert constants.ENDPOINT == os.environ["HF_ENDPOINT"] and not constants.HF_HUB_OFFLINE
    huggingface_hub.create_repo("bob/env-recipe", private=True)
    commit = huggingface_hub.upload_folder(repo_id="bob/env-recipe", folder_path=folder)
    info = huggingface_hub.model_info("bob/env-recipe")
    snapshot = huggingface_hub.snapshot_download("bob/env-recipe")
    weights = huggingface_hub.hf_hub_download("bob/env-recipe", "unet/diffusion_pytorch_model.safetensors")
    ModelCard(open(os.path.join(folder, "README.md")).read()).validate()
    try:
        HfApi(token=False).model_info("bob/env-recipe")
        anonymous = "allowed"
    except huggingface_hub.errors.RepositoryNotFoundError:
        anonymous = "refused"
    print(json.dumps({
        "oid": commit.oid, "sha": info.sha, "snapshot": snapshot, "weights": weights, "anonymous": anonymous,
        "cache": constants.HF_HUB_CACHE,
    }))
    """
)


def test_environment_recipe_works_in_a_fresh_interpreter(hub, tmp_path):
    files = _folder_files()
    folder = _write_folder(tmp_path / "src", files)
    env = hub.client_env(tmp_path / "hf_home")  # starts from os.environ, where conftest put HF_HUB_OFFLINE=1
    assert os.environ["HF_HUB_OFFLINE"] == "1" and env["HF_HUB_OFFLINE"] == "0" and env["HF_TOKEN"] == DEFAULT_TOKEN
    result = subprocess.run(
        [sys.executable, "-c", SUBPROCESS_SCRIPT, str(folder)], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["oid"] == report["sha"] == hub.head("bob/env-recipe")
    assert report["anonymous"] == "refused" and hub.repo("bob/env-recipe").private
    assert Path(report["cache"]) == tmp_path / "hf_home" / "hub"
    assert Path(report["snapshot"]).is_relative_to(tmp_path / "hf_home" / "hub")
    assert Path(report["weights"]).read_bytes() == files["unet/diffusion_pytorch_model.safetensors"]
    assert {k: v for k, v in _tree_bytes(report["snapshot"]).items() if k in files} == files


def test_patched_client_restores_the_offline_test_configuration(hub, tmp_path):
    from huggingface_hub import constants
    from huggingface_hub.hf_api import api

    before = (constants.ENDPOINT, constants.HF_HUB_OFFLINE, constants.HF_HUB_CACHE, api.endpoint, dict(os.environ))
    with hub.patched_client(tmp_path / "hf_home", token=None):
        assert (constants.ENDPOINT, api.endpoint, constants.HF_HUB_OFFLINE) == (hub.url, hub.url, False)
        assert "HF_TOKEN" not in os.environ and os.environ["HF_HUB_OFFLINE"] == "0"
        with pytest.raises(HfHubHTTPError) as anonymous:
            huggingface_hub.create_repo("alice/anonymous")
        assert anonymous.value.response.status_code == 401
    assert (
        constants.ENDPOINT,
        constants.HF_HUB_OFFLINE,
        constants.HF_HUB_CACHE,
        api.endpoint,
        dict(os.environ),
    ) == before
    assert constants.HF_HUB_OFFLINE  # conftest's offline mode is back for the rest of the suite
