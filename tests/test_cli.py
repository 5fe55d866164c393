"""The ``ncsn-sample`` command (the README's main job until the demo exists)."""

import subprocess
import sys

import PIL.Image
import pytest

from ncsn_pipeline.builtin import builtin_pipeline
from ncsn_pipeline.cli_sample import main


def test_toy_plot_reports_recovered_mode_weights(tmp_path, capsys):
    output = tmp_path / "toy.png"
    assert main(["--model", "ncsn-toy", "--batch_size", "500", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "True mode weights [0.2, 0.8]" in printed and "1000 model calls" in printed
    with PIL.Image.open(output) as image:
        assert image.format == "PNG" and image.width > image.height > 100
    assert [path.name for path in tmp_path.iterdir()] == ["toy.png"]  # no temporary file left behind
    assert output.stat().st_mode & 0o044 == 0o044  # readable by others, like any plainly written file


def test_image_grid_from_a_saved_pipeline_folder(tmp_path, capsys):
    folder = tmp_path / "glyphs"
    builtin_pipeline("glyph-mixture").save_pretrained(folder)
    output = tmp_path / "out" / "grid.png"
    argv = ["--model", str(folder), "--batch_size", "6", "--num_inference_steps", "4", "--steps_per_level", "2"]
    assert main([*argv, "--output", str(output)]) == 0
    assert "Wrote 6 samples" in capsys.readouterr().out
    with PIL.Image.open(output) as image:
        assert image.size == (3 * 68, 2 * 68)  # 6 images -> 3 columns x 2 rows, upscaled to 64 px + 2 px frame


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "no-such-model"], "--model 'no-such-model' is neither a built-in model"),
        (["--output", "samples.jpg"], "--output must name a .png file, got 'samples.jpg'"),
        (["--batch_size", "0"], "expected an integer >= 1, got '0'"),
        (["--steps_per_level", "x"], "expected an integer >= 1, got 'x'"),
    ],
)
def test_bad_arguments_exit_with_a_message(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


def test_console_script_help():
    result = subprocess.run(
        [sys.executable, "-m", "ncsn_pipeline.cli_sample", "--help"], capture_output=True, text=True, check=True
    )
    assert "--num_inference_steps" in result.stdout and "glyph-mixture" in result.stdout
