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


def test_the_conversion_example_runs_as_written(tmp_path, monkeypatch):
    """The README's ``ncsn-convert`` line, run from the repository root (its paths are relative to it)."""
    import shlex
    import shutil

    from ncsn_pipeline import NCSNPipeline
    from ncsn_pipeline.cli import convert

    lines = re.findall(r"^ncsn-convert tests/data/\S+.*$", README.read_text(encoding="utf-8"), flags=re.M)
    assert len(lines) == 1, lines
    root = README.parent
    work = tmp_path / "checkout"
    (work / "tests" / "data").mkdir(parents=True)
    shutil.copytree(
        root / "tests" / "data" / "reference-checkpoints", work / "tests" / "data" / "reference-checkpoints"
    )
    monkeypatch.chdir(work)
    arguments = shlex.split(lines[0])[1:]
    assert convert.main(arguments) == 0
    output = arguments[arguments.index("--output_dir") + 1]
    assert NCSNPipeline.from_pretrained(output).scheduler.config.num_train_noise_levels == 232
