"""A local stand-in for the Hugging Face Hub that the REAL ``huggingface_hub`` client (2.4) can talk to.

``StandInHub`` is an in-memory, multi-repo Hub served over HTTP on 127.0.0.1 (OS-chosen port, background
thread). It implements the routes that ``create_repo``, ``create_commit`` / ``upload_folder`` / ``upload_file``,
``repo_info`` / ``model_info``, ``list_repo_files`` / ``list_repo_tree``, ``hf_hub_download``,
``snapshot_download``, ``ModelCard.validate`` and ``DiffusionPipeline.from_pretrained`` use, with real commit
semantics: every commit is atomic, gets a fresh 40-hex sha and moves ``main``; old commits stay downloadable by sha.

Quick start (inside a test)::

    from hub_stand_in import running_stand_in

    def test_something(tmp_path):
        with running_stand_in() as hub, hub.patched_client(tmp_path / "hf_home"):
            import huggingface_hub
            huggingface_hub.create_repo("alice/demo")
            huggingface_hub.upload_folder(repo_id="alice/demo", folder_path=some_folder)
            assert hub.files("alice/demo")["model_index.json"] == b"..."

API: ``StandInHub(token="hf_test_token", user="stand-in-user", read_tokens={tok: user}, gitattributes=True)``;
``start()`` / ``stop()`` / context manager / ``url`` / ``down()`` / ``up()`` / ``is_up``;
``fail_next_commit(status=500, after_bytes=None, times=1)`` and ``fail_next_request(method=, path_regex=, ...)``;
``repo(repo_id).private`` / ``.created_by``, ``repo_ids()``, ``commits(repo_id)`` -> ``[(sha, sorted paths)]``
oldest first, ``files(repo_id, revision="main")`` -> ``{path: bytes}``, ``head(repo_id)``;
``request_log`` / ``requests(method, path_regex)``, ``unhandled``, ``server_errors``; ``add_token()``,
``create_repo()`` (server-side seeding); ``client_env(hf_home, token=...)``, ``patched_client(hf_home, token=...)``.
Module level: ``running_stand_in(token=..., **kwargs)``, ``validate_card_metadata(text)``, ``git_blob_sha1(data)``.

Pointing the client at the stand-in
-----------------------------------
``huggingface_hub`` reads its environment ONCE, at import (``huggingface_hub/constants.py``)::

    ENDPOINT = os.getenv("HF_ENDPOINT", ...)            # also baked into HUGGINGFACE_CO_URL_TEMPLATE
    HF_HUB_OFFLINE = _is_true(os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE"))
    HF_HOME / HF_HUB_CACHE / HF_TOKEN_PATH / HF_XET_CACHE   # derived from HF_HOME
    HF_HUB_DISABLE_XET                                  # exists in 2.4

and ``huggingface_hub/hf_api.py`` builds a module-level ``api = HfApi()`` at import, whose ``endpoint`` is
frozen then: the top-level functions ``huggingface_hub.create_repo``, ``model_info``, ``repo_info``,
``upload_folder``, ``resolve_revision`` ... are bound methods of that object (diffusers imports ``model_info``
from there). ``hf_hub_url`` (used by ``hf_hub_download``) formats ``constants.HUGGINGFACE_CO_URL_TEMPLATE``,
not ``constants.ENDPOINT``, and ``ModelCard.validate`` posts to ``constants.ENDPOINT`` directly. The token is
read from the ``HF_TOKEN`` environment variable on every call (then from ``constants.HF_TOKEN_PATH``).
``tests/conftest.py`` sets ``HF_HUB_OFFLINE=1`` before anything imports the client, so in-process
``constants.HF_HUB_OFFLINE`` is True and every request raises ``OfflineModeIsEnabled`` until patched.

Hence two supported ways:

1. **Subprocess** (cleanest; what a user's shell would do): run the client in a fresh interpreter with
   ``env=hub.client_env(hf_home)``. It sets ``HF_ENDPOINT=hub.url``, ``HF_TOKEN`` (hub's write token; pass
   ``token=None`` for anonymous, which also drops ``HF_TOKEN``/``HUGGING_FACE_HUB_TOKEN``), ``HF_HOME`` and
   ``HF_HUB_CACHE`` to a tmp dir, ``HF_HUB_OFFLINE=0`` (wins over ``TRANSFORMERS_OFFLINE``),
   ``HF_HUB_DISABLE_XET=1``, ``HF_HUB_DISABLE_TELEMETRY=1``, ``HF_HUB_DISABLE_PROGRESS_BARS=1`` and adds
   127.0.0.1 to ``NO_PROXY`` (httpx honours proxy variables).  The same variables serve
   ``DiffusionPipeline.from_pretrained(repo_id)`` / ``.download`` in that subprocess: diffusers only calls
   ``huggingface_hub`` underneath (``resolve_revision`` -> ``repo_info``, ``model_info``, ``hf_hub_download``,
   ``snapshot_download``), all answered by the routes below.

2. **In-process**: ``with hub.patched_client(hf_home, token=...):`` sets the same environment variables AND
   patches what was frozen at import: ``huggingface_hub.constants.{ENDPOINT, HUGGINGFACE_CO_URL_TEMPLATE,
   HF_HUB_OFFLINE, HF_HUB_DISABLE_XET, HF_HUB_DISABLE_TELEMETRY, HF_HOME, HF_HUB_CACHE, HF_TOKEN_PATH, ...}``,
   ``huggingface_hub.hf_api.api.endpoint`` and, for diffusers modules already imported, their copies of
   ``HF_HUB_OFFLINE`` (``diffusers.loaders.lora_base``, ``diffusers.utils.hub_utils``) and
   ``HUGGINGFACE_CO_RESOLVE_ENDPOINT``; it closes the shared httpx client on entry and exit; everything is
   restored on exit.  ``HfApi`` objects created BEFORE entering keep their old endpoint: create them inside,
   or pass ``HfApi(endpoint=hub.url, token=...)`` explicitly (an explicit ``endpoint=`` always works, for
   ``hf_hub_download(..., endpoint=hub.url)`` too, but ``ModelCard.validate`` has no such argument).

Xet: with ``hf_xet`` installed, ``upload_folder`` does NOT call ``create_commit``; it goes through
``huggingface_hub._upload_pipeline.pipelined_upload``, which (a) may split a folder into several commits
(250 files, adaptive, or 100 MB of inline content per commit; later ones titled "... (part N)"), (b) POSTs each
commit with ``retry_on_error=True`` (``http_backoff``: 5 retries on 408/429/5xx and connection errors, waiting
1, 2, 4, 8, 8 s), and (c) skips the client-side ``README.md`` metadata check (the stand-in still rejects invalid
cards at commit time, as the Hub does). ``HF_HUB_DISABLE_XET=1`` (the default of both helpers) restores the
classic path: one ``create_commit``, no retry of the commit POST.  Either way the stand-in answers
``uploadMode: "regular"`` (``shouldIgnore: false``) for every file in ``preupload``, so all content arrives
base64-inline in the commit NDJSON and no Xet/LFS storage is ever contacted; downloads carry no ``X-Xet-Hash``
header, so they are plain HTTP GETs of ``/resolve``.  (``preupload`` itself always goes through ``http_backoff``.)

Hub down: ``hub.down()`` closes the listening socket (connection refused, ``httpx2.ConnectError``). API calls
fail at once; ``hf_hub_download`` of an already-cached file returns the cached copy at once, but for a file that
is NOT cached it retries the HEAD with the same backoff (about 23 s) before raising ``LocalEntryNotFoundError``.

Routes (``{t}`` = models | datasets | spaces; revisions and paths are URL-quoted by the client)::

    GET    /api/whoami-v2                               GET  /api/agent-harnesses (empty registry)
    POST   /api/repos/create   (409 + url if it exists) DELETE /api/repos/delete
    POST   /api/validate-yaml                           PUT  /api/{t}/{ns}/{name}/settings
    GET    /api/{t}/{ns}/{name}[/revision/{rev}]        GET  /api/{t}/{ns}/{name}/tree/{rev}[/{path}]
    POST   /api/{t}/{ns}/{name}/paths-info/{rev}        GET  /api/{t}/{ns}/{name}/refs
    GET    /api/{t}/{ns}/{name}/commits/{rev}           POST /api/{t}/{ns}/{name}/preupload/{rev}
    POST   /api/{t}/{ns}/{name}/commit/{rev}  (NDJSON: header line, then file/deletedFile/deletedFolder lines)
    HEAD|GET /[datasets/|spaces/]{ns}/{name}/resolve/{rev}/{path}   (X-Repo-Commit, ETag, Content-Length, Range)

Anything else answers 404 and is recorded in ``hub.unhandled`` (assert it stays empty).

Behaviour mirrored from the Hub: a new repo gets an initial commit holding ``.gitattributes`` (disable with
``StandInHub(gitattributes=False)``: the initial commit is then empty); unknown repo -> 404 ``X-Error-Code:
RepoNotFound``; private repo read without a token -> 401 ``RepoNotFound`` (the client raises
``RepositoryNotFoundError``); unknown revision -> 404 ``RevisionNotFound``; unknown file -> 404
``EntryNotFound``; an ``Authorization`` header with an unknown token -> 401 "Invalid credentials in
Authorization header" on EVERY route (as on the Hub, even public reads); writes (create, preupload, commit,
settings, delete) without a token -> 401, with a read-only token -> 403; ``parentCommit`` that is not the branch
head -> 412. Simplifications: any write token may write to any namespace; no LFS/Xet storage, pull requests,
tags, gating, pagination (one page) or rate limits.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import http.server
import json
import os
import re
import socket
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

__all__ = [
    "DEFAULT_TOKEN",
    "DEFAULT_USER",
    "Commit",
    "LoggedRequest",
    "Repo",
    "StandInHub",
    "git_blob_sha1",
    "running_stand_in",
    "validate_card_metadata",
]

DEFAULT_TOKEN = "hf_test_token"
DEFAULT_USER = "stand-in-user"
_KEEP = object()  # "use the hub's own write token" marker for token arguments

REPO_TYPES = ("model", "dataset", "space")
SPACE_SDKS = ("gradio", "docker", "static", "streamlit")
_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
# Same pattern as huggingface_hub.repocard.REGEX_YAML_BLOCK: front matter must open the file.
_YAML_BLOCK = re.compile(r"^(\s*---(?:\r\n|\r|\n))([\S\s]*?)((?:\r\n|\r|\n)---[ \t]*(\r\n|\n|$))")

# A subset of the Hub's task ids (https://huggingface.co/tasks), enough for model cards of this project.
KNOWN_PIPELINE_TAGS = frozenset(
    {
        "unconditional-image-generation",
        "text-to-image",
        "image-to-image",
        "image-classification",
        "image-segmentation",
        "object-detection",
        "depth-estimation",
        "image-to-text",
        "image-feature-extraction",
        "text-to-video",
        "text-to-audio",
        "text-to-speech",
        "automatic-speech-recognition",
        "audio-classification",
        "text-classification",
        "token-classification",
        "text-generation",
        "text2text-generation",
        "fill-mask",
        "question-answering",
        "summarization",
        "translation",
        "feature-extraction",
        "sentence-similarity",
        "zero-shot-classification",
        "zero-shot-image-classification",
        "tabular-classification",
        "tabular-regression",
        "reinforcement-learning",
        "time-series-forecasting",
        "other",
    }
)

# What the Hub puts in the initial commit of a new repo (abridged: the real file lists ~35 patterns).
DEFAULT_GITATTRIBUTES = (
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    b"*.ckpt filter=lfs diff=lfs merge=lfs -text\n"
    b"*.h5 filter=lfs diff=lfs merge=lfs -text\n"
    b"*.npy filter=lfs diff=lfs merge=lfs -text\n"
    b"*.onnx filter=lfs diff=lfs merge=lfs -text\n"
    b"*.pt filter=lfs diff=lfs merge=lfs -text\n"
    b"*.pth filter=lfs diff=lfs merge=lfs -text\n"
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
    b"*.zip filter=lfs diff=lfs merge=lfs -text\n"
)


def git_blob_sha1(data: bytes) -> str:
    """Git blob id of ``data``: what the Hub serves as ``ETag`` / ``oid`` for regular (non-LFS) files."""
    return hashlib.sha1(b"blob " + str(len(data)).encode() + b"\0" + data).hexdigest()


def _iso(moment: datetime) -> str:
    """The Hub's timestamp format ('%Y-%m-%dT%H:%M:%S.%fZ' with milliseconds), parsed by huggingface_hub."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _is_str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def validate_card_metadata(content: str) -> Tuple[List[str], List[str]]:
    """Basic Hub-like validation of a repo card's YAML front matter; returns ``(errors, warnings)``."""
    match = _YAML_BLOCK.search(content)
    if match is None:
        return [], ["empty or missing yaml metadata in repo card"]
    try:
        metadata = yaml.safe_load(match.group(2))
    except yaml.YAMLError as exc:
        return [f"Invalid YAML in the card metadata: {exc}".strip()], []
    if metadata is None or metadata == {}:
        return [], ["empty or missing yaml metadata in repo card"]
    if not isinstance(metadata, dict):
        return [f'"metadata" must be a YAML mapping, got {type(metadata).__name__}'], []
    errors = []
    if "license" in metadata and not isinstance(metadata["license"], str):
        errors.append('"license" must be a string')
    if "tags" in metadata and not _is_str_list(metadata["tags"]):
        errors.append('"tags" must be an array of strings')
    if "library_name" in metadata and not isinstance(metadata["library_name"], str):
        errors.append('"library_name" must be a string')
    if "pipeline_tag" in metadata:
        tag = metadata["pipeline_tag"]
        if not isinstance(tag, str):
            errors.append('"pipeline_tag" must be a string')
        elif tag not in KNOWN_PIPELINE_TAGS:
            errors.append(f'"pipeline_tag" must be a valid task id, got "{tag}"')
    for key in ("language", "datasets", "base_model", "metrics"):
        if key in metadata and not (isinstance(metadata[key], str) or _is_str_list(metadata[key])):
            errors.append(f'"{key}" must be a string or an array of strings')
    return errors, []


