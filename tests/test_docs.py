"""The documentation site (``docs/``, ``mkdocs.yml``): it builds with warnings as errors, its navigation holds every
page, the API reference lists every public name, and every code block on every page runs as written or says why it
cannot (an HTML comment right above it: ``<!-- not run: REASON -->``, or ``<!-- run: tests/test_docs.py ... -->``
for shell commands this file runs line by line)."""

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", flags=re.S | re.M)
RUN_MARKER = "<!-- run: tests/test_docs.py"


def _blocks(page: Path):
    """``(language, code, marker)`` of each fenced block: marker is the HTML comment on the line above, or ''."""
    text = page.read_text(encoding="utf-8")
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        marker = before[-1].strip() if before and before[-1].strip().startswith("<!--") else ""
        yield match.group(1), match.group(2), marker


def _console_scripts():
    text = (ROOT / "setup.py").read_text(encoding="utf-8")
    return dict(re.findall(r'"([\w-]+)=([\w.]+):main"', text))


def test_every_block_runs_or_says_why_not():
    unmarked = [
        f"{page.name}: ```{language} {code.splitlines()[0][:60]!r}"
        for page in PAGES
        for language, code, marker in _blocks(page)
        if language != "python" and not (marker.startswith("<!-- not run: ") or marker.startswith(RUN_MARKER))
    ]
    assert unmarked == [], "code blocks that neither run in the tests nor say why not"


@pytest.mark.parametrize(
    "page",
    [page for page in PAGES if any(language == "python" for language, _, _ in _blocks(page))],
    ids=lambda page: page.name,
)
def test_the_python_examples_of_a_page_run_as_written(page, tmp_path, monkeypatch, capsys):
    """The page's ```python blocks, in order, in one namespace (a later block may use an earlier one's names), in an
    empty working folder, offline."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    namespace = {"__name__": f"__docs_{page.stem}__"}
    for language, code, _ in _blocks(page):
        if language == "python":
            exec(compile(code, str(page), "exec"), namespace)


def test_the_shell_examples_marked_to_run_run_as_written(tmp_path, monkeypatch):
    """Each command of a block marked ``<!-- run: tests/test_docs.py ... -->``, through its console script's
    ``main``, in a working folder where the repository's ``tests/`` is at hand (the examples use its fixtures)."""
    import importlib

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (tmp_path / "tests").symlink_to(ROOT / "tests")
    scripts, ran = _console_scripts(), []
    for page in PAGES:
        for _, code, marker in _blocks(page):
            if not marker.startswith(RUN_MARKER):
                continue
            for line in code.splitlines():
                words = shlex.split(line, comments=True)
                if not words:
                    continue
                assert words[0] in scripts, f"{page.name}: {words[0]} is not a console script of the package"
                main = importlib.import_module(scripts[words[0]]).main
                assert main(words[1:]) == 0, f"{page.name}: {line}"
                ran.append(words[0])
    assert {"ncsn-convert", "ncsn-export"} <= set(ran)


def _nav_pages():
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    return re.findall(r"^\s+- [^:]+: (\S+\.md)$", text, flags=re.M)


def test_the_navigation_holds_every_page_once():
    assert sorted(_nav_pages()) == sorted(page.name for page in PAGES)


def test_the_site_builds_strict_and_its_api_reference_lists_every_public_name(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[docs]') builds the site")
    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1", "PATH": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    api = (site / "api" / "index.html").read_text(encoding="utf-8")
    import ncsn_pipeline
    import ncsn_pipeline.hub

    names = [*ncsn_pipeline.__all__, *ncsn_pipeline.hub.__all__, *_public_functions("pretrained/__init__.py")]
    missing = [name for name in names if not _documented(api, name)]
    assert missing == [], f"public names the API reference does not list: {missing}"


def _documented(html: str, name: str) -> bool:
    return re.search(rf'id="ncsn_pipeline(\.\w+)*\.{re.escape(name)}"', html) is not None


def _public_functions(relative: str):
    tree = ast.parse((ROOT / "src" / "ncsn_pipeline" / relative).read_text(encoding="utf-8"))
    return [node.name for node in tree.body if isinstance(node, ast.FunctionDef) and not node.name.startswith("_")]
