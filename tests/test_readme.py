"""The README's quick start runs as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_quick_start_runs(tmp_path, monkeypatch, capsys):
    # ```python blocks must run offline as written; ```py blocks show Hub calls that need a real repository.
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "the README has no python quick start"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})
    assert (tmp_path / "my-ncsn" / "model_index.json").exists()
    assert 0.75 < float(capsys.readouterr().out.strip().splitlines()[0]) < 0.85


def test_readme_starts_with_the_two_commands():
    commands = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert "app.py" in commands[0] and "pytest" in commands[1]


def test_the_readme_is_short_and_its_links_into_the_docs_exist():
    """The README is the front page (at most 200 lines); the rest lives in docs/, whose pages it links."""
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 200
    links = re.findall(r"\]\((docs/[^)#]+)", text)
    assert len(links) >= 10 and all((README.parent / link).is_file() for link in links), links


def _third_party_imports(start_modules):
    """Top-level names of the non-package, non-standard-library modules that ``start_modules`` (files) import,
    following the package's own imports (lazy ones included: a tab imports what it needs when it runs)."""
    import ast
    import sys

    import ncsn_pipeline

    root = Path(ncsn_pipeline.__file__).parent
    seen, found, queue = set(), set(), list(start_modules)
    while queue:
        path = queue.pop()
        if path in seen:
            continue
        seen.add(path)
        package = path.parent
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.parent
                parts = (node.module or "").split(".") if node.module else []
                target = base.joinpath(*parts)
                candidates = [target.with_suffix(".py"), target / "__init__.py"]
                candidates += [(target / alias.name).with_suffix(".py") for alias in node.names]
                candidates += [target / alias.name / "__init__.py" for alias in node.names]
                queue += [candidate for candidate in candidates if candidate.is_file()]
                continue
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top == "ncsn_pipeline":
                    target = root.joinpath(*name.split(".")[1:])
                    for candidate in (target.with_suffix(".py"), target / "__init__.py"):
                        if candidate.is_file():
                            queue.append(candidate)
                elif top not in sys.stdlib_module_names and top != "__future__":
                    found.add(top)
    return found


def _distributions_of(requirement_names):
    """The installed distributions ``requirement_names`` bring, transitively (normalised names)."""
    import re as regex
    from importlib import metadata

    def normal(name):
        return regex.sub(r"[-_.]+", "-", name).lower()

    closure, queue = set(), [normal(name) for name in requirement_names]
    while queue:
        name = queue.pop()
        if name in closure:
            continue
        closure.add(name)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requirements:
            if "extra ==" in requirement:
                continue
            queue.append(normal(regex.split(r"[ ;<>=!~\[(]", requirement, maxsplit=1)[0]))
    return closure


def test_the_first_commands_extra_provides_every_module_the_demo_imports():
    """Defect guarded: `pip install -e ".[demo]"` (the README's first command) left the Inpainting tab without
    scikit-learn. Every third-party module the demo can import (its tabs' lazy imports included) must come from the
    package's own requirements plus the extra that command installs."""
    import ast
    from importlib import metadata

    first = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)[0]
    extra = re.search(r'pip install -e "\.\[(\w+)\]"', first).group(1)
    setup = ast.parse((README.parent / "setup.py").read_text(encoding="utf-8"))
    values = {}
    for node in ast.walk(setup):
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                pass
        if isinstance(node, ast.keyword) and node.arg == "install_requires":
            values["install_requires"] = ast.literal_eval(node.value)
    extra_requirements = {"demo": values["DEMO_REQUIRES"], "dev": None}[extra]
    names = [re.split(r"[ ;<>=!~\[]", item, maxsplit=1)[0] for item in values["install_requires"] + extra_requirements]
    provided = _distributions_of(names)
    import ncsn_pipeline

    demo_files = [Path(ncsn_pipeline.__file__).parent / "demo" / "__init__.py", README.parent / "app.py"]
    demo_files += sorted((Path(ncsn_pipeline.__file__).parent / "demo").glob("*.py"))
    modules = _third_party_imports(demo_files)
    by_module = metadata.packages_distributions()
    missing = {
        module: by_module.get(module)
        for module in modules
        if not any(re.sub(r"[-_.]+", "-", dist).lower() in provided for dist in by_module.get(module, []))
    }
    assert missing == {}, f'modules the demo imports that ".[{extra}]" does not install: {missing}'
    # diffusers loads models with low_cpu_mem_usage only where accelerate is installed, and says so on every load
    # ("Cannot initialize model with low cpu memory usage because `accelerate` was not found") without it.
    assert "accelerate" in provided
