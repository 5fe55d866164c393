"""Hub layout of a pushed pipeline: self-contained code files that plain diffusers can load."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from ncsn_pipeline import DPMSolverPlusPlusScheduler, NCSNPipeline, NCSNScheduler, NCSNScoreModel, score_schedulers
from ncsn_pipeline.cli.export import main as export_main
from ncsn_pipeline.cli.push import main as push_main
from ncsn_pipeline.hub import UPLOAD_PATTERNS, export_for_hub
from ncsn_pipeline.pretrained import pretrained_path

# Loads a folder with plain diffusers while ncsn_pipeline cannot be imported: proves the code files are enough.
PLAIN_DIFFUSERS = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "ncsn_pipeline" or name.startswith("ncsn_pipeline."):
            raise ImportError("ncsn_pipeline is blocked in this test")
sys.meta_path.insert(0, Block())
import numpy as np, torch
from diffusers import DiffusionPipeline
pipe = DiffusionPipeline.from_pretrained(sys.argv[1], trust_remote_code=True)
pipe.set_progress_bar_config(disable=True)
out = pipe(batch_size=3, generator=torch.Generator().manual_seed(5), num_inference_steps=3,
           output_type="np").images
np.save(sys.argv[2], out)
print(type(pipe).__name__, type(pipe.unet).__name__, type(pipe.scheduler).__name__)
"""


def _tiny_pipeline(tmp_path, sampler="NCSNScheduler"):
    torch.manual_seed(0)
    scheduler = NCSNScheduler(sigma_max=3.0, sigma_min=0.01, num_noise_levels=6, steps_per_level=2, step_lr=1e-5)
    pipe = NCSNPipeline(
        NCSNScoreModel(in_channels=1, sample_size=8, ngf=4),
        score_schedulers()[sampler].from_config(scheduler.config),
        data_range=(0, 1),
    )
    pipe.set_progress_bar_config(disable=True)
    folder = tmp_path / "saved"
    pipe.save_pretrained(folder)
    (folder / "checkpoint-10").mkdir()  # must never be exported
    (folder / "checkpoint-10" / "optimizer.bin").write_bytes(b"x")
    (folder / "logs").mkdir()
    (folder / "logs" / "loss.jsonl").write_text("{}\n")
    return pipe, folder


def _sample(pipe):
    pipe.set_progress_bar_config(disable=True)
    kwargs = dict(batch_size=3, num_inference_steps=3, output_type="np")
    return pipe(generator=torch.Generator().manual_seed(5), **kwargs).images


def test_export_holds_only_repository_files_and_a_rewritten_index(tmp_path):
    _, folder = _tiny_pipeline(tmp_path)
    export = export_for_hub(folder, tmp_path / "export", repo_id="someone/tiny", pipeline_class=NCSNPipeline)
    files = sorted(p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file())
    assert files == [
        "README.md", "model_index.json", "pipeline_ncsn.py", "scheduler/scheduler_config.json",
        "scheduler/scheduling_ncsn.py", "unet/config.json", "unet/diffusion_pytorch_model.safetensors",
        "unet/modeling_ncsn.py",
    ]  # fmt: skip
    index = json.loads((export / "model_index.json").read_text())
    assert index["_class_name"] == ["pipeline_ncsn", "NCSNPipeline"]
    assert index["unet"] == ["modeling_ncsn", "NCSNScoreModel"]
    assert index["scheduler"] == ["scheduling_ncsn", "NCSNScheduler"]
    for code in export.rglob("*.py"):
        source = code.read_text()
        assert "from ." not in source and "import ncsn_pipeline" not in source.split("def ")[0]
        compile(source, str(code), "exec")
    assert "someone/tiny" in (export / "README.md").read_text()
    with pytest.raises(FileExistsError):
        export_for_hub(folder, export, pipeline_class=NCSNPipeline)


def _write_standalone(how, pipe, folder, target):
    if how == "export_for_hub":
        return export_for_hub(folder, target, pipeline_class=NCSNPipeline)
    if how == "save_pretrained":
        pipe.save_pretrained(target, standalone=True)
        return target
    assert export_main([str(folder), str(target)]) == 0
    return target


