"""Strict loading for the package's score models: a weight file must match the model exactly.

diffusers' ``ModelMixin.from_pretrained`` only logs missing or unexpected keys; a missing key then stays
uninitialised (random values, or meta tensors that fail later with an unrelated message). A weight file that
does not match its config is a broken or foreign checkpoint, so loading stops with an error that names the keys.
"""

from __future__ import annotations

import os
from typing import Union


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
