"""Issue 23, item 3: every score network of the package under ``torch.compile`` and in bfloat16.

`pipeline_tester.PipelineTesterMixin` checks every pipeline and sampler on the small RefineNet; here every network
class (the three NCSNv2 sizes, NCSN v1, NCSN++, the EDM network, diffusers' ``UNet2DModel`` of score-SDE folders, the
exact and learned toy scores, a class-conditional model under classifier-free guidance) is compiled as one graph and
traced once per run, and the real compiler (inductor) is checked against eager in the slow tier.
"""

from __future__ import annotations

import pytest
import torch
import torch._dynamo

from ncsn_pipeline import (
    EDMScoreModel,
    GaussianMixtureScore,
    NCSNPipeline,
    NCSNppScoreModel,
    NCSNScheduler,
    NCSNScoreModel,
    NCSNv1ScoreModel,
    ToyScoreModel,
    score_schedulers,
)

LEVELS = dict(sigma_max=3.0, sigma_min=0.01, num_noise_levels=10)


def score_sde_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8), norm_num_groups=4,
        time_embedding_type="fourier", down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2,
    )  # fmt: skip


# name -> (builder, call keywords); the builders are small: tracing, not arithmetic, is what is tested.
NETWORKS = {
    "ncsnv2": (lambda: NCSNScoreModel(in_channels=1, sample_size=8, ngf=8), {}),
    "ncsnv2-deeper": (lambda: NCSNScoreModel(in_channels=1, sample_size=8, ngf=4, architecture="ncsnv2-deeper"), {}),
    "ncsnv2-deepest": (lambda: NCSNScoreModel(in_channels=1, sample_size=16, ngf=4, architecture="ncsnv2-deepest"), {}),
    "ncsnv2-classifier-free": (
        lambda: NCSNScoreModel(in_channels=1, sample_size=8, ngf=8, num_class_embeds=3, unconditional_class=True),
        {"class_labels": [0, 2], "guidance_scale": 2.0},
    ),
    "ncsn-v1": (lambda: NCSNv1ScoreModel(in_channels=1, sample_size=8, ngf=8, **LEVELS), {}),
    "ncsnpp": (
        lambda: NCSNppScoreModel(
            in_channels=1, sample_size=8, nf=8, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(4,)
        ),
        {},
    ),  # fmt: skip
    "edm": (lambda: EDMScoreModel(in_channels=1, sample_size=8, block_out_channels=(8, 8), norm_num_groups=4), {}),
    "score-sde-unet": (score_sde_unet, {}),
    "exact-toy": (GaussianMixtureScore.ncsn_toy, {}),
    "learned-toy": (ToyScoreModel, {}),
}


