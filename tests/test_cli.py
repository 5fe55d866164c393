"""The ``ncsn-sample`` command (the README's main job until the demo exists)."""

import importlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import PIL.Image
import pytest

from helpers import png_declaring
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
        (["--model", "ncsn-digits", "--strength", "0.5"], "--strength sets how much of --image is noised away"),
        (["--model", "ncsn-digits", "--image", "missing.png"], "--image 'missing.png' is not a file"),
        (["--model", "ncsn-digits", "--image", "x.png", "--strength", "1.5"], "a number from 0 to 1, got '1.5'"),
    ],
)
def test_bad_arguments_exit_with_a_message(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


HELP_WORDS = {
    "ncsn-sample": ["--sampler", "--sampler_option", "glyph-mixture", "ncsn-digits", "--image", "--strength",
                    "--guidance_model"],
    "ncsn-push": ["--private", "--public"],
    "ncsn-export": ["trust_remote_code=True"],
    "ncsn-train": ["--no_ema", "--hub_public"],
    "ncsn-digits-eval": ["--sampler", "--record"],
    "ncsn-eval": ["--sampler", "--record", "--data"],
    "ncsn-train-classifier": ["--pipeline", "--output_dir"],
    "ncsn-convert": ["--config", "--weights"],
    "ncsn-tune-steps": ["--num_inference_steps", "--in_place", "--output_dir", "--make_default"],
    "ncsn-reconstruct-ema": ["--sigma_rel", "--at_step", "--evaluate", "--report", "sigma_rel"],
}


def _console_scripts():
    text = (Path(__file__).resolve().parents[1] / "setup.py").read_text(encoding="utf-8")
    return dict(re.findall(r'"([\w-]+)=([\w.]+):main"', text))


@pytest.mark.parametrize("command", sorted(HELP_WORDS))
def test_every_command_line_has_honest_help(command, capsys):
    """In-process (the commands' own ``main``, as the console scripts call it); one subprocess below checks the
    ``python -m`` forms."""
    module = importlib.import_module(_console_scripts()[command])
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert text.startswith(f"usage: {command}") and all(word in text for word in HELP_WORDS[command]), text
    # A switch never claims "(default: True)": its help says what it turns on or off.
    assert "(default: True)" not in text and "(default: False)" not in text and "(default: None)" not in text


def test_every_console_script_is_covered_by_the_help_test():
    assert set(_console_scripts()) == set(HELP_WORDS)


def test_the_module_forms_run_as_scripts():
    """``python -m ncsn_pipeline.train`` (what ``accelerate launch -m`` runs) and ``python -m
    ncsn_pipeline.cli.digits_eval`` (the module form of every console script lives in ``cli/``) answer --help: one
    interpreter runs both, as scripts."""
    script = (
        "import runpy, sys\n"
        "for module in ('ncsn_pipeline.train', 'ncsn_pipeline.cli.digits_eval'):\n"
        "    sys.argv = [module, '--help']\n"
        "    try:\n"
        "        runpy.run_module(module, run_name='__main__', alter_sys=True)\n"
        "    except SystemExit as stop:\n"
        "        assert stop.code == 0, (module, stop.code)\n"
        "    else:\n"
        "        raise AssertionError(module + ' did not exit')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert "usage: ncsn-train" in result.stdout and "usage: ncsn-digits-eval" in result.stdout


def test_help_loads_no_heavy_library():
    """``--help`` of every console script and of app.py imports only what the parser needs: no PyTorch, diffusers,
    accelerate, huggingface_hub or Gradio (they took ~5 s to import on 2 cores). One fresh interpreter per command,
    since a command that loaded them would hide the ones after it."""
    heavy = ("torch", "diffusers", "accelerate", "huggingface_hub", "gradio", "safetensors", "numpy")
    entry_points = [f"from {module} import main" for module in _console_scripts().values()]
    entry_points.append(f"sys.path.insert(0, {str(Path(__file__).parents[1])!r}); from app import main")
    for entry_point in entry_points:
        script = (
            f"import sys\n{entry_point}\n"
            "try:\n    main(['--help'])\nexcept SystemExit as stop:\n    assert stop.code == 0, stop.code\n"
            f"print(sorted(name for name in {heavy!r} if name in sys.modules))\n"
        )
        result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        assert result.stdout.splitlines()[-1] == "[]", (entry_point, result.stdout.splitlines()[-1])


def test_negative_training_flags_say_what_they_turn_off():
    from ncsn_pipeline.cli.train import build_parser

    helps = {action.dest + ":" + action.option_strings[0]: action.help for action in build_parser()._actions}
    assert "default: keep and save the EMA" in helps["use_ema:--no_ema"]
    assert "default: dequantise" in helps["dequantize:--no_dequantize"]
    assert "default: with it" in helps["final_denoise:--no_final_denoise"]
    assert "no default" in helps["hub_private:--hub_public"]
    assert build_parser().parse_args(["--output_dir", "x", "--dataset_name", "digits"]).hub_private is None


def test_ncsn_sample_applies_classifier_free_guidance_to_a_model_with_the_no_class_label(tmp_path, capsys):
    import torch

    from ncsn_pipeline import NCSNPipeline, NCSNScheduler, NCSNScoreModel

    torch.manual_seed(0)
    model = NCSNScoreModel(in_channels=1, sample_size=8, ngf=4, num_class_embeds=3, unconditional_class=True)
    folder = tmp_path / "guided"
    scheduler = NCSNScheduler(sigma_max=3.0, num_noise_levels=4, steps_per_level=1)
    NCSNPipeline(model, scheduler, data_range=(0, 1)).save_pretrained(folder)
    output = tmp_path / "twos.png"
    argv = ["--model", str(folder), "--class_label", "2", "--guidance_scale", "3", "--batch_size", "4"]
    assert main([*argv, "--output", str(output)]) == 0
    assert "classifier-free guidance (scale 3)" in capsys.readouterr().out and output.is_file()


def test_ncsn_sample_uses_the_bundled_classifier_guidance(tmp_path, capsys):
    """The API and the demo guide the digits model with the bundled classifier; the command can too."""
    output = tmp_path / "threes.png"
    arguments = ["--model", "ncsn-digits", "--classifier", "ncsn-digits-classifier", "--class_label", "3"]
    arguments += ["--guidance_scale", "2", "--batch_size", "4", "--num_inference_steps", "10", "--output", str(output)]
    assert main(arguments) == 0
    assert "guided by ncsn-digits-classifier (scale 2)" in capsys.readouterr().out and output.is_file()


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--model", "ncsn-digits", "--guidance_scale", "2"], "--guidance_scale weighs a classifier's gradient"),
        (["--model", "ncsn-digits", "--classifier", "no-such"], "--classifier 'no-such' is neither a bundled"),
        (["--model", "ncsn-toy", "--classifier", "ncsn-digits-classifier"], "--classifier guides image models"),
        (["--model", "ncsn-toy", "--guidance_model", "ncsn-toy"], "--guidance_model guides image models"),
        (["--model", "ncsn-digits", "--guidance_model", "ncsn-digits", "--classifier", "ncsn-digits-classifier"],
         "--guidance_model (autoguidance) and --classifier both use --guidance_scale"),
        (["--model", "ncsn-digits-classes", "--guidance_model", "ncsn-digits", "--guidance_scale", "2"],
         "guidance_model must be conditioned as the model is"),
    ],
)
def test_ncsn_sample_refuses_bad_guidance(arguments, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main([*arguments, "--output", str(tmp_path / "x.png")])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_ncsn_sample_autoguides_with_a_second_pipeline(tmp_path, capsys):
    """A model guided by itself is the model (s + (w - 1)(s - s) = s): the same image, at twice the network calls;
    guided by another model of the same data it differs."""
    common = ["--model", "ncsn-digits", "--batch_size", "4", "--num_inference_steps", "6"]
    assert main([*common, "--output", str(tmp_path / "plain.png")]) == 0
    assert main([*common, "--guidance_model", "ncsn-digits", "--guidance_scale", "2",
                 "--output", str(tmp_path / "self.png")]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "(6 model calls), autoguided by ncsn-digits (w 2; 2 network calls per model call)" in printed
    plain, itself = (np.asarray(PIL.Image.open(tmp_path / f"{name}.png")) for name in ("plain", "self"))
    assert np.abs(plain.astype(int) - itself.astype(int)).max() <= 1  # round-off of s + (s - s) at most one level
    # The guide the bundled model ships (NAME/guide), a weaker network of the same data: different samples.
    assert main([*common, "--guidance_model", "ncsn-digits/guide", "--guidance_scale", "2",
                 "--output", str(tmp_path / "guided.png")]) == 0  # fmt: skip
    assert "autoguided by ncsn-digits/guide (w 2" in capsys.readouterr().out
    guided = np.asarray(PIL.Image.open(tmp_path / "guided.png"))
    assert np.abs(plain.astype(int) - guided.astype(int)).max() > 16


def test_threads_are_set_by_the_commands(tmp_path):
    import torch

    try:
        assert (
            main(["--model", "ncsn-toy", "--batch_size", "10", "--threads", "2", "--output", str(tmp_path / "t.png")])
            == 0
        )
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_ncsn_eval_reports_its_progress(tmp_path, capsys):
    """Defect guarded: the card's own ncsn-eval command ran for most of an hour without a word."""
    from ncsn_pipeline.cli import evaluate

    output = tmp_path / "run.json"
    arguments = ["ncsn-digits", "--num_samples", "20", "--batch_size", "10", "--num_inference_steps", "5"]
    assert evaluate.main([*arguments, "--output", str(output)]) == 0
    err = capsys.readouterr().err
    assert "sampling: 10/20 samples" in err and "sampling: 20/20 samples" in err


def _write_picture(path, size=28, mode="L"):
    pixels = (np.arange(size * size).reshape(size, size) * 255 // (size * size - 1)).astype(np.uint8)
    picture = PIL.Image.fromarray(pixels)
    picture.convert(mode).save(path)
    return path


def test_ncsn_sample_edits_images_a_row_per_image(tmp_path, capsys):
    """SDEdit from the command line: each input (any size or mode, resized to the model's) in its row, then its
    edits; strength 0 gives the resized input back in every cell."""
    grey, colour = _write_picture(tmp_path / "grey.png"), _write_picture(tmp_path / "colour.png", 16, "RGB")
    output = tmp_path / "edits.png"
    argv = ["--model", "ncsn-digits", "--image", str(grey), str(colour), "--batch_size", "3", "--output", str(output)]
    assert main([*argv, "--strength", "0.4", "--num_inference_steps", "10"]) == 0
    out = capsys.readouterr().out
    assert "Wrote 3 edits of each of 2 image(s)" in out and "grey.png resized from 28x28" in out
    assert "colour.png resized from 16x16" in out and "strength 0.4, begun at sigma" in out
    grid = PIL.Image.open(output)
    assert grid.size == (4 * 68, 2 * 68)  # 4 columns (the input, 3 edits) x 2 rows, 64 px tiles in 2 px frames
    assert main([*argv, "--strength", "0"]) == 0
    cells = np.asarray(PIL.Image.open(output).convert("L"), dtype=np.int16)
    first_row = [cells[2:66, 2 + 68 * column : 66 + 68 * column] for column in range(4)]
    assert all(np.array_equal(cell, first_row[0]) for cell in first_row[1:])  # the input, unchanged
    assert "begun at" not in capsys.readouterr().out  # strength 0: no run


def test_an_edit_keeps_what_the_image_is_and_a_grid_says_when_classes_cycle(tmp_path, capsys):
    """A class-conditional model edits an image as the class it is given, or with its "no class" label; one without
    that label needs --class_label (the classes in turn would turn a shoe into a T-shirt, a trouser, ...). A plain
    grid of such a model says that its samples take the classes in turn."""
    shoe = _write_picture(tmp_path / "shoe.png")
    output = str(tmp_path / "e.png")
    edit = ["--image", str(shoe), "--batch_size", "2", "--num_inference_steps", "4", "--output", output]
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "ncsn-fashion", *edit])
    assert exit_info.value.code == 2
    assert "give --class_label, the class of the image (0 to 9)" in capsys.readouterr().err
    assert main(["--model", "ncsn-fashion", *edit, "--class_label", "9"]) == 0
    assert main(["--model", "ncsn-digits-classes", *edit]) == 0  # its "no class" label: no class is imposed
    grid = ["--batch_size", "4", "--num_inference_steps", "4", "--output", str(tmp_path / "g.png")]
    assert main(["--model", "ncsn-fashion", *grid]) == 0
    assert "one class per sample in turn (0 to 9)" in capsys.readouterr().out
    assert main(["--model", "ncsn-fashion", *grid, "--class_label", "3"]) == 0
    assert "in turn" not in capsys.readouterr().out


def test_ncsn_sample_reads_images_as_training_does_and_refuses_a_decompression_bomb(tmp_path, capsys):
    """One reader for training and --image: a 16-bit PNG is scaled (not clipped to white), transparency is
    composited over black, the EXIF orientation is applied; a header declaring 50000 x 50000 pixels is one line."""
    from ncsn_pipeline.cli.sample import _read_images

    fashion = load_pretrained("ncsn-fashion")  # 1 x 28 x 28
    ramp = (np.arange(28 * 28).reshape(28, 28) % 30 + 32) * 257  # 16-bit values of the 8-bit levels 32..61
    PIL.Image.fromarray(ramp.astype(np.uint16)).save(tmp_path / "deep.png")
    transparent = np.zeros((28, 28, 4), np.uint8)
    transparent[..., :3], transparent[:14, :, 3] = 200, 255  # the lower half transparent, over any colour
    PIL.Image.fromarray(transparent, "RGBA").save(tmp_path / "alpha.png")
    turned = PIL.Image.fromarray(np.tile(np.arange(28, dtype=np.uint8)[None] * 9, (28, 1)))  # brighter to the right
    exif = turned.getexif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    turned.save(tmp_path / "turned.jpg", exif=exif, quality=100)
    (deep, alpha, shown), _ = _read_images([str(tmp_path / name) for name in ("deep.png", "alpha.png", "turned.jpg")],
                                           fashion)  # fmt: skip
    assert np.array_equal(np.asarray(deep), ramp // 257)
    assert np.asarray(alpha)[:14].min() > 150 and np.asarray(alpha)[14:].max() == 0
    shown = np.asarray(shown, dtype=np.int16)
    assert shown[0, 14] < shown[27, 14]  # the ramp now runs down the image
    bomb, out = png_declaring(tmp_path / "bomb.png", 50_000, 50_000), tmp_path / "o.png"
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "ncsn-fashion", "--image", str(bomb), "--class_label", "1", "--output", str(out)])
    error = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and "Traceback" not in error and not out.exists()
    assert f"bomb.png declares more than {PIL.Image.MAX_IMAGE_PIXELS:,} pixels" in error.splitlines()[-1]


def test_ncsn_sample_refuses_a_file_that_is_not_an_image(tmp_path, capsys):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", "ncsn-digits", "--image", str(text), "--output", str(tmp_path / "x.png")])
    assert exit_info.value.code != 0 and "cannot identify image file" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_the_help_lists_the_samplers_without_importing_them():
    """``--help`` names every sampler, read from the sampler modules' source (`sampler_names`), which must be the
    package's samplers (`score_schedulers`), so the shared argument module loads no PyTorch (checked in a fresh
    interpreter)."""
    import subprocess
    import sys

    from ncsn_pipeline.arguments import sampler_names
    from ncsn_pipeline.scheduling_utils import score_schedulers

    assert sampler_names() == sorted(score_schedulers())
    check = "import sys, ncsn_pipeline.arguments; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, check=True).stdout == "False\n"