# ----------------------------------------------------------------------------------------------------- storage


@dataclass(frozen=True)
class Commit:
    sha: str
    parent: Optional[str]
    files: Mapping[str, bytes]  # read-only snapshot: path -> content
    title: str
    description: str
    author: str
    date: datetime


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_by: str
    created_at: datetime
    sdk: Optional[str] = None  # a Space's SDK ("gradio", ...), as create_repo(space_sdk=...) sent it
    branches: Dict[str, str] = field(default_factory=dict)  # branch -> head commit sha
    commit_log: Dict[str, Commit] = field(default_factory=dict)  # sha -> commit, in creation order

    @property
    def head(self) -> Commit:
        return self.commit_log[self.branches["main"]]


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str  # as sent (still URL-quoted), without the query string
    status: Optional[int]  # None: the connection was dropped on purpose
    user: Optional[str]  # who the Authorization header identified, None if anonymous/invalid


@dataclass
class _Token:
    user: str
    can_write: bool


@dataclass
class _Failure:
    method: Optional[str]
    path_pattern: Optional[re.Pattern[str]]
    status: int
    after_bytes: Optional[int]
    remaining: int

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and method != self.method:
            return False
        return self.path_pattern is None or self.path_pattern.search(path) is not None


class _HttpError(Exception):
    def __init__(self, status: int, message: str, *, code: Optional[str] = None, header_message: bool = False, **extra):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.header_message = header_message
        self.extra = extra


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: Dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: Optional[Dict[str, str]] = None) -> _Response:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})