@pytest.mark.parametrize(
    "sampler",
    # The package's default sampler in the fast tier (a fresh interpreter each, ~7 s), the others in the slow tier.
    [
        name if name == DPMSolverPlusPlusScheduler.__name__ else pytest.param(name, marks=pytest.mark.slow)
        for name in score_schedulers()
    ],
)
def test_plain_diffusers_loads_the_export_without_the_package(tmp_path, sampler):
    pipe, folder = _tiny_pipeline(tmp_path, sampler)
    export = _write_standalone("export_for_hub", pipe, folder, tmp_path / "export")
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_DIFFUSERS, str(export), str(tmp_path / "plain.npy")],
        capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                                                          "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["NCSNPipeline", "NCSNScoreModel", sampler]
    np.testing.assert_array_equal(np.load(tmp_path / "plain.npy"), _sample(pipe))
    assert "## Evaluation" in (export / "README.md").read_text()  # the model card comes with it


@pytest.mark.parametrize("sampler", list(score_schedulers()))
def test_every_way_to_export_writes_the_same_files(tmp_path, sampler):
    """`save_pretrained(standalone=True)` and `ncsn-export` write byte for byte what `export_for_hub` writes (into a
    folder of the same name: the card names it), so the fresh-interpreter test above covers all three ways."""
    pipe, folder = _tiny_pipeline(tmp_path, sampler)
    written = {}
    for how in ("export_for_hub", "save_pretrained", "ncsn-export"):
        export = _write_standalone(how, pipe, folder, tmp_path / how / "export")
        written[how] = {p.relative_to(export).as_posix(): p.read_bytes() for p in export.rglob("*") if p.is_file()}
    assert "unet/diffusion_pytorch_model.safetensors" in written["export_for_hub"]
    for how in ("save_pretrained", "ncsn-export"):
        assert sorted(written[how]) == sorted(written["export_for_hub"]), how
        differing = [name for name in written[how] if written[how][name] != written["export_for_hub"][name]]
        assert not differing, (how, differing)


def test_standalone_targets_must_be_new_and_bad_sources_leave_nothing(tmp_path, capsys):
    pipe, folder = _tiny_pipeline(tmp_path)
    with pytest.raises(FileExistsError, match="already exists"):
        pipe.save_pretrained(folder, standalone=True)
    assert export_main(["no-such-model", str(tmp_path / "out")]) == 2
    assert "'no-such-model' is neither a named model" in capsys.readouterr().err
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"broken")
    assert export_main([str(folder), str(tmp_path / "out")]) == 2
    assert "truncated or corrupted" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_ncsn_export_writes_a_named_model(tmp_path, capsys):
    assert export_main(["glyph-mixture", str(tmp_path / "glyphs")]) == 0
    assert "trust_remote_code=True" in capsys.readouterr().out
    index = json.loads((tmp_path / "glyphs" / "model_index.json").read_text())
    assert index["unet"] == ["modeling_toy", "GaussianMixtureScore"] and index["_class_name"][0] == "pipeline_ncsn"


def test_the_package_loads_the_export_with_its_own_classes(tmp_path):
    pipe, folder = _tiny_pipeline(tmp_path)
    export = export_for_hub(folder, tmp_path / "export", pipeline_class=NCSNPipeline)
    (export / "pipeline_ncsn.py").write_text("raise RuntimeError('repository code must not run')\n")
    loaded = NCSNPipeline.from_pretrained(export)
    assert type(loaded.unet) is NCSNScoreModel and loaded.config.data_range == [0.0, 1.0]
    np.testing.assert_array_equal(_sample(loaded), _sample(pipe))


def test_bundled_toy_model_exports_with_its_mlp(tmp_path):
    export = export_for_hub(pretrained_path("ncsn-two-gaussians"), tmp_path / "export", pipeline_class=NCSNPipeline)
    assert (export / "unet" / "modeling_toy.py").is_file()
    assert not (export / "training_args.json").exists() and (export / "sample_grid.png").exists()
    assert all(
        any(__import__("fnmatch").fnmatch(p.relative_to(export).as_posix(), pattern) for pattern in UPLOAD_PATTERNS)
        for p in export.rglob("*")
        if p.is_file()
    )


