"""Class conditioning for sampling: class labels for class-conditional score models, and classifier guidance.

Score-SDE's controllable generation (Song et al. 2021, section 5, eq. 14): to sample ``p(x | y)`` with an
unconditional score model, follow the conditional score

    grad_x log p_sigma(x | y) = grad_x log p_sigma(x) + grad_x log p_sigma(y | x),

where the second term comes from a noise-conditional classifier ``p_sigma(y | x)`` (trained on noisy data at every
level). ``guidance_scale`` multiplies it (Dhariwal & Nichol 2021): 1 is the exact conditional, larger values
sharpen the class at the cost of diversity, 0 ignores the classifier.

A classifier is any module called as ``classifier(sample, sigma)`` returning an object with ``.logits`` of shape
``(batch, num_classes)`` and having a ``num_classes`` attribute: `ncsn_pipeline.NoiseConditionalClassifier`, or the
exact `ncsn_pipeline.GaussianMixtureClassifier` for tests.

Classifier-free guidance (Ho & Salimans 2022) needs no classifier: a class-conditional model trained with label
dropout (``ncsn-train --class_conditional --label_dropout P``) also knows the "no class" label, so it gives both
``s(x | y)`` and ``s(x)``, and with ``guidance_scale = w`` the sampler follows

    s(x | y) + (w - 1) (s(x | y) - s(x)) = grad_x log [p_sigma(x | y)^w p_sigma(x)^(1 - w)],

the score of ``p_sigma(x | y) p_sigma(y | x)^(w - 1)``: the class sharpened as classifier guidance at scale
``w - 1`` would. This is diffusers' convention (``w = 1`` is the plain conditional model, ``w = 0`` the
unconditional one, as in its pipelines' ``guidance_scale``); Ho & Salimans' ``w`` is ours minus one. Both scores come
from one network call on the doubled batch.

Autoguidance (Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of Itself", eq. 2) guides with a
weaker model of the same data, ``guidance_model`` (an earlier checkpoint or a smaller network, conditioned the same
way), instead of the unconditional one:

    s_good(x) + (w - 1) (s_good(x) - s_bad(x)) = grad_x log [p_good,sigma(x)^w p_bad,sigma(x)^(1 - w)],

which pushes samples away from where the weak model errs more than the good one; it needs no classes, so it works
for unconditional models, and with class labels both models get them. The two networks differ, so a step takes two
calls (one of each); ``w = 1`` is the good model alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from diffusers.utils import BaseOutput

from .checks import check_number
from .modeling_utils import class_labels_per_example

MAX_GUIDANCE_SCALE = 1_000.0


@dataclass
class ClassifierOutput(BaseOutput):
    """Output of a noise-conditional classifier.

    Args:
        logits (`torch.Tensor`): Unnormalised ``log p_sigma(y | x)``, shape ``(batch, num_classes)``.
    """

    logits: torch.Tensor


def classifier_log_prob_gradient(
    classifier: Any, sample: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor
) -> torch.Tensor:
    """``grad_x log p_sigma(y | x)`` for each example's class ``y`` (the guidance term of eq. 14), by autograd.

    Args:
        classifier: ``classifier(x, sigma).logits`` of shape ``(batch, num_classes)``.
        sample (`torch.Tensor`): ``x``, shape ``(batch, ...)``.
        sigma (`torch.Tensor`): Noise levels, shape ``(batch,)``.
        class_labels (`torch.Tensor`): ``y``, long, shape ``(batch,)``.

    Returns:
        `torch.Tensor`: The gradient, shape and dtype of ``sample``.
    """
    with torch.enable_grad():
        inputs = sample.detach().requires_grad_(True)
        log_probs = torch.log_softmax(classifier(inputs, sigma).logits.float(), dim=1)
        chosen = log_probs.gather(1, class_labels[:, None].to(log_probs.device)).sum()
        (gradient,) = torch.autograd.grad(chosen, inputs)
    return gradient.to(sample.dtype)


@dataclass
class Conditioning:
    """What a pipeline run is conditioned on (built and checked once by `prepare_conditioning`)."""

    model_labels: Optional[torch.Tensor] = None  # passed to a class-conditional score model
    guide_labels: Optional[torch.Tensor] = None  # the classes a classifier guides toward
    classifier: Any = None
    guidance_scale: float = 0.0
    # Classifier-free guidance: the model's "no class" label for each example (the scale is ``guidance_scale``).
    unconditional_labels: Optional[torch.Tensor] = None
    # Autoguidance: the weaker model of the same data (the scale is ``guidance_scale``).
    guidance_model: Any = None

    @property
    def network_calls_per_call(self) -> int:
        """Network calls behind one score: 2 with a guidance model (the good and the weak network), else 1 (a doubled
        batch in one call counts once)."""
        return 2 if self.guidance_model is not None else 1

    def score(self, unet: Any, sample: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """The (conditional) score at ``sample``: the model's, plus the scaled classifier gradient if guided, the
        classifier-free combination ``s(x | y) + (w - 1) (s(x | y) - s(x))`` from one call on the doubled batch, or
        the autoguided ``s_good + (w - 1) (s_good - s_bad)`` from one call of each model."""
        if self.guidance_model is not None:
            labels = {} if self.model_labels is None else {"class_labels": self.model_labels}
            good = unet(sample, sigma, **labels).sample
            bad = self.guidance_model(sample, sigma, **labels).sample.to(good.dtype)
            return good + (self.guidance_scale - 1) * (good - bad)
        if self.unconditional_labels is not None:
            sigma = sigma.expand(sample.shape[0]) if sigma.ndim == 0 else sigma
            labels = torch.cat([self.model_labels, self.unconditional_labels])
            both = unet(torch.cat([sample, sample]), torch.cat([sigma, sigma]), class_labels=labels).sample
            conditional, unconditional = both.chunk(2)
            return conditional + (self.guidance_scale - 1) * (conditional - unconditional)
        if self.model_labels is None:
            score = unet(sample, sigma).sample
        else:
            score = unet(sample, sigma, class_labels=self.model_labels).sample
        if self.classifier is not None and self.guidance_scale != 0:
            gradient = classifier_log_prob_gradient(self.classifier, sample, sigma, self.guide_labels)
            score = score + self.guidance_scale * gradient
        return score


def model_num_classes(model: Any) -> Optional[int]:
    """The classes a score model is conditioned on (its ``num_classes``), `None` for unconditional models."""
    return getattr(model, "num_classes", None)


def prepare_conditioning(
    unet: Any,
    batch_size: int,
    device: torch.device,
    class_labels: Any = None,
    classifier: Any = None,
    guidance_scale: Optional[float] = None,
    guidance_model: Any = None,
) -> Conditioning:
    """Check a pipeline call's class arguments and return its `Conditioning`.

    * A class-conditional model (``unet.num_classes`` set) needs ``class_labels``; they are passed to it. One that
      also knows the "no class" label (``unet.unconditional_label``) samples the whole data without them.
    * With a ``classifier``, ``class_labels`` are the classes to guide toward and ``guidance_scale`` (default 1,
      the exact conditional score) weighs the classifier's gradient.
    * Without a classifier, ``guidance_scale`` is classifier-free guidance, for a model that knows the "no class"
      label (see the module docstring; 1 is the plain conditional model).
    * With a ``guidance_model``, ``guidance_scale`` (default 1: the good model alone) is autoguidance's weight; the
      guide must take the same conditioning (class-conditional or not, the same classes) and cannot be combined
      with a classifier.
    * ``class_labels`` for an unconditional model without a classifier, or ``guidance_scale`` without a
      classifier for a model without the "no class" label, are refused with a message saying what would be
      accepted.
    """
    num_classes = model_num_classes(unet)
    unconditional_label = getattr(unet, "unconditional_label", None)
    if guidance_model is not None:
        return _autoguidance(unet, guidance_model, batch_size, device, class_labels, classifier, guidance_scale)
    if classifier is None:
        if guidance_scale is not None:
            return _classifier_free(num_classes, unconditional_label, batch_size, device, class_labels, guidance_scale)
        if unconditional_label is not None and class_labels is None:  # the whole data, through the "no class" label
            return Conditioning(model_labels=torch.full((batch_size,), unconditional_label, device=device))
        return Conditioning(model_labels=class_labels_per_example(class_labels, batch_size, num_classes, device))
    classifier_classes = getattr(classifier, "num_classes", None)
    if not isinstance(classifier_classes, int) or not callable(classifier):
        raise ValueError(
            f"classifier must be a noise-conditional classifier (called as classifier(x, sigma).logits, with a "
            f"num_classes attribute), got {type(classifier).__name__}."
        )
    if class_labels is None:
        raise ValueError(
            f"Classifier guidance needs class_labels: the class of each sample, in [0, {classifier_classes - 1}]."
        )
    scale = 1.0 if guidance_scale is None else check_number("guidance_scale", guidance_scale, 0.0, MAX_GUIDANCE_SCALE)
    guide_labels = class_labels_per_example(class_labels, batch_size, classifier_classes, device)
    model_labels = None
    if num_classes is not None:
        model_labels = class_labels_per_example(class_labels, batch_size, num_classes, device)
    return Conditioning(model_labels, guide_labels, classifier, scale)


def _classifier_free(
    num_classes, unconditional_label, batch_size, device, class_labels, guidance_scale
) -> Conditioning:
    """The `Conditioning` of classifier-free guidance at ``guidance_scale``, checked (see `prepare_conditioning`)."""
    if unconditional_label is None:
        raise ValueError(
            f"guidance_scale={guidance_scale!r} needs a classifier (pass classifier=, a noise-conditional classifier "
            "such as NoiseConditionalClassifier, with class_labels), or a class-conditional model that also learned "
            "the 'no class' label for classifier-free guidance (ncsn-train --class_conditional --label_dropout 0.1)."
        )
    if class_labels is None:
        raise ValueError(
            f"Classifier-free guidance needs class_labels: the class of each sample, in [0, {num_classes - 1}]."
        )
    scale = check_number("guidance_scale", guidance_scale, 0.0, MAX_GUIDANCE_SCALE)
    labels = class_labels_per_example(class_labels, batch_size, num_classes, device)
    if scale == 1.0:  # the plain conditional model: one call on the batch
        return Conditioning(model_labels=labels)
    if scale == 0.0:  # the unconditional model
        return Conditioning(model_labels=torch.full_like(labels, unconditional_label))
    return Conditioning(
        model_labels=labels, guidance_scale=scale, unconditional_labels=torch.full_like(labels, unconditional_label)
    )


def _autoguidance(unet, guidance_model, batch_size, device, class_labels, classifier, guidance_scale) -> Conditioning:
    """The `Conditioning` of autoguidance (see `prepare_conditioning`), checked before any network call."""
    if classifier is not None:
        raise ValueError(
            "guidance_model (autoguidance) and classifier (classifier guidance) are two uses of guidance_scale: pass "
            "one of them."
        )
    if not callable(guidance_model) or not isinstance(guidance_model, torch.nn.Module):
        raise ValueError(
            f"guidance_model must be a score model of the same data (called as model(x, sigma).sample, such as an "
            f"earlier checkpoint's unet), got {type(guidance_model).__name__}."
        )
    num_classes, guide_classes = model_num_classes(unet), model_num_classes(guidance_model)
    if num_classes != guide_classes:
        raise ValueError(
            f"guidance_model must be conditioned as the model is: the model has {num_classes or 'no'} classes, the "
            f"guidance model {guide_classes or 'no'} classes."
        )
    guide_shape = getattr(guidance_model, "sample_shape", None)
    if guide_shape is not None and tuple(guide_shape) != tuple(unet.sample_shape):
        raise ValueError(
            f"guidance_model samples {tuple(guide_shape)}, the model {tuple(unet.sample_shape)}: use a model of the "
            "same data."
        )
    scale = 1.0 if guidance_scale is None else check_number("guidance_scale", guidance_scale, 0.0, MAX_GUIDANCE_SCALE)
    labels = None
    if num_classes is not None or class_labels is not None:
        if class_labels is None and getattr(unet, "unconditional_label", None) is not None:
            if getattr(guidance_model, "unconditional_label", None) != unet.unconditional_label:
                raise ValueError(
                    "Without class_labels the model samples the whole data through its 'no class' label, which the "
                    "guidance model did not learn: pass class_labels, or a guide trained with --label_dropout."
                )
            labels = torch.full((batch_size,), unet.unconditional_label, device=device)
        else:
            labels = class_labels_per_example(class_labels, batch_size, num_classes, device)
    if scale == 1.0:  # the good model alone: one call
        return Conditioning(model_labels=labels)
    return Conditioning(model_labels=labels, guidance_scale=scale, guidance_model=guidance_model)
