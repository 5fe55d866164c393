"""The models the demo offers: bundled and built-in ones (from the package's registry), plus ``--model``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from ..checks import check_number
from ..folder_records import guide_folder, read_training
from ..guidance import classifier_log_prob_gradient
from ..modeling_toy import GaussianMixtureScore
from ..pipeline_ncsn import NCSNPipeline
from ..pretrained import (
    classifier_names,
    load_pipeline,
    load_pretrained,
    load_pretrained_classifier,
    model_names,
    pretrained_names,
    pretrained_path,
)
from .cost import CallCost, max_image_calls, measure_call_cost
from .limits import (
    ANY_CLASS,
    AUTOGUIDANCE_SCALE_RANGE,
    DEFAULT_BATCH_SIZE,
    DEFAULT_IMAGE_MODEL,
    DEFAULT_PLAYGROUND_MODEL,
    DEFAULT_SAMPLER,
    FASHION_MODEL,
    GUIDANCE_SCALE_RANGE,
    MAX_PLAYGROUND_CALLS,
)
from .samplers import suggested_controls


class DemoModelError(ValueError):
    """A model given to the demo (``--model``) cannot be loaded or is not usable by any tab."""


@dataclass
class DemoModel:
    """A pipeline offered by one of the tabs.

    Args:
        label: Shown in the dropdown.
        pipeline: The loaded pipeline (its unet is shared by all requests; its scheduler only
            provides the tuned configuration).
        reference: For 2-D models, a Gaussian mixture whose modes define the recovered mode weights
            (the exact model itself, or the training distribution of a learned one).
        exact: Whether the score is exact (then the perturbed density can be drawn).
        class_names: For class-aware image models, the name of each class (a class-conditional model's, or the
            classes of ``classifier``).
        classifier: A noise-conditional classifier that guides this (unconditional) model toward a class.
        held_out: The held-out images the Inpainting tab repaints with this model
            (`ncsn_pipeline.demo.inpainting.HELD_OUT_SETS`: ``"digits"`` or ``"fashion-mnist"``).
        guide: The score network of a weaker model of the same data that the model's folder ships for
            autoguidance (``guide/``), or `None`.
    """

    label: str
    pipeline: NCSNPipeline
    reference: Optional[GaussianMixtureScore] = None
    exact: bool = False
    class_names: Optional[List[str]] = None
    classifier: Any = None
    held_out: str = "digits"
    guide: Any = None
    costs: Dict[Any, CallCost] = field(default_factory=dict, repr=False)

    @property
    def class_conditional(self) -> bool:
        """Whether the score model itself takes class labels."""
        return getattr(self.pipeline.unet, "num_classes", None) is not None

    @property
    def classifier_free(self) -> bool:
        """Whether the model also has the "no class" label (trained with label dropout), so that a guidance scale
        steers it by classifier-free guidance."""
        return self.class_conditional and getattr(self.pipeline.unet, "unconditional_label", None) is not None

    def network_batch(self, class_arguments: Dict[str, Any], batch_size: int) -> int:
        """The batch one network call carries for a request: doubled by classifier-free guidance (the conditional
        and the unconditional halves go through the network in one call), which the request's price counts."""
        return batch_size * (2 if self.classifier_free and "guidance_scale" in class_arguments else 1)

    def call_cost(self, guided: bool = False, autoguided: bool = False) -> CallCost:
        """The time of one network call on this machine (`ncsn_pipeline.demo.cost`), with the classifier's gradient
        when ``guided`` and the guide's call when ``autoguided``; measured on first use and kept."""
        if guided not in self.costs:
            self.costs[guided] = measure_call_cost(self._timed_call(guided))
        if not autoguided:
            return self.costs[guided]
        if "guide" not in self.costs:
            self.costs["guide"] = measure_call_cost(self._timed_call(False, self.guide))
        return self.costs[guided] + self.costs["guide"]

    def _timed_call(self, guided: bool, network: Any = None):
        """One network call on ``n`` samples as a request makes it (class labels, classifier gradient), of the
        model's network or of ``network`` (its guide)."""
        unet, shape = network or self.pipeline.unet, tuple(self.pipeline.sample_shape)
        parameter = next(iter(unet.parameters()), None) if isinstance(unet, torch.nn.Module) else None
        tensor_options = {"device": parameter.device, "dtype": parameter.dtype} if parameter is not None else {}

        def call(n: int) -> None:
            sample, sigma = torch.randn(n, *shape, **tensor_options), torch.ones(n, **tensor_options)
            labels = torch.zeros(n, dtype=torch.long, device=sample.device)
            if self.class_conditional:
                unet(sample, sigma, class_labels=labels)
            else:
                unet(sample, sigma)
            if guided:
                classifier_log_prob_gradient(self.classifier, sample, sigma, labels)

        return call

    def class_arguments(self, class_name: Any, guidance_scale: Any, batch_size: int) -> Dict[str, Any]:
        """The pipeline arguments for the UI's class choice (checked; errors name the value and the choices).

        A class-conditional model gets ``class_labels`` (``"any"``: the classes in turn) and, if it has the "no
        class" label, classifier-free guidance at ``guidance_scale`` (none at 1); a model with a classifier is guided
        toward the chosen class at ``guidance_scale``; ``"any"`` leaves other models unconditional.
        """
        scale = check_number("guidance scale", guidance_scale, *GUIDANCE_SCALE_RANGE)
        names = self.class_names or []
        if class_name != ANY_CLASS and class_name not in names:
            accepted = [ANY_CLASS, *names]
            raise ValueError(f"class {class_name!r} is not a class of {self.label}; choose one of {accepted}.")
        if self.class_conditional:
            labels = [names.index(class_name)] * batch_size if class_name != ANY_CLASS else None
            arguments: Dict[str, Any] = {"class_labels": labels or [index % len(names) for index in range(batch_size)]}
            if self.classifier_free and scale != 1:
                arguments["guidance_scale"] = scale
            return arguments
        if class_name == ANY_CLASS or self.classifier is None:
            return {}
        return {"class_labels": names.index(class_name), "classifier": self.classifier, "guidance_scale": scale}

    def guide_arguments(self, autoguidance_scale: Any) -> Dict[str, Any]:
        """The pipeline arguments for the UI's autoguidance ``w`` (checked): none at 1 (the model alone), the
        model's guide and ``w`` otherwise; a model without a guide refuses any other ``w``."""
        scale = check_number("autoguidance scale", autoguidance_scale, *AUTOGUIDANCE_SCALE_RANGE)
        if scale == 1:
            return {}
        if self.guide is None:
            raise ValueError(
                f"autoguidance scale {scale:g} needs a model that ships a guide (a weaker model of the same data); "
                f"{self.label} has none: set it to 1."
            )
        return {"guidance_model": self.guide, "guidance_scale": scale}


