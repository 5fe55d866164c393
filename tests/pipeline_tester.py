"""`PipelineTesterMixin`: the behaviours every pipeline of the package shares, tested once for all of them.

Modelled on diffusers' ``PipelineTesterMixin``: a pipeline's test class says how to build a small pipeline
(`get_pipeline`) and the inputs of a call (`get_inputs`); the mixin runs the common checks (callback, generator lists,
``return_dict``, save/load round trip, dtype and device, every sampler, bad input refused). A new pipeline gets them by
listing itself: a subclass of this mixin with ``pipeline_class`` set (`TESTED_PIPELINES` records it, and
``tests/test_pipelines_common.py`` checks that every pipeline the package exports has one).
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np
import pytest
import torch

from ncsn_pipeline import NCSNScheduler, NCSNScoreModel, score_schedulers

TESTED_PIPELINES: Dict[str, type] = {}

# A short run for every sampler: a few levels, one Langevin step per level.
FEW_LEVELS = 3


class PipelineTesterMixin:
    pipeline_class: type = None
    batch_size = 2

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.pipeline_class is not None:
            TESTED_PIPELINES[cls.pipeline_class.__name__] = cls

    # ---------------------------------------------------------------------------- what a pipeline test provides
    channels = 1

    def get_pipeline(self):
        """A small image pipeline: an untrained 8x8 RefineNet, annealed Langevin on 10 levels, 1 step each."""
        torch.manual_seed(0)
        model = NCSNScoreModel(in_channels=self.channels, sample_size=8, ngf=8)
        scheduler = NCSNScheduler(sigma_max=3.0, sigma_min=0.01, num_noise_levels=10, steps_per_level=1, step_lr=1e-5)
        pipe = self.pipeline_class(unet=model, scheduler=scheduler, data_range=(0, 1))
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def get_inputs(self, batch_size: int) -> Dict[str, Any]:
        """The pipeline-specific inputs of a call for ``batch_size`` samples (images, masks ...)."""
        return {"batch_size": batch_size}

    def _call(self, pipe, seed=0, **overrides):
        inputs = {
            **self.get_inputs(self.batch_size),
            "num_inference_steps": FEW_LEVELS,
            "generator": torch.Generator().manual_seed(seed),
            "output_type": "np",
        }
        inputs.update(overrides)
        return pipe(**inputs)

    # ---------------------------------------------------------------------------- the common checks
    def test_same_seed_same_output_and_other_seed_other_output(self):
        pipe = self.get_pipeline()
        first, again, other = (self._call(pipe, seed).images for seed in (0, 0, 1))
        assert np.array_equal(first, again) and not np.array_equal(first, other)

    def test_return_dict_false_gives_a_one_tuple_of_the_same_output(self):
        pipe = self.get_pipeline()
        as_dict = self._call(pipe).images
        as_tuple = self._call(pipe, return_dict=False)
        assert isinstance(as_tuple, tuple) and len(as_tuple) == 1 and np.array_equal(as_tuple[0], as_dict)

    def test_output_types_agree(self):
        pipe = self.get_pipeline()
        as_np = self._call(pipe).images
        as_pt = self._call(pipe, output_type="pt").images
        as_pil = self._call(pipe, output_type="pil").images
        assert as_np.shape[0] == self.batch_size and as_np.min() >= 0 and as_np.max() <= 1
        np.testing.assert_allclose(as_pt.permute(0, 2, 3, 1).numpy(), as_np, atol=1e-6)
        assert len(as_pil) == self.batch_size and as_pil[0].size == (as_np.shape[2], as_np.shape[1])

    def test_callback_is_called_after_every_step_and_may_replace_the_sample(self):
        pipe = self.get_pipeline()
        seen = []

        def callback(pipeline, index, sigma, tensors):
            seen.append((index, float(sigma)))
            assert set(tensors) == {"sample"} and tensors["sample"].shape[0] == self.batch_size
            return {"sample": torch.full_like(tensors["sample"], 0.5)}  # every step ends at mid-grey

        output = self._call(pipe, callback_on_step_end=callback).images
        assert [index for index, _ in seen] == list(range(pipe.scheduler.num_model_calls))
        assert [sigma for _, sigma in seen] == pytest.approx(pipe.scheduler.timesteps.tolist())
        assert np.allclose(output, 0.5, atol=1e-6) or self.keeps_known_pixels(output)

    def keeps_known_pixels(self, output) -> bool:
        """For pipelines that overwrite part of the output with the input (inpainting): that part is the input's."""
        return False

    def test_callback_tensor_inputs_are_checked(self):
        with pytest.raises(ValueError, match=r"callback_on_step_end_tensor_inputs may only name \['sample'\]"):
            self._call(self.get_pipeline(), callback_on_step_end_tensor_inputs=["latents"])

    def test_a_generator_per_sample_gives_the_rows_of_single_runs(self):
        pipe = self.get_pipeline()
        generators = [torch.Generator().manual_seed(seed) for seed in range(self.batch_size)]
        batched = self._call(pipe, generator=generators).images
        again = self._call(pipe, generator=[torch.Generator().manual_seed(s) for s in range(self.batch_size)]).images
        assert np.array_equal(batched, again) and np.isfinite(batched).all()
        with pytest.raises(ValueError, match=f"Got 1 generators for batch_size={self.batch_size}"):
            self._call(pipe, generator=[torch.Generator()])
        with pytest.raises(ValueError, match="generator must be a torch.Generator, a list of them"):
            self._call(pipe, generator=[torch.Generator(), 3])

    def test_save_and_load_round_trip_gives_identical_output(self, tmp_path):
        pipe = self.get_pipeline()
        expected = self._call(pipe).images
        pipe.save_pretrained(tmp_path / "saved")
        loaded = self.pipeline_class.from_pretrained(tmp_path / "saved")
        loaded.set_progress_bar_config(disable=True)
        assert type(loaded) is self.pipeline_class
        assert np.array_equal(self._call(loaded).images, expected)

    def test_float64_models_run_on_the_cpu(self):
        pipe = self.get_pipeline().to(dtype=torch.float64)
        output = self._call(pipe, output_type="pt").images
        assert pipe.device.type == "cpu" and output.device.type == "cpu" and torch.isfinite(output).all()

    @pytest.mark.parametrize("sampler", sorted(score_schedulers()))
    def test_every_sampler_runs(self, sampler):
        pipe = self.get_pipeline()
        pipe.scheduler = score_schedulers()[sampler].from_config(pipe.scheduler.config)
        output = self._call(pipe).images
        assert output.shape[0] == self.batch_size and np.isfinite(output).all()

    def test_a_compiled_network_is_traced_once_for_every_sampler(self):
        """Issue 23, item 3: ``pipe.unet = torch.compile(pipe.unet)`` traces the network once, as one graph, for
        runs of two lengths with every sampler: the sigma reaches it as a tensor (a float would be baked into the
        graph and retraced at every step) and its input checks do not break the graph. The graph is the eager
        network's (a backend that runs the traced graph as is gives the eager output). One compiled network serves
        all samplers, as a user switching samplers on one pipeline would have it."""
        import torch._dynamo

        pipe = self.get_pipeline()
        eager_network = pipe.unet
        traced = []

        def counting_backend(graph_module, example_inputs):
            traced.append(graph_module)
            return graph_module.forward

        torch._dynamo.reset()
        compiled_network = torch.compile(eager_network, backend=counting_backend, fullgraph=True)
        try:
            for sampler, scheduler_class in sorted(score_schedulers().items()):
                pipe.scheduler = scheduler_class.from_config(pipe.scheduler.config)
                for steps in (FEW_LEVELS, FEW_LEVELS + 2):
                    pipe.unet = eager_network
                    expected = self._call(pipe, num_inference_steps=steps).images
                    pipe.unet = compiled_network
                    output = self._call(pipe, num_inference_steps=steps).images
                    np.testing.assert_allclose(output, expected, atol=1e-6, err_msg=f"{sampler}, {steps} steps")
                    assert len(traced) == 1, f"{sampler}, {steps} steps: traced {len(traced)} times"
        finally:
            torch._dynamo.reset()

    @pytest.mark.parametrize("sampler", sorted(score_schedulers()))
    def test_a_bfloat16_pipeline_keeps_the_sample_in_bfloat16_for_every_sampler(self, sampler):
        """Issue 23, item 3: after ``pipe.to(torch.bfloat16)`` the network sees bfloat16 samples and every step
        returns one (no float32 or float64 leaks in from the sigmas or the sampler's state, which would double or
        quadruple the memory and leave the network to cast back); the images come out float32, as diffusers'."""
        pipe = self.get_pipeline().to(torch.bfloat16)
        pipe.scheduler = score_schedulers()[sampler].from_config(pipe.scheduler.config)
        network_inputs, step_samples = [], []
        hook = pipe.unet.register_forward_hook(
            lambda module, args, output: network_inputs.append((args[0].dtype, output.sample.dtype))
        )

        def record(pipeline, index, sigma, tensors):
            step_samples.append(tensors["sample"].dtype)

        try:
            output = self._call(pipe, output_type="pt", callback_on_step_end=record).images
        finally:
            hook.remove()
        assert len(network_inputs) == pipe.scheduler.num_model_calls
        assert set(network_inputs) == {(torch.bfloat16, torch.bfloat16)}
        assert step_samples == [torch.bfloat16] * pipe.scheduler.num_model_calls
        assert output.dtype == torch.float32 and torch.isfinite(output).all()

    @pytest.mark.parametrize(
        "overrides, message",
        [
            ({"output_type": "jpeg"}, "Unknown output_type .jpeg.; choose one of"),
            ({"num_inference_steps": 0}, "num_inference_steps"),
            ({"generator": 7}, "generator must be a torch.Generator"),
        ],
    )
    def test_bad_input_is_refused_before_any_work(self, overrides, message):
        pipe = self.get_pipeline()
        calls = []
        original = pipe.unet.forward
        pipe.unet.forward = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
        with pytest.raises(ValueError, match=message):
            self._call(pipe, **overrides)
        assert calls == []  # refused before the first network call

    def _refused_before_any_work(self, pipe, message, **inputs):
        calls = []
        original = pipe.unet.forward
        pipe.unet.forward = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
        with pytest.raises(ValueError, match=message):
            pipe(**inputs)
        assert calls == []  # refused before the first network call

    # The argument that sets the number of samples, and how the memory error names it.
    batch_argument, batch_name = "batch_size", "batch_size"

    def test_a_batch_beyond_the_machines_memory_is_refused_by_name(self):
        """Issue 21, item 11: batch_size=10**12 ended in the allocator's RuntimeError (256 GB requested); now a
        ValueError naming batch_size, the memory needed and the memory there is, before any allocation."""
        inputs = {**self.get_inputs(1), self.batch_argument: 10**12, "num_inference_steps": FEW_LEVELS}
        self._refused_before_any_work(
            self.get_pipeline(),
            rf"{self.batch_name}=1000000000000 needs \d+\.\d GiB for its samples alone, more than the",
            **inputs,
            output_type="np",
        )

    @pytest.mark.parametrize(
        "overrides, message",
        [
            ({"callback_on_step_end": 3}, "callback_on_step_end must be a function called as callback"),
            ({"return_dict": "no"}, "return_dict must be True or False, got 'no'"),
        ],
    )
    def test_callback_and_return_dict_are_checked_before_any_work(self, overrides, message):
        inputs = {**self.get_inputs(self.batch_size), "num_inference_steps": FEW_LEVELS, "output_type": "np"}
        self._refused_before_any_work(self.get_pipeline(), message, **inputs, **overrides)

    def test_a_callback_that_returns_something_else_than_a_dict_is_named(self):
        """It ended in ``AttributeError: 'list' object has no attribute 'get'`` after the first step."""
        message = r"callback_on_step_end must return a dict \(such as \{'sample': \.\.\.\}\) or None, got list"
        with pytest.raises(ValueError, match=message):
            self._call(self.get_pipeline(), callback_on_step_end=lambda *args: [1])

    def test_a_model_of_discrete_levels_refuses_the_adaptive_sampler_before_the_first_call(self):
        """Defect guarded: an NCSN v1 model (it knows only its training levels) with the adaptive sampler failed
        mid-run in inpainting instead of being refused before the first network call, as NCSNPipeline did."""
        from ncsn_pipeline import AdaptiveSDEScheduler, NCSNv1ScoreModel

        torch.manual_seed(0)
        model = NCSNv1ScoreModel(
            in_channels=self.channels, sample_size=8, ngf=8, num_noise_levels=4, sigma_max=1.0, sigma_min=0.1
        )
        pipe = self.pipeline_class(unet=model, scheduler=AdaptiveSDEScheduler(sigma_max=1.0, sigma_min=0.1))
        pipe.register_to_config(data_range=(0.0, 1.0))
        pipe.set_progress_bar_config(disable=True)
        calls = []
        original = pipe.unet.forward
        pipe.unet.forward = lambda *args, **kwargs: calls.append(1) or original(*args, **kwargs)
        with pytest.raises(ValueError, match="knows only its 4 training noise levels, but AdaptiveSDEScheduler"):
            self._call(pipe, num_inference_steps=None)
        assert calls == []

    def test_classifier_free_guidance_makes_one_call_on_the_doubled_batch_per_step(self):
        """Every pipeline guides a model with the "no class" label through the shared loop: the calls of an unguided
        run, each on the conditional and the "no class" halves at once."""
        torch.manual_seed(0)
        model = NCSNScoreModel(in_channels=self.channels, sample_size=8, ngf=8, num_class_embeds=3,
                               unconditional_class=True)  # fmt: skip
        pipe = self.pipeline_class(unet=model, scheduler=self.get_pipeline().scheduler, data_range=(0, 1))
        pipe.set_progress_bar_config(disable=True)
        batches = []
        hook = model.register_forward_hook(lambda module, args, output: batches.append(args[0].shape[0]))
        try:
            output = self._call(pipe, class_labels=1, guidance_scale=3.0).images
        finally:
            hook.remove()
        assert output.shape[0] == self.batch_size and np.isfinite(output).all()
        assert batches == [2 * self.batch_size] * pipe.scheduler.num_model_calls