def pipeline_for(name: str, sampler: str = "NCSNScheduler") -> NCSNPipeline:
    torch.manual_seed(0)
    model = NETWORKS[name][0]().eval()  # NCSN++ has dropout, on in a fresh module's training mode
    scheduler = score_schedulers()[sampler].from_config(NCSNScheduler(**LEVELS, steps_per_level=1, step_lr=1e-5).config)
    toy = name.endswith("toy")
    pipe = NCSNPipeline(unet=model, scheduler=scheduler, data_range=None if toy else (0, 1))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, name: str, steps=None):
    return pipe(
        batch_size=2,
        num_inference_steps=None if name == "ncsn-v1" else steps,
        generator=torch.Generator().manual_seed(0),
        output_type="pt",
        **NETWORKS[name][1],
    ).images


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_network_compiles_to_one_graph_traced_once_per_run(name):
    """The network's checks (sigma finite and positive, known training level, class labels in range) are written so
    that the compiler keeps them in the graph (`modeling_utils.check_all`): ``fullgraph=True`` would raise at a
    graph break. Two runs of different lengths trace once between them."""
    pipe = pipeline_for(name)
    expected = [run(pipe, name, steps) for steps in (4, 6)]
    traced = []

    def counting_backend(graph_module, example_inputs):
        traced.append(graph_module)
        return graph_module.forward

    torch._dynamo.reset()
    pipe.unet = torch.compile(pipe.unet, backend=counting_backend, fullgraph=True)
    try:
        outputs = [run(pipe, name, steps) for steps in (4, 6)]
    finally:
        torch._dynamo.reset()
    assert len(traced) == 1
    for output, reference in zip(outputs, expected):
        torch.testing.assert_close(output, reference, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "name, bad_sigma, message",
    [
        ("ncsnv2", -1.0, r"`timestep` \(the noise level sigma\) must be finite and > 0"),
        ("ncsn-v1", 0.5, "NCSNv1ScoreModel knows only its 10 training noise levels"),
    ],
)
def test_a_compiled_network_still_refuses_a_bad_sigma(name, bad_sigma, message):
    """In the compiled graph the check is a device-side assertion: a RuntimeError carrying the same rule (the eager
    network raises ValueError with the offending value as well)."""
    model = NETWORKS[name][0]().eval()
    sample = torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match=message):
        model(sample, torch.full((2,), bad_sigma))
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    try:
        compiled(sample, torch.full((2,), 3.0))  # a good sigma runs
        with pytest.raises(RuntimeError, match=message):
            compiled(sample, torch.full((2,), bad_sigma))
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("name", ["ncsnv2", "ncsn-v1", "ncsnpp", "edm", "score-sde-unet"])
def test_bfloat16_networks_stay_close_to_float32(name):
    """``model.to(torch.bfloat16)`` computes in bfloat16 end to end: our networks return a bfloat16 score for a
    bfloat16 sample (diffusers' ``UNet2DModel`` returns float32, dividing by a float32 sigma: the sampling loop casts
    the score to the sample's dtype, `test_every_network_in_bfloat16_keeps_the_sample_bfloat16`), within bfloat16's
    rounding of the float32 score. Measured relative RMS errors on these untrained networks, 3 seeds x 3 levels:
    0.006-0.016 (NCSNv2, EDM, UNet2DModel up to 0.046), 0.02-0.12 (NCSN v1, NCSN++: deeper chains of normalisations
    amplify the 2**-9 rounding); the bound 0.25 leaves room for other seeds, while a lost term, a wrong noise level
    (a sigma rounded to bfloat16 before the level lookup) or an overflow gives errors of order 1."""
    torch.manual_seed(0)
    model = NETWORKS[name][0]().eval()
    sample = torch.rand(4, 1, 8, 8)
    sigma = torch.full((4,), float(NCSNScheduler(**LEVELS).timesteps[3]))
    with torch.no_grad():
        reference = model(sample, sigma).sample
        low = model.to(torch.bfloat16)(sample.to(torch.bfloat16), sigma).sample
    assert low.dtype == (torch.float32 if name == "score-sde-unet" else torch.bfloat16)
    error = (low.float() - reference).pow(2).mean().sqrt() / reference.pow(2).mean().sqrt()
    assert error < 0.25, f"relative RMS error {error:.3f}"


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_every_network_in_bfloat16_keeps_the_sample_bfloat16(name):
    """A whole run of ``pipe.to(torch.bfloat16)``: every step's sample is bfloat16, whatever dtype the network
    returns (the exact toy score computes in float64 whatever the sample)."""
    pipe = pipeline_for(name).to(torch.bfloat16)
    step_samples = []

    def record(pipeline, index, sigma, tensors):
        step_samples.append(tensors["sample"].dtype)

    output = pipe(
        batch_size=2, num_inference_steps=None if name == "ncsn-v1" else 4, generator=torch.Generator().manual_seed(0),
        output_type="pt", callback_on_step_end=record, **NETWORKS[name][1],
    ).images  # fmt: skip
    assert step_samples == [torch.bfloat16] * pipe.scheduler.num_model_calls
    assert torch.isfinite(output.float()).all()


@pytest.mark.parametrize("sampler", sorted(score_schedulers()))
def test_autocast_runs_the_network_in_bfloat16_and_keeps_the_sample_float32(sampler):
    """``torch.autocast("cpu", torch.bfloat16)`` around a call: the convolutions run in bfloat16, the sampler's
    arithmetic and the sample stay float32 (the network casts its score back to the sample's dtype)."""
    pipe = pipeline_for("ncsnv2", sampler)
    convolution_outputs, step_samples = [], []
    pipe.unet.begin_conv.register_forward_hook(lambda module, args, output: convolution_outputs.append(output.dtype))

    def record(pipeline, index, sigma, tensors):
        step_samples.append(tensors["sample"].dtype)

    with torch.autocast("cpu", dtype=torch.bfloat16):
        images = pipe(
            batch_size=2, num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="pt",
            callback_on_step_end=record,
        ).images  # fmt: skip
    calls = pipe.scheduler.num_model_calls
    assert convolution_outputs == [torch.bfloat16] * calls
    assert step_samples == [torch.float32] * calls
    assert images.dtype == torch.float32 and torch.isfinite(images).all()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ncsnv2", "ncsnpp"])
def test_inductor_compiled_samples_match_eager_and_compile_once(name):
    """The real compiler (inductor, the default backend) on the package's two main image networks: the samples of a
    run equal eager ones to float32 round-off (fused kernels reorder sums: 1e-4 on data in [0, 1] is far below a
    visible change and far above float32's 1e-7), and a run of another length compiles nothing new."""
    from torch._dynamo.utils import counters

    pipe = pipeline_for(name, "DPMSolverPlusPlusScheduler")
    expected = run(pipe, name, 6)
    torch._dynamo.reset()
    counters.clear()
    pipe.unet = torch.compile(pipe.unet, fullgraph=True)
    try:
        torch.testing.assert_close(run(pipe, name, 6), expected, atol=1e-4, rtol=0)
        compiled_once = counters["stats"]["unique_graphs"]
        run(pipe, name, 9)
        assert compiled_once == 1 and counters["stats"]["unique_graphs"] == 1
    finally:
        torch._dynamo.reset()
