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