def prepare_for_inference(model: DemoModel) -> None:
    """Store the convolution weights of a model's networks (score network, guide, classifier) channels-last.

    oneDNN's CPU convolutions run faster on that layout: the bundled Fashion U-Net's call on 16 images went from
    96 to 83 ms with one thread (2026-12-07, 2 cores); outputs agree to round-off and keep their usual layout.
    Networks without 4-D weights (the 2-D models, exact scores) are left as they are.
    """
    for network in (model.pipeline.unet, model.guide, model.classifier):
        if isinstance(network, torch.nn.Module):
            network.to(memory_format=torch.channels_last)


def load_guide(folder: Path) -> Any:
    """The score network of a model folder's guide for autoguidance (``folder/guide``), `None` if it has none."""
    guide = guide_folder(folder)
    return None if guide is None else NCSNPipeline.from_pretrained(guide).unet.eval()


def held_out_set_of(pipe: NCSNPipeline, folder: Optional[Path] = None) -> str:
    """The held-out images the Inpainting tab gives a model: Fashion-MNIST's for models ``ncsn-eval`` judges as
    Fashion-MNIST models (trained on it, or of 1 x 28 x 28 images), the digits for the rest."""
    from ..evaluation.judge_choice import choose_judge

    return "fashion-mnist" if choose_judge("auto", pipe, folder) == "fashion-mnist" else "digits"