# ------------------------------------------------------------------------------------------------------ server


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    hub: StandInHub

    def handle_error(self, request, client_address):  # noqa: D102 - record instead of printing to stderr
        exc = sys.exc_info()[1]
        if not isinstance(exc, (ConnectionError, TimeoutError)):
            self.hub.server_errors.append(repr(exc))


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "StandInHub/1.0"
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - silence the default stderr access log
        pass

    def do_GET(self):
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def _read_body(self, limit: Optional[int] = None) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: List[bytes] = []
            total = 0
            while limit is None or total < limit:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
                total += size
            data = b"".join(chunks)
            return data if limit is None else data[:limit]
        length = int(self.headers.get("Content-Length") or 0)
        if limit is not None:
            length = min(length, limit)
        return self.rfile.read(length) if length > 0 else b""

    def _handle(self) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        failure = hub._take_failure(self.command, split.path)
        if failure is not None and failure.after_bytes is not None:
            self._read_body(limit=failure.after_bytes)
            hub._log(self.command, split.path, None, None)
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        # Always drain the body before answering: closing a socket with unread input makes the kernel send an RST,
        # and the client would see "connection reset" instead of our error response.
        body = self._read_body()
        user = None
        if failure is not None:
            response = _Response.json({"error": f"Injected failure (HTTP {failure.status})"}, failure.status)
        else:
            try:
                response, user = hub._route(self.command, split.path, split.query, self.headers, body)
            except Exception as exc:  # a bug in the stand-in: surface it to the test, answer 500
                hub.server_errors.append(f"{self.command} {self.path}: {exc!r}")
                response = _Response.json({"error": f"stand-in hub crashed: {exc!r}"}, 500)
        hub._log(self.command, split.path, response.status, user)
        self.send_response(response.status)
        headers = {"Content-Type": "application/octet-stream", **response.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Connection", "close")  # no keep-alive: down() must really make the hub unreachable
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)


# -------------------------------------------------------------------------------------------------------- hub


