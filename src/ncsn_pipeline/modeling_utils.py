"""What the package's score models share: strict loading, and the checks of class labels and of array arguments.

Strict loading: a weight file must match the model exactly.

diffusers' ``ModelMixin.from_pretrained`` only logs missing or unexpected keys; a missing key then stays
uninitialised (random values, or meta tensors that fail later with an unrelated message). A weight file that
does not match its config is a broken or foreign checkpoint, so loading stops with an error that names the keys.
"""

from __future__ import annotations

import os
from typing import Callable, Optional, Union

import torch


def as_float64_tensor(name: str, value, what: str = "numbers") -> torch.Tensor:
    """``value`` (nested sequences, an array or a tensor of real numbers) as a float64 tensor; `ValueError` naming
    ``name`` for anything torch cannot read as one (strings, ragged lists, objects).

    >>> as_float64_tensor("means", [[0.0], [1.0]]).shape
    torch.Size([2, 1])
    >>> as_float64_tensor("means", [[0.0], [1.0, 2.0]])
    Traceback (most recent call last):
    ...
    ValueError: means must be numbers (a rectangular list, an array or a tensor), got [[0.0], [1.0, 2.0]].
    """
    try:
        if isinstance(value, torch.Tensor) and value.is_complex():
            raise TypeError
        return torch.as_tensor(value, dtype=torch.float64)  # float64 from the start: no float32 rounding
    except (TypeError, ValueError, RuntimeError):
        shown = repr(value) if len(repr(value)) <= 200 else f"{type(value).__name__} {repr(value)[:200]}..."
        raise ValueError(f"{name} must be {what} (a rectangular list, an array or a tensor), got {shown}.") from None


class StrictLoadingMixin:
    """Mixed into a ``ModelMixin`` before it: ``from_pretrained`` raises on missing, unexpected or wrong-shape keys."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Union[str, os.PathLike], **kwargs):
        """``ModelMixin.from_pretrained``, then a `ValueError` naming every key that does not match the model."""
        wants_info = kwargs.pop("output_loading_info", False)
        where = os.path.join(os.fspath(pretrained_model_name_or_path), kwargs.get("subfolder") or "").rstrip("/")
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
        except RuntimeError as error:  # torch's load_state_dict reports keys of the wrong shape this way
            if "size mismatch" not in str(error):
                raise
            raise ValueError(
                f"The weights in {where!r} do not match {cls.__name__} with its config.json: {error}"
            ) from error
        problems = [
            f"{label} {sorted(map(str, info.get(key) or []))[:10]}"
            for key, label in (
                ("missing_keys", "missing"),
                ("unexpected_keys", "unexpected"),
                ("mismatched_keys", "of the wrong shape"),
            )
            if info.get(key)
        ]
        if problems:
            raise ValueError(
                f"The weights in {where!r} do not match {cls.__name__} with its config.json: keys "
                f"{'; '.join(problems)}. The weight file is broken or belongs to another model; save or download it "
                "again."
            )
        return (model, info) if wants_info else model


class ImageModelMixin:
    """What pipelines read off an image score model whose config has ``in_channels``, ``sample_size`` and (for
    class-conditional models) ``num_class_embeds``."""

    @property
    def num_classes(self) -> Optional[int]:
        """Classes the model is conditioned on (``num_class_embeds``); `None` for an unconditional model."""
        return self.config.get("num_class_embeds")

    @property
    def unconditional_label(self) -> Optional[int]:
        """The "no class" label (index ``num_classes``) of a model that also learned ``s(x)`` (``unconditional_class``,
        trained with label dropout: classifier-free guidance); `None` otherwise."""
        return self.num_classes if self.num_classes is not None and self.config.get("unconditional_class") else None

    @property
    def sample_shape(self) -> tuple:
        """`tuple[int, int, int]`: Shape ``(in_channels, sample_size, sample_size)`` of one generated sample."""
        return (self.config.in_channels, self.config.sample_size, self.config.sample_size)


def check_all(valid: torch.Tensor, rule: str, details: Callable[[], str]) -> None:
    """Raise ``ValueError(f"{rule}, got {details()}.")`` unless every element of the boolean tensor `valid` is true.

    Under ``torch.compile`` a data-dependent ``if`` would break the graph (and cost a host synchronisation on an
    accelerator), so there the check is a device-side assertion, ``torch._assert_async``: it still stops a bad value,
    as a ``RuntimeError`` carrying `rule` (the offending values are not known to the compiled graph).
    """
    if torch.compiler.is_compiling():
        torch._assert_async(valid.all(), rule)
        return
    if not bool(valid.all()):
        raise ValueError(f"{rule}, got {details()}.")


def class_labels_per_example(
    class_labels, batch_size: int, num_classes: Optional[int], device: torch.device
) -> Optional[torch.Tensor]:
    """Check a score model's ``class_labels`` and return them as a ``(batch,)`` long tensor (or `None`).

    A class-conditional model (``num_classes`` set) needs one label in ``[0, num_classes)`` per example (a Python
    int or a 0-d tensor is shared by the batch); an unconditional model (``num_classes=None``) takes none.
    """
    if num_classes is None:
        if class_labels is not None:
            raise ValueError(
                "This model is not class-conditional, so it takes no class_labels; train one with "
                "`ncsn-train --class_conditional`, or guide this one with a classifier (guidance_scale=)."
            )
        return None
    if class_labels is None:
        raise ValueError(
            f"This model is class-conditional ({num_classes} classes): pass class_labels, one class index in "
            f"[0, {num_classes - 1}] per sample."
        )
    try:
        labels = torch.as_tensor(class_labels)
    except (TypeError, ValueError, RuntimeError):  # strings, ragged lists, objects
        raise ValueError(
            f"class_labels must be an int, a sequence of ints or an integer tensor (one class index in "
            f"[0, {num_classes - 1}] per sample), got {type(class_labels).__name__}."
        ) from None
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"class_labels must be integer class indices, got dtype {labels.dtype}.")
    if labels.ndim == 0:
        labels = labels.expand(batch_size)
    if labels.shape != (batch_size,):
        raise ValueError(
            f"class_labels must hold one class index per sample ({batch_size}), got shape {tuple(labels.shape)}."
        )
    known = (labels >= 0) & (labels < num_classes)
    check_all(
        known, f"class_labels must lie in [0, {num_classes - 1}] for this model", lambda: labels[~known][0].item()
    )
    return labels.to(device=device, dtype=torch.long)


def model_class_labels(
    class_labels, batch_size: int, num_classes: Optional[int], unconditional_label: Optional[int], device: torch.device
) -> Optional[torch.Tensor]:
    """The labels a score model's ``forward`` takes: `class_labels_per_example`, where a model that also knows the "no
    class" label (``unconditional_label``, index ``num_classes``; classifier-free guidance) takes that index too, and
    takes ``class_labels=None`` as "no class" for every example (it samples the whole data then).

    >>> model_class_labels(None, 3, 10, 10, "cpu").tolist()
    [10, 10, 10]
    """
    if num_classes is not None and unconditional_label is not None:
        if class_labels is None:
            return torch.full((batch_size,), unconditional_label, dtype=torch.long, device=device)
        return class_labels_per_example(class_labels, batch_size, num_classes + 1, device)
    return class_labels_per_example(class_labels, batch_size, num_classes, device)