def class_names_of(pipe: NCSNPipeline, folder: Optional[Path] = None) -> Optional[List[str]]:
    """A class-conditional pipeline's class names: from its training record if there is one, else "0", "1", ..."""
    count = getattr(pipe.unet, "num_classes", None)
    if count is None:
        return None
    try:
        record = None if folder is None else read_training(folder)
    except ValueError:  # a broken record: the model still works, its classes are numbered
        record = None
    names = (record or {}).get("class_names")
    if isinstance(names, list) and len(names) == count and all(isinstance(name, str) for name in names):
        return names
    return [str(index) for index in range(count)]


def three_gaussians() -> GaussianMixtureScore:
    """A 3-mode 2-D mixture with unequal weights 0.5 / 0.3 / 0.2, sampled with the ``ncsn-toy`` preset."""
    return GaussianMixtureScore(
        weights=[0.5, 0.3, 0.2], means=[[-6.0, -4.0], [6.0, -4.0], [0.0, 6.0]], stds=[1.0, 1.0, 1.0]
    )


def _exact_2d(model: GaussianMixtureScore, label: str) -> DemoModel:
    pipe = load_pretrained("ncsn-toy")  # the NCSN toy preset (sigma 20 -> 1, 10 levels x 100 steps)
    pipe = NCSNPipeline(unet=model, scheduler=pipe.scheduler)
    return DemoModel(label=label, pipeline=pipe, reference=model, exact=True)


def load_user_pipeline(name_or_path: str) -> NCSNPipeline:
    """Load ``--model``: a named model, a local pipeline folder or a Hub repository id (cached copy when offline).

    Raises:
        DemoModelError: with the reason and what to pass instead.
    """
    try:
        return load_pipeline(name_or_path)
    except Exception as error:  # any failure (missing folder, offline Hub, broken weights) becomes one message
        raise DemoModelError(
            f"Could not load --model {name_or_path!r}: {error}\nPass a named model ({model_names()}), a folder saved "
            "with NCSNPipeline.save_pretrained, or a Hub repository id 'user/name' (without network access it must "
            "already be in the Hugging Face cache)."
        ) from error