class StandInHub:
    """In-memory Hugging Face Hub served on ``http://127.0.0.1:<port>``.

    Args:
        token: the write token (``Authorization: Bearer <token>``) of ``user``.
        user: the namespace of repos created without an explicit one, and the recorded commit author.
        read_tokens: extra tokens that can read private repos but get 403 on writes (token -> user name).
        gitattributes: start every repo with the Hub's ``.gitattributes`` initial commit (else an empty one).
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        user: str = DEFAULT_USER,
        read_tokens: Optional[Mapping[str, str]] = None,
        gitattributes: bool = True,
    ) -> None:
        self.token = token
        self.user = user
        self.gitattributes = gitattributes
        self._tokens: Dict[str, _Token] = {token: _Token(user, True)}
        for read_token, read_user in (read_tokens or {}).items():
            self._tokens[read_token] = _Token(read_user, False)
        self._repos: Dict[Tuple[str, str], Repo] = {}
        self._lock = threading.RLock()
        self._failures: List[_Failure] = []
        self.request_log: List[LoggedRequest] = []
        self.unhandled: List[str] = []  # "METHOD /path" of requests no route matched
        self.server_errors: List[str] = []  # exceptions raised inside the stand-in (should stay empty)
        self._server: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self._port: Optional[int] = None

    # --------------------------------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``; stable across ``down()`` / ``up()``."""
        if self._port is None:
            raise RuntimeError("StandInHub was never started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def start(self) -> StandInHub:
        """Start serving (on the previous port if there was one). Idempotent."""
        if self._server is not None:
            return self
        server = _Server(("127.0.0.1", self._port or 0), _Handler)
        server.hub = self
        self._port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"stand-in-hub-{self._port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket: connections are then refused. State is kept."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def down(self) -> None:
        """Simulate an unreachable Hub: the port refuses connections (``httpx2.ConnectError`` client-side)."""
        self.stop()

    def up(self) -> None:
        """Undo ``down()``: serve again on the same port, with the same repos."""
        self.start()

    def __enter__(self) -> StandInHub:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------- failure injection

    def fail_next_request(
        self,
        *,
        method: Optional[str] = None,
        path_regex: Optional[str] = None,
        status: int = 500,
        after_bytes: Optional[int] = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` matching requests fail before any state change.

        ``after_bytes=None``: answer ``status`` with a JSON error. ``after_bytes=N``: read at most N bytes of the
        request body, then drop the connection without answering (client-side ``httpx2.RemoteProtocolError`` or
        ``ReadError``, both ``httpx2.TransportError``).
        """
        pattern = re.compile(path_regex) if path_regex is not None else None
        with self._lock:
            self._failures.append(_Failure(method, pattern, status, after_bytes, times))

    def fail_next_commit(self, *, status: int = 500, after_bytes: Optional[int] = None, times: int = 1) -> None:
        """The next ``times`` commit POSTs fail (see ``fail_next_request``) and store nothing."""
        self.fail_next_request(
            method="POST", path_regex=r"^/api/[a-z]+s/.+/commit/", status=status, after_bytes=after_bytes, times=times
        )

    def clear_failures(self) -> None:
        with self._lock:
            self._failures.clear()

    def _take_failure(self, method: str, path: str) -> Optional[_Failure]:
        with self._lock:
            for failure in self._failures:
                if failure.matches(method, path):
                    failure.remaining -= 1
                    if failure.remaining <= 0:
                        self._failures.remove(failure)
                    return failure
        return None

    def _log(self, method: str, path: str, status: Optional[int], user: Optional[str]) -> None:
        with self._lock:
            self.request_log.append(LoggedRequest(method, path, status, user))

    def requests(self, method: Optional[str] = None, path_regex: Optional[str] = None) -> List[LoggedRequest]:
        """Logged requests, optionally filtered by method and a regex searched in the (quoted) path."""
        with self._lock:
            log = list(self.request_log)
        return [
            entry
            for entry in log
            if (method is None or entry.method == method) and (path_regex is None or re.search(path_regex, entry.path))
        ]

    # ----------------------------------------------------------------------------------------- inspection

    def repo(self, repo_id: str, repo_type: str = "model") -> Repo:
        """The stored repo (``.private``, ``.created_by``, ``.branches``, ``.commit_log``); KeyError if absent."""
        with self._lock:
            return self._repos[(repo_type, repo_id)]

    def repo_ids(self, repo_type: str = "model") -> List[str]:
        with self._lock:
            return sorted(repo_id for kind, repo_id in self._repos if kind == repo_type)

    def commits(self, repo_id: str, repo_type: str = "model") -> List[Tuple[str, List[str]]]:
        """``[(sha, sorted file paths), ...]`` for every commit of the repo, oldest first (initial commit included)."""
        with self._lock:
            repo = self.repo(repo_id, repo_type)
            return [(commit.sha, sorted(commit.files)) for commit in repo.commit_log.values()]

    def files(self, repo_id: str, revision: str = "main", repo_type: str = "model") -> Dict[str, bytes]:
        """``{path: content}`` at ``revision`` (branch name or commit sha)."""
        with self._lock:
            return dict(self._resolve(self.repo(repo_id, repo_type), revision).files)

    def head(self, repo_id: str, branch: str = "main", repo_type: str = "model") -> str:
        with self._lock:
            return self.repo(repo_id, repo_type).branches[branch]

    def add_token(self, token: str, user: str, *, write: bool = True) -> None:
        with self._lock:
            self._tokens[token] = _Token(user, write)

    def create_repo(
        self,
        repo_id: str,
        *,
        repo_type: str = "model",
        private: bool = False,
        files: Optional[Mapping[str, bytes]] = None,
    ) -> Repo:
        """Server-side shortcut (no HTTP) to seed a repo, optionally with a first commit of ``files``."""
        with self._lock:
            if (repo_type, repo_id) in self._repos:
                raise ValueError(f"{repo_type} repo {repo_id} already exists")
            repo = self._new_repo(repo_type, repo_id, private, self.user)
            if files:
                head = repo.head
                self._store_commit(repo, "main", {**head.files, **files}, "Seed files", "", self.user)
            return repo

    # --------------------------------------------------------------------------------------------- client setup

    def client_env(
        self,
        hf_home: Union[str, os.PathLike],
        *,
        token: Any = _KEEP,
        disable_xet: bool = True,
        base: Optional[Mapping[str, str]] = None,
    ) -> Dict[str, str]:
        """Full environment for a subprocess running ``huggingface_hub`` / diffusers against this hub.

        ``token``: the hub's write token by default, ``None`` for anonymous, or any string (e.g. a wrong one).
        ``base``: the environment to start from (default ``os.environ``).
        """
        to_set, to_unset = self._env_changes(hf_home, token, disable_xet)
        env = dict(os.environ if base is None else base)
        for name in to_unset:
            env.pop(name, None)
        env.update(to_set)
        return env

    def _env_changes(self, hf_home, token, disable_xet) -> Tuple[Dict[str, str], List[str]]:
        home = os.fspath(hf_home)
        to_set = {
            "HF_ENDPOINT": self.url,
            "HF_HOME": home,
            "HF_HUB_CACHE": os.path.join(home, "hub"),
            "HF_HUB_OFFLINE": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
        to_unset = [
            "HUGGING_FACE_HUB_TOKEN",
            "HF_TOKEN_PATH",
            "HUGGINGFACE_HUB_CACHE",
            "HF_ASSETS_CACHE",
            "HUGGINGFACE_ASSETS_CACHE",
            "HF_XET_CACHE",
            "HF_HUB_DISABLE_XET",
        ]
        if disable_xet:
            to_set["HF_HUB_DISABLE_XET"] = "1"
        token = self.token if token is _KEEP else token
        if token is None:
            to_unset.append("HF_TOKEN")
        else:
            to_set["HF_TOKEN"] = token
        for name in ("NO_PROXY", "no_proxy"):
            current = [item for item in os.environ.get(name, "").split(",") if item]
            to_set[name] = ",".join(dict.fromkeys([*current, "127.0.0.1", "localhost"]))
        return to_set, [name for name in to_unset if name not in to_set]

    @contextlib.contextmanager
    def patched_client(
        self, hf_home: Union[str, os.PathLike], *, token: Any = _KEEP, disable_xet: bool = True
    ) -> Iterator[None]:
        """Point the already-imported ``huggingface_hub`` (and diffusers, if imported) at this hub, then restore.

        See the module docstring for what is patched and why. Not thread-safe (process-global state).
        """
        import huggingface_hub.constants as hf_constants
        import huggingface_hub.hf_api as hf_api
        from huggingface_hub.utils import _http as hf_http

        home = os.fspath(hf_home)
        os.makedirs(home, exist_ok=True)
        to_set, to_unset = self._env_changes(home, token, disable_xet)
        hub_cache = os.path.join(home, "hub")
        assets = os.path.join(home, "assets")
        attributes: List[Tuple[Any, str, Any]] = [(hf_api.api, "endpoint", self.url)]
        for name, value in {
            "ENDPOINT": self.url,
            "HUGGINGFACE_CO_URL_TEMPLATE": self.url + "/{repo_id}/resolve/{revision}/{filename}",
            "HF_HUB_OFFLINE": False,
            "HF_HUB_DISABLE_XET": disable_xet,
            "HF_HUB_DISABLE_TELEMETRY": True,
            "HF_HOME": home,
            "default_cache_path": hub_cache,
            "HUGGINGFACE_HUB_CACHE": hub_cache,
            "HF_HUB_CACHE": hub_cache,
            "default_assets_cache_path": assets,
            "HUGGINGFACE_ASSETS_CACHE": assets,
            "HF_ASSETS_CACHE": assets,
            "HF_TOKEN_PATH": os.path.join(home, "token"),
            "HF_STORED_TOKENS_PATH": os.path.join(home, "stored_tokens"),
            "default_xet_cache_path": os.path.join(home, "xet"),
            "HF_XET_CACHE": os.path.join(home, "xet"),
            "CHECK_FOR_UPDATE_DONE_PATH": os.path.join(home, ".check_for_update_done"),
            "CHECK_FOR_SKILL_UPDATE_DONE_PATH": os.path.join(home, ".check_for_skill_update_done"),
            "AGENT_HARNESSES_PATH": os.path.join(home, ".agent_harnesses.json"),
        }.items():
            if hasattr(hf_constants, name):
                attributes.append((hf_constants, name, value))
        # diffusers copies some constants at import (`from huggingface_hub.constants import HF_HUB_OFFLINE`).
        for module_name, module in list(sys.modules.items()):
            if module is None or not (module_name == "diffusers" or module_name.startswith("diffusers.")):
                continue
            if isinstance(getattr(module, "HF_HUB_OFFLINE", None), bool):
                attributes.append((module, "HF_HUB_OFFLINE", False))
            if isinstance(getattr(module, "HUGGINGFACE_CO_RESOLVE_ENDPOINT", None), str):
                attributes.append((module, "HUGGINGFACE_CO_RESOLVE_ENDPOINT", self.url))

        saved_env = {name: os.environ.get(name) for name in [*to_set, *to_unset]}
        saved_attributes = [(target, name, getattr(target, name)) for target, name, _ in attributes]
        hf_http.close_session()
        try:
            for name in to_unset:
                os.environ.pop(name, None)
            os.environ.update(to_set)
            for target, name, value in attributes:
                setattr(target, name, value)
            yield
        finally:
            hf_http.close_session()
            for target, name, value in reversed(saved_attributes):
                setattr(target, name, value)
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    # -------------------------------------------------------------------------------------------- internals

    def _new_repo(self, repo_type: str, repo_id: str, private: bool, creator: str) -> Repo:
        repo = Repo(repo_type, repo_id, private, creator, datetime.now(timezone.utc))
        initial = {".gitattributes": DEFAULT_GITATTRIBUTES} if self.gitattributes else {}
        self._store_commit(repo, "main", initial, "initial commit", "", creator, new_branch=True)
        self._repos[(repo_type, repo_id)] = repo
        return repo

    def _store_commit(
        self,
        repo: Repo,
        branch: str,
        files: Dict[str, bytes],
        title: str,
        description: str,
        author: str,
        *,
        new_branch: bool = False,
    ) -> Commit:
        parent = None if new_branch else repo.branches[branch]
        sha = hashlib.sha1(f"{repo.repo_id}\0{parent}\0{title}\0{uuid.uuid4()}".encode()).hexdigest()
        commit = Commit(
            sha, parent, MappingProxyType(dict(files)), title, description, author, datetime.now(timezone.utc)
        )
        repo.commit_log[sha] = commit
        repo.branches[branch] = sha
        return commit

    def _resolve(self, repo: Repo, revision: str) -> Commit:
        if revision in repo.branches:
            return repo.commit_log[repo.branches[revision]]
        if revision in repo.commit_log:
            return repo.commit_log[revision]
        raise _HttpError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")

    def _repo_url(self, repo: Repo) -> str:
        prefix = "" if repo.repo_type == "model" else f"{repo.repo_type}s/"
        return f"{self.url}/{prefix}{repo.repo_id}"

    def _caller(self, headers) -> Optional[_Token]:
        authorization = headers.get("Authorization")
        if authorization is None:
            return None
        scheme, _, token = authorization.partition(" ")
        known = self._tokens.get(token.strip()) if scheme.lower() == "bearer" else None
        if known is None:
            raise _HttpError(401, "Invalid credentials in Authorization header", header_message=True)
        return known

    def _readable(self, repo_type: str, repo_id: str, caller: Optional[_Token]) -> Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise _HttpError(404, "Repository not found", code="RepoNotFound", header_message=True)
        if repo.private and caller is None:
            raise _HttpError(401, "Repository not found", code="RepoNotFound", header_message=True)
        return repo

    @staticmethod
    def _require_write(caller: Optional[_Token]) -> _Token:
        if caller is None:
            raise _HttpError(401, "You must be authenticated to access this resource (Authorization: Bearer <token>)")
        if not caller.can_write:
            raise _HttpError(403, "This token has read access only", header_message=True)
        return caller

    def _writable(self, repo_type: str, repo_id: str, caller: Optional[_Token]) -> Repo:
        self._require_write(caller)
        return self._readable(repo_type, repo_id, caller)

    # ------------------------------------------------------------------------------------------------ routing

    def _route(self, method: str, raw_path: str, raw_query: str, headers, body: bytes):
        query = parse_qs(raw_query, keep_blank_values=True)
        segments = [unquote(segment) for segment in raw_path.split("/")[1:]]
        caller: Optional[_Token] = None
        try:
            caller = self._caller(headers)
            with self._lock:
                response = self._dispatch(method, segments, query, headers, body, caller)
        except _HttpError as err:
            payload = {"error": err.message, **err.extra}
            extra_headers = {}
            if err.code:
                extra_headers["X-Error-Code"] = err.code
            if err.header_message:
                extra_headers["X-Error-Message"] = err.message
            response = _Response.json(payload, err.status, extra_headers)
        if response is None:
            self.unhandled.append(f"{method} {raw_path}")
            response = _Response.json({"error": f"Stand-in hub has no route for {method} {raw_path}"}, 404)
        return response, (caller.user if caller else None)

    def _dispatch(self, method, segments, query, headers, body, caller) -> Optional[_Response]:
        if segments and segments[0] == "api":
            rest = segments[1:]
            if rest == ["whoami-v2"] and method == "GET":
                return self._whoami(caller)
            if rest == ["agent-harnesses"] and method == "GET":
                return _Response.json({"standardEnvVars": [], "harnesses": {}})
            if rest == ["repos", "create"] and method == "POST":
                return self._create_repo(_json(body), caller)
            if rest == ["repos", "delete"] and method == "DELETE":
                return self._delete_repo(_json(body), caller)
            if rest == ["validate-yaml"] and method == "POST":
                return self._validate_yaml(_json(body), headers)
            if len(rest) >= 3 and rest[0] in ("models", "datasets", "spaces"):
                return self._repo_api(
                    method, rest[0][:-1], f"{rest[1]}/{rest[2]}", rest[3:], query, headers, body, caller
                )
            return None
        if segments and segments[0] in ("datasets", "spaces"):
            repo_type, segments = segments[0][:-1], segments[1:]
        else:
            repo_type = "model"
        if len(segments) >= 5 and segments[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve_file(
                repo_type, f"{segments[0]}/{segments[1]}", segments[3], "/".join(segments[4:]), headers, caller
            )
        return None

    def _repo_api(self, method, repo_type, repo_id, tail, query, headers, body, caller) -> Optional[_Response]:
        blobs = _flag(query, "blobs")
        if not tail and method == "GET":
            repo = self._readable(repo_type, repo_id, caller)
            return self._info(repo, repo.head, blobs)
        action, args = tail[0], tail[1:]
        if action == "revision" and args and method == "GET":
            repo = self._readable(repo_type, repo_id, caller)
            return self._info(repo, self._resolve(repo, "/".join(args)), blobs)
        if action == "tree" and args and method == "GET":
            repo = self._readable(repo_type, repo_id, caller)
            commit = self._resolve(repo, args[0])
            return _Response.json(_tree(commit, "/".join(args[1:]), recursive=_flag(query, "recursive")))
        if action == "paths-info" and len(args) == 1 and method == "POST":
            repo = self._readable(repo_type, repo_id, caller)
            return _Response.json(_paths_info(self._resolve(repo, args[0]), _form_or_json_paths(headers, body)))
        if action == "refs" and not args and method == "GET":
            repo = self._readable(repo_type, repo_id, caller)
            branches = [
                {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha} for name, sha in repo.branches.items()
            ]
            return _Response.json({"branches": branches, "converts": [], "tags": [], "pullRequests": []})
        if action == "commits" and len(args) == 1 and method == "GET":
            repo = self._readable(repo_type, repo_id, caller)
            return _Response.json(self._history(repo, self._resolve(repo, args[0])))
        if action == "preupload" and len(args) == 1 and method == "POST":
            repo = self._writable(repo_type, repo_id, caller)
            return self._preupload(repo, args[0], query, _json(body))
        if action == "commit" and len(args) == 1 and method == "POST":
            repo = self._writable(repo_type, repo_id, caller)
            return self._commit(repo, args[0], query, body, caller)
        if action == "settings" and not args and method == "PUT":
            repo = self._writable(repo_type, repo_id, caller)
            settings = _json(body)
            if isinstance(settings.get("private"), bool):
                repo.private = settings["private"]
            if settings.get("visibility") in ("public", "private"):
                repo.private = settings["visibility"] == "private"
            return _Response.json({"private": repo.private})
        return None

    # ------------------------------------------------------------------------------------------------ handlers

    def _whoami(self, caller: Optional[_Token]) -> _Response:
        if caller is None:
            raise _HttpError(401, "Invalid credentials in Authorization header", header_message=True)
        role = "write" if caller.can_write else "read"
        return _Response.json(
            {
                "type": "user",
                "id": hashlib.sha1(caller.user.encode()).hexdigest()[:24],
                "name": caller.user,
                "fullname": caller.user,
                "email": None,
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "stand-in", "role": role}},
            }
        )

    def _create_repo(self, payload: Dict[str, Any], caller: Optional[_Token]) -> _Response:
        caller = self._require_write(caller)
        name = payload.get("name")
        namespace = payload.get("organization") or caller.user
        repo_type = payload.get("type") or "model"
        if repo_type not in REPO_TYPES:
            raise _HttpError(400, f"Invalid repo type: {repo_type}")
        if not isinstance(name, str) or not _REPO_NAME.match(name) or not _REPO_NAME.match(namespace):
            raise _HttpError(400, f"Invalid repo name: {namespace}/{name}")
        private = payload.get("private")
        if not isinstance(private, bool):
            private = payload.get("visibility") == "private"
        repo_id = f"{namespace}/{name}"
        existing = self._repos.get((repo_type, repo_id))
        if existing is not None:
            raise _HttpError(409, f"You already created this {repo_type} repo", url=self._repo_url(existing))
        sdk = payload.get("sdk")
        if repo_type == "space" and sdk not in SPACE_SDKS:  # the Hub refuses a Space without a known SDK
            raise _HttpError(400, f"Invalid Space SDK {sdk!r}: one of {list(SPACE_SDKS)} is required")
        repo = self._new_repo(repo_type, repo_id, private, caller.user)
        repo.sdk = sdk if repo_type == "space" else None
        return _Response.json({"url": self._repo_url(repo), "name": repo_id, "id": repo_id})

    def _delete_repo(self, payload: Dict[str, Any], caller: Optional[_Token]) -> _Response:
        caller = self._require_write(caller)
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or caller.user}/{payload.get('name')}"
        if self._repos.pop((repo_type, repo_id), None) is None:
            raise _HttpError(404, "Repository not found", code="RepoNotFound", header_message=True)
        return _Response.json({})

    def _validate_yaml(self, payload: Dict[str, Any], headers) -> _Response:
        content = payload.get("content")
        if not isinstance(content, str):
            raise _HttpError(400, '"content" must be a string')
        errors, warnings = validate_card_metadata(content)
        status = 400 if errors else 200
        accept = headers.get("Accept", "")
        if "text/plain" in accept and "json" not in accept:  # RepoCard.validate() asks for text/plain
            text = "\n".join(errors) if errors else "OK"
            return _Response(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})
        # HfApi._validate_yaml() (create_commit with a README.md) reads {"errors": [{message}], "warnings": [...]}.
        return _Response.json(
            {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]}, status
        )

    def _info(self, repo: Repo, commit: Commit, blobs: bool) -> _Response:
        siblings = []
        for path in sorted(commit.files):
            sibling: Dict[str, Any] = {"rfilename": path}
            if blobs:
                sibling.update(size=len(commit.files[path]), blobId=git_blob_sha1(commit.files[path]))
            siblings.append(sibling)
        card: Dict[str, Any] = {}
        readme = commit.files.get("README.md")
        if readme is not None:
            match = _YAML_BLOCK.search(readme.decode("utf-8", "replace"))
            with contextlib.suppress(yaml.YAMLError):
                loaded = yaml.safe_load(match.group(2)) if match else None
                card = loaded if isinstance(loaded, dict) else {}
        tags = list(card["tags"]) if _is_str_list(card.get("tags")) else []
        info: Dict[str, Any] = {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": commit.sha,
            "lastModified": _iso(commit.date),
            "createdAt": _iso(repo.created_at),
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": tags,
            "siblings": siblings,
        }
        if card:
            info["cardData"] = json.loads(json.dumps(card, default=str))
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
            for key in ("pipeline_tag", "library_name"):
                if isinstance(card.get(key), str):
                    info[key] = card[key]
        return _Response.json(info)

    def _history(self, repo: Repo, commit: Commit) -> List[Dict[str, Any]]:
        history = []
        current: Optional[Commit] = commit
        while current is not None:
            history.append(
                {
                    "id": current.sha,
                    "title": current.title,
                    "message": current.description,
                    "authors": [{"user": current.author}],
                    "date": _iso(current.date),
                }
            )
            current = repo.commit_log[current.parent] if current.parent else None
        return history

    def _preupload(self, repo: Repo, revision: str, query, payload: Dict[str, Any]) -> _Response:
        if _flag(query, "create_pr"):
            raise _HttpError(400, "The stand-in hub does not implement pull requests")
        commit = self._resolve(repo, revision)
        files = payload.get("files")
        if not isinstance(files, list):
            raise _HttpError(400, '"files" must be an array')
        answer = []
        for item in files:
            path = item.get("path") if isinstance(item, dict) else None
            if not isinstance(path, str):
                raise _HttpError(400, "each file needs a path")
            entry: Dict[str, Any] = {"path": path, "uploadMode": "regular", "shouldIgnore": False}
            if path in commit.files:  # lets the client drop unchanged files (it compares git blob ids)
                entry["oid"] = git_blob_sha1(commit.files[path])
            answer.append(entry)
        return _Response.json({"files": answer, "commitOid": commit.sha})

    def _commit(self, repo: Repo, branch: str, query, body: bytes, caller: _Token) -> _Response:
        if _flag(query, "create_pr"):
            raise _HttpError(400, "The stand-in hub does not implement pull requests")
        if branch not in repo.branches:
            if branch in repo.commit_log:
                raise _HttpError(400, "Commits must target a branch, not a commit sha")
            raise _HttpError(404, f"Invalid rev id: {branch}", code="RevisionNotFound")
        try:
            items = [json.loads(line) for line in body.decode("utf-8").splitlines() if line.strip()]
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _HttpError(400, f"Malformed NDJSON commit payload: {exc}") from exc
        if not items or not isinstance(items[0], dict) or items[0].get("key") != "header":
            raise _HttpError(400, "The first NDJSON line of a commit must be its header")
        header = items[0].get("value") or {}
        title = header.get("summary")
        if not isinstance(title, str) or not title:
            raise _HttpError(400, "A commit needs a summary")
        parent = header.get("parentCommit")
        if parent is not None and parent != repo.branches[branch]:
            raise _HttpError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.commit_log[repo.branches[branch]].files)
        touched_readme = False
        for item in items[1:]:
            key, value = (item.get("key"), item.get("value")) if isinstance(item, dict) else (None, None)
            if not isinstance(value, dict):
                raise _HttpError(400, f"Malformed commit operation: {item!r}")
            path = _check_path(value.get("path"))
            if key == "file":
                encoding = value.get("encoding", "base64")
                content = value.get("content")
                if not isinstance(content, str):
                    raise _HttpError(400, f"File {path}: missing content")
                try:
                    data = base64.b64decode(content, validate=True) if encoding == "base64" else content.encode()
                except binascii.Error as exc:
                    raise _HttpError(400, f"File {path}: invalid base64 content") from exc
                files[path] = data
                touched_readme = touched_readme or path == "README.md"
            elif key == "lfsFile":
                oid = value.get("oid")
                matches = [
                    d
                    for c in repo.commit_log.values()
                    for d in c.files.values()
                    if hashlib.sha256(d).hexdigest() == oid
                ]
                if not matches:
                    raise _HttpError(
                        400,
                        f"File {path}: unknown LFS object {oid} (the stand-in stores no LFS/Xet "
                        "uploads; its preupload answers 'regular' for every file)",
                    )
                files[path] = matches[0]
            elif key == "deletedFile":
                if path not in files:
                    raise _HttpError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                del files[path]
            elif key == "deletedFolder":
                doomed = [name for name in files if name.startswith(path.rstrip("/") + "/")]
                if not doomed:
                    raise _HttpError(404, f"A folder with this name doesn't exist: {path}", code="EntryNotFound")
                for name in doomed:
                    del files[name]
            else:
                raise _HttpError(400, f"Unknown commit operation {key!r}")
        if touched_readme:  # the Hub refuses commits whose README.md metadata is invalid
            errors, _ = validate_card_metadata(files["README.md"].decode("utf-8", "replace"))
            if errors:
                raise _HttpError(400, "Invalid metadata in README.md.\n" + "\n".join(f"- {e}" for e in errors))
        commit = self._store_commit(repo, branch, files, title, header.get("description") or "", caller.user)
        return _Response.json(
            {
                "success": True,
                "commitOid": commit.sha,
                "commitUrl": f"{self._repo_url(repo)}/commit/{commit.sha}",
                "hookOutput": "",
                "pullRequestUrl": None,
            }
        )

    def _resolve_file(self, repo_type, repo_id, revision, path, headers, caller) -> _Response:
        repo = self._readable(repo_type, repo_id, caller)
        commit = self._resolve(repo, revision)
        if path not in commit.files:
            raise _HttpError(404, f"Entry not found: {path}", code="EntryNotFound", header_message=True)
        data = commit.files[path]
        response_headers = {
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{git_blob_sha1(data)}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
        }
        range_header = headers.get("Range")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", range_header.strip()) if range_header else None
        if match:
            start = int(match.group(1))
            end = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
            if start >= len(data) or start > end:
                return _Response(416, b"", {**response_headers, "Content-Range": f"bytes */{len(data)}"})
            response_headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return _Response(206, data[start : end + 1], response_headers)
        return _Response(200, data, response_headers)


# ------------------------------------------------------------------------------------------------- helpers


def _json(body: bytes) -> Dict[str, Any]:
    try:
        payload = json.loads(body.decode("utf-8") or "{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _HttpError(400, f"Malformed JSON body: {exc}") from exc
    if not isinstance(payload, dict):
        raise _HttpError(400, "The JSON body must be an object")
    return payload


def _flag(query: Mapping[str, List[str]], name: str) -> bool:
    values = query.get(name) or query.get(f"{name}[]") or []
    return any(value.lower() in ("1", "true", "yes") for value in values)


def _check_path(path: Any) -> str:
    if not isinstance(path, str) or not path or path.startswith("/") or "\\" in path:
        raise _HttpError(400, f"Invalid path in repo: {path!r}")
    if any(part in ("", ".", "..") for part in path.rstrip("/").split("/")):
        raise _HttpError(400, f"Invalid path in repo: {path!r}")
    return path


def _folder_oid(files: Mapping[str, bytes], folder: str) -> str:
    prefix = folder + "/"
    listing = "\n".join(
        f"{path} {git_blob_sha1(data)}" for path, data in sorted(files.items()) if path.startswith(prefix)
    )
    return hashlib.sha1(f"tree {folder}\n{listing}".encode()).hexdigest()


def _file_entry(files: Mapping[str, bytes], path: str) -> Dict[str, Any]:
    return {"type": "file", "oid": git_blob_sha1(files[path]), "size": len(files[path]), "path": path}


def _folder_entry(files: Mapping[str, bytes], path: str) -> Dict[str, Any]:
    return {"type": "directory", "oid": _folder_oid(files, path), "size": 0, "path": path}


def _tree(commit: Commit, path: str, *, recursive: bool) -> List[Dict[str, Any]]:
    path = path.strip("/")
    prefix = f"{path}/" if path else ""
    below = [name for name in commit.files if name.startswith(prefix)]
    if path and not below:
        raise _HttpError(404, f"Entry not found: {path}", code="EntryNotFound", header_message=True)
    entries: Dict[str, Dict[str, Any]] = {}
    for name in below:
        parts = name[len(prefix) :].split("/")
        if recursive:
            for depth in range(1, len(parts)):
                folder = prefix + "/".join(parts[:depth])
                entries.setdefault(folder, _folder_entry(commit.files, folder))
            entries[name] = _file_entry(commit.files, name)
        elif len(parts) == 1:
            entries[name] = _file_entry(commit.files, name)
        else:
            folder = prefix + parts[0]
            entries.setdefault(folder, _folder_entry(commit.files, folder))
    return [entries[key] for key in sorted(entries)]


def _form_or_json_paths(headers, body: bytes) -> List[str]:
    if "json" in headers.get("Content-Type", ""):
        paths = _json(body).get("paths") or []
        return [paths] if isinstance(paths, str) else list(paths)
    return parse_qs(body.decode("utf-8"), keep_blank_values=True).get("paths", [])


def _paths_info(commit: Commit, paths: List[str]) -> List[Dict[str, Any]]:
    answer = []
    for raw in paths:
        path = raw.strip("/")
        if path in commit.files:
            answer.append(_file_entry(commit.files, path))
        elif path and any(name.startswith(path + "/") for name in commit.files):
            answer.append(_folder_entry(commit.files, path))
    return answer


@contextlib.contextmanager
def running_stand_in(token: str = DEFAULT_TOKEN, **kwargs: Any) -> Iterator[StandInHub]:
    """``with running_stand_in() as hub:`` a started ``StandInHub`` (kwargs go to its constructor), stopped after."""
    hub = StandInHub(token, **kwargs)
    hub.start()
    try:
        yield hub
    finally:
        hub.stop()