def test_push_requires_an_explicit_visibility(capsys):
    with pytest.raises(SystemExit) as exit_info:
        push_main(["folder", "user/repo"])
    assert exit_info.value.code == 2
    assert "one of the arguments --private --public is required" in capsys.readouterr().err


def test_push_without_a_token_fails_before_touching_anything(tmp_path, monkeypatch, capsys):
    _, folder = _tiny_pipeline(tmp_path)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-home"))
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    assert push_main([str(folder), "user/repo", "--private"]) == 2
    assert "No Hugging Face token" in capsys.readouterr().err


PLAIN_DIFFUSERS_CLASSES = PLAIN_DIFFUSERS.replace('output_type="np")', 'output_type="np", class_labels=[0, 3, 7])')


def test_a_class_conditional_model_exports_with_classes_in_its_card_and_code(tmp_path):
    torch.manual_seed(0)
    scheduler = NCSNScheduler(sigma_max=3.0, sigma_min=0.01, num_noise_levels=6, steps_per_level=2, step_lr=1e-5)
    model = NCSNScoreModel(in_channels=1, sample_size=8, ngf=4, num_class_embeds=10)
    for name, parameter in model.named_parameters():
        if "class_scale_shift" in name:
            torch.nn.init.normal_(parameter, std=0.5)
    pipe = NCSNPipeline(model, scheduler, data_range=(0, 1))
    pipe.save_pretrained(tmp_path / "saved")
    export = export_for_hub(
        tmp_path / "saved", tmp_path / "export", repo_id="someone/classes", pipeline_class=NCSNPipeline
    )
    card = (export / "README.md").read_text()
    assert "class-conditional" in card and "class_labels=0" in card and "| Classes | 0 to 9 |" in card
    assert 'NCSNInpaintPipeline.from_pretrained("someone/classes")' in card
    # The card's image-to-image example runs as written (on the exported folder in place of the Hub id).
    block = next(code for code in re.findall(r"```python\n(.*?)```", card, flags=re.S) if "NCSNImg2ImgPipeline" in code)
    scope = {"torch": torch, "image": torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))}
    exec(block.replace('"someone/classes"', repr(str(export))), scope)  # noqa: S102 - the card's own example
    assert len(scope["edited"]) == 4 and scope["edited"][0].size == (8, 8)
    result = subprocess.run(
        [sys.executable, "-c", PLAIN_DIFFUSERS_CLASSES, str(export), str(tmp_path / "plain.npy")],
        capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin",
                                                          "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(batch_size=3, num_inference_steps=3, output_type="np", class_labels=[0, 3, 7],
                    generator=torch.Generator().manual_seed(5)).images  # fmt: skip
    np.testing.assert_array_equal(np.load(tmp_path / "plain.npy"), expected)


def test_each_exported_file_declares_exactly_the_modules_it_needs():
    """`EXPORTED_MODULES` is the declared list of what each exported code file carries: every module-level
    relative import of the listed modules, transitively, dependencies first, and nothing else (a module a file needs
    but lacks would fail in a repository without the package; this fails here first)."""
    from ncsn_pipeline.hub.export import EXPORTED_MODULES, component_classes, module_imports

    exported = {cls.__module__.rsplit(".", 1)[-1] for cls in component_classes().values()}
    assert exported | {"pipeline_ncsn"} == set(EXPORTED_MODULES)
    for name, listed in EXPORTED_MODULES.items():
        needed, queue = set(), [name]
        while queue:
            current = queue.pop()
            for imported in module_imports(current):
                if imported not in needed:
                    needed.add(imported)
                    queue.append(imported)
        assert set(listed) == needed | {name} and listed[-1] == name, (name, sorted(needed))
        for position, module in enumerate(listed):  # each module after the modules it imports
            assert set(module_imports(module)) <= set(listed[:position]), (name, module)


def test_a_module_outside_the_declared_list_is_not_exported():
    import ncsn_pipeline.losses
    from ncsn_pipeline.hub import HubError
    from ncsn_pipeline.hub.export import standalone_source

    with pytest.raises(HubError, match=r"ncsn_pipeline.losses cannot be exported: it has no entry in EXPORTED_MODULES"):
        standalone_source(ncsn_pipeline.losses)