@dataclass
class DemoModels:
    """The models of both tabs, loaded once at start-up (by `DemoModels.load`)."""

    images: Dict[str, DemoModel] = field(default_factory=dict)
    points: Dict[str, DemoModel] = field(default_factory=dict)
    # What each tab shows when the page opens: the bundled defaults, or the model given with ``--model`` (a Space
    # built by `ncsn_pipeline.hub.space` opens on its own model).
    default_image_model: str = DEFAULT_IMAGE_MODEL
    default_points_model: str = DEFAULT_PLAYGROUND_MODEL

    @classmethod
    def load(cls, extra_model: Optional[str] = None) -> DemoModels:
        """Bundled and built-in models, plus ``extra_model`` (``--model``) in the tab that fits its data."""
        models = cls()
        if FASHION_MODEL in pretrained_names():  # always, in the package; first, as the default
            pipe = load_pretrained(FASHION_MODEL)
            models.images[FASHION_MODEL] = DemoModel(
                "Fashion-MNIST, class-conditional (bundled EDM U-Net, trained)",
                pipe,
                class_names=class_names_of(pipe, pretrained_path(FASHION_MODEL)),
                held_out="fashion-mnist",
            )
        digits = DemoModel("digits (bundled NCSNv2, trained)", load_pretrained("ncsn-digits"))
        if "ncsn-digits-classifier" in classifier_names():  # classifier guidance toward a chosen digit
            digits.classifier = load_pretrained_classifier("ncsn-digits-classifier")
            digits.class_names = [str(digit) for digit in range(digits.classifier.num_classes)]
        models.images["ncsn-digits"] = digits
        if "ncsn-digits-classes" in pretrained_names():
            pipe = load_pretrained("ncsn-digits-classes")
            models.images["ncsn-digits-classes"] = DemoModel(
                "digits, class-conditional (bundled NCSNv2, trained)",
                pipe,
                class_names=class_names_of(pipe, pretrained_path("ncsn-digits-classes")),
            )
        models.images["glyph-mixture"] = DemoModel(
            "glyph-mixture (built-in, exact score)", load_pretrained("glyph-mixture")
        )
        models.points["two-gaussians"] = _exact_2d(
            GaussianMixtureScore.ncsn_toy(), "two Gaussians 0.2 / 0.8 (NCSN toy, exact score)"
        )
        models.points["three-gaussians"] = _exact_2d(three_gaussians(), "three Gaussians 0.5 / 0.3 / 0.2 (exact score)")
        models.points["ncsn-two-gaussians"] = DemoModel(
            "two Gaussians (bundled MLP, learned score)",
            load_pretrained("ncsn-two-gaussians"),
            reference=GaussianMixtureScore.ncsn_toy(),  # its training distribution
        )
        for name, entry in models.images.items():
            if name in pretrained_names():
                entry.guide = load_guide(pretrained_path(name))
        if extra_model:
            models.add_user_model(extra_model)
        for model in [*models.images.values(), *models.points.values()]:
            model.pipeline.set_progress_bar_config(disable=True)
            prepare_for_inference(model)
        return models

    def add_user_model(self, name_or_path: str) -> str:
        """Load ``name_or_path`` and add it to the image tab or the playground; return the tab's name."""
        pipe = load_user_pipeline(name_or_path)
        label = f"{name_or_path} (--model)"
        if pipe.config.data_range is not None:
            channels = pipe.sample_shape[0]
            if channels not in (1, 3):
                raise DemoModelError(f"--model {name_or_path!r} has {channels} channels; the demo shows 1 or 3.")
            folder = Path(name_or_path) if Path(name_or_path).is_dir() else None
            self.images[name_or_path] = DemoModel(
                label, pipe, class_names=class_names_of(pipe, folder), held_out=held_out_set_of(pipe, folder),
                guide=None if folder is None else load_guide(folder),
            )  # fmt: skip
            self.default_image_model = name_or_path
            prepare_for_inference(self.images[name_or_path])  # also when added after `load`
            return "images"
        if tuple(pipe.sample_shape) == (2,):
            exact = isinstance(pipe.unet, GaussianMixtureScore)
            self.points[name_or_path] = DemoModel(label, pipe, reference=pipe.unet if exact else None, exact=exact)
            self.default_points_model = name_or_path
            return "playground"
        raise DemoModelError(
            f"--model {name_or_path!r} samples data of shape {pipe.sample_shape} without a data_range: the demo "
            "shows images (pipelines with a data_range) and 2-D points."
        )

    def time_networks(self) -> None:
        """Time every image model's network call (and its classifier's gradient and its guide's call, where it has
        them) now, so that no request pays for it (`DemoModel.call_cost`); also one call on the default batch, whose
        first call would otherwise pay oneDNN's set-up for that shape (0.2-0.3 s on the Fashion model)."""
        for entry in self.images.values():
            entry.call_cost(guided=False)
            with torch.no_grad():
                entry._timed_call(False)(DEFAULT_BATCH_SIZE)
            if entry.classifier is not None:
                entry.call_cost(guided=True)
            if entry.guide is not None:
                entry.call_cost(autoguided=True)

    def defaults(self, tab: str, key: str, sampler: str = DEFAULT_SAMPLER) -> Dict[str, int]:
        """Noise levels and steps per level to suggest for a model and sampler (`suggested_controls`); for an image
        model, as many calls as the default batch may take on this machine (`DemoModel.call_cost`), so that the
        page's suggestions are always accepted."""
        if tab != "images":
            return suggested_controls(self.points[key].pipeline.scheduler.config, sampler, MAX_PLAYGROUND_CALLS)
        entry = self.images[key]
        max_calls = max_image_calls(entry.call_cost(), DEFAULT_BATCH_SIZE)
        return suggested_controls(entry.pipeline.scheduler.config, sampler, max_calls)
