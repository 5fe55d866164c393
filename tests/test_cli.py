"""The ``ncsn-sample`` command (the README's main job until the demo exists)."""

import subprocess
import sys

import PIL.Image
import pytest

from ncsn_pipeline.cli.sample import main
from ncsn_pipeline.pretrained import load_pretrained


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
    load_pretrained("glyph-mixture").save_pretrained(folder)
    output = tmp_path / "out" / "grid.png"
    argv = ["--model", str(folder), "--batch_size", "6", "--num_inference_steps", "4"]
    argv += ["--sampler_option", "steps_per_level=2"]
    assert main([*argv, "--output", str(output)]) == 0
    assert "Wrote 6 samples" in capsys.readouterr().out
    with PIL.Image.open(output) as image:
        assert image.size == (3 * 68, 2 * 68)  # 6 images -> 3 columns x 2 rows, upscaled to 64 px + 2 px frame


def test_a_class_conditional_model_samples_one_class_or_every_class_in_turn(tmp_path, capsys):
    for extra in (["--class_label", "7"], []):
        output = tmp_path / f"digits{len(extra)}.png"
        argv = ["--model", "ncsn-digits-classes", "--batch_size", "4", "--num_inference_steps", "4", *extra]
        assert main([*argv, "--output", str(output)]) == 0
        assert output.is_file() and "Wrote 4 samples" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "no-such-model"], "'no-such-model' is neither a named model"),
        (["--sampler", "DDIMScheduler"], "--sampler 'DDIMScheduler' is not a sampler of the package; choose one of"),
        (["--sampler_option", "steps=3"], "NCSNScheduler has no option 'steps'; its options are ["),
        (["--sampler_option", "steps_per_level"], "expected KEY=VALUE such as steps_per_level=3"),
        (["--sampler_option", "steps_per_level=0"], "steps_per_level must be a whole number from 1 to 10000, got 0"),
        (["--num_inference", "3"], "unrecognized arguments: --num_inference"),
        (["--model", "someone/not-cached"], "Cannot download someone/not-cached: it is not in the Hugging Face cache"),
        (["--output", "samples.jpg"], "--output must name a .png file, got 'samples.jpg'"),
        (["--batch_size", "0"], "expected an integer >= 1, got '0'"),
        (["--num_inference_steps", "x"], "expected an integer >= 1, got 'x'"),
        (["--model", "ncsn-digits", "--class_label", "3"], "--class_label needs a class-conditional model"),
        (["--model", "ncsn-digits-classes", "--class_label", "10"], "class_labels must lie in [0, 9]"),
        (["--class_label", "-1"], "expected an integer >= 0, got '-1'"),
    ],
)
def test_bad_arguments_exit_with_a_message(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("ncsn_pipeline.cli.sample", ["--sampler", "--sampler_option", "glyph-mixture", "ncsn-digits"]),
        ("ncsn_pipeline.cli.push", ["--private", "--public"]),
        ("ncsn_pipeline.cli.export", ["trust_remote_code=True"]),
        ("ncsn_pipeline.train", ["--no_ema", "--hub_public"]),
        ("ncsn_pipeline.evaluation", ["--sampler", "--record"]),
    ],
)
def test_every_command_line_has_honest_help(module, expected):
    result = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True)
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert all(word in text for word in expected), text
    # A switch never claims "(default: True)": its help says what it turns on or off.
    assert "(default: True)" not in text and "(default: False)" not in text and "(default: None)" not in text


def test_negative_training_flags_say_what_they_turn_off():
    from ncsn_pipeline.training.cli import build_parser

    helps = {action.dest + ":" + action.option_strings[0]: action.help for action in build_parser()._actions}
    assert "default: keep and save the EMA" in helps["use_ema:--no_ema"]
    assert "default: dequantise" in helps["dequantize:--no_dequantize"]
    assert "default: with it" in helps["final_denoise:--no_final_denoise"]
    assert "no default" in helps["hub_private:--hub_public"]
    assert build_parser().parse_args(["--output_dir", "x", "--dataset_name", "digits"]).hub_private is None
