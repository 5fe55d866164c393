"""The common pipeline behaviours (`pipeline_tester.PipelineTesterMixin`) on every pipeline the package exports."""

import inspect

import numpy as np
import torch
from diffusers import DiffusionPipeline

import ncsn_pipeline
from ncsn_pipeline import NCSNColorizePipeline, NCSNImg2ImgPipeline, NCSNInpaintPipeline, NCSNPipeline
from pipeline_tester import TESTED_PIPELINES, PipelineTesterMixin


class TestNCSNPipeline(PipelineTesterMixin):
    pipeline_class = NCSNPipeline


def _mask(batch_size):
    mask = torch.zeros(batch_size, 1, 8, 8)
    mask[:, :, 2:6, 2:6] = 1  # repaint the centre
    return mask


class TestNCSNInpaintPipeline(PipelineTesterMixin):
    pipeline_class = NCSNInpaintPipeline

    def get_inputs(self, batch_size):
        image = torch.linspace(0, 1, 64).reshape(1, 1, 8, 8).expand(batch_size, -1, -1, -1)
        return {"image": image, "mask_image": _mask(batch_size)}

    def keeps_known_pixels(self, output) -> bool:
        known = _mask(self.batch_size).permute(0, 2, 3, 1).numpy() == 0
        inside = output[~np.broadcast_to(known, output.shape)]
        return bool(np.allclose(inside, 0.5, atol=1e-6))  # the repainted part took the callback's value


class TestNCSNColorizePipeline(PipelineTesterMixin):
    pipeline_class = NCSNColorizePipeline
    channels = 3

    def get_inputs(self, batch_size):
        return {"image": torch.full((batch_size, 1, 8, 8), 0.5)}


class TestNCSNImg2ImgPipeline(PipelineTesterMixin):
    pipeline_class = NCSNImg2ImgPipeline
    batch_argument, batch_name = "num_images_per_prompt", r"1 image\(s\) x num_images_per_prompt"

    def get_inputs(self, batch_size):
        # strength 1: the whole run, so that the common checks see every call of the sampler.
        image = torch.linspace(0, 1, 64).reshape(1, 1, 8, 8).expand(batch_size, -1, -1, -1)
        return {"image": image, "strength": 1.0}


def test_every_exported_pipeline_has_the_common_tests():
    exported = {
        name
        for name in ncsn_pipeline.__all__
        if inspect.isclass(getattr(ncsn_pipeline, name)) and issubclass(getattr(ncsn_pipeline, name), DiffusionPipeline)
    }
    assert exported == set(TESTED_PIPELINES), f"pipelines without the common tests: {exported - set(TESTED_PIPELINES)}"
