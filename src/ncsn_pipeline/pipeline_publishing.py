"""Saving and publishing a pipeline (`PublishingMixin`): the safetensors-only `save_pretrained`, its standalone
layout and `push_to_hub`, in front of `ncsn_pipeline.hub`, which they import lazily (an exported repository's copy
of the pipeline carries these methods but not the Hub layer, and says so if asked to publish)."""

from __future__ import annotations

import os
from typing import Optional, Union


class PublishingMixin:
    """`NCSNPipeline`'s saving and publishing. A standalone folder and a pushed repository hold the class
    `published_class` returns (`NCSNPipeline`, the sampling pipeline, whichever pipeline saves them)."""

    @staticmethod
    def published_class() -> type:
        """The pipeline class that standalone folders and pushed repositories hold (defined by `NCSNPipeline`)."""
        raise NotImplementedError

    def save_pretrained(self, save_directory: Union[str, os.PathLike], standalone: bool = False, **kwargs) -> None:
        """Save the pipeline folder (``model_index.json``, ``unet/``, ``scheduler/``) with safetensors weights.

        Args:
            save_directory (`str` or `os.PathLike`): The folder to write.
            standalone (`bool`, defaults to `False`): Also write self-contained code files and a model card (the
                layout of pushed repositories), so that plain diffusers loads the folder with
                ``DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`` without this package.
                The default layout loads with ``NCSNPipeline.from_pretrained`` only. ``save_directory`` must
                not exist yet.
            **kwargs: The arguments of [`DiffusionPipeline.save_pretrained`]; ``safe_serialization`` is always
                `True`. To publish, use `push_to_hub`.
        """
        if standalone:
            from ncsn_pipeline.hub import save_standalone

            save_standalone(self, save_directory, pipeline_class=self.published_class())
            return
        if kwargs.get("safe_serialization", True) is not True:
            raise ValueError(
                "NCSNPipeline saves weights only as safetensors; safe_serialization=False is not supported."
            )
        if kwargs.get("push_to_hub"):
            raise ValueError("Use pipe.push_to_hub(repo_id, private=...) to publish; save_pretrained only saves.")
        kwargs["safe_serialization"] = True
        super().save_pretrained(save_directory, **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool,
        token: Optional[str] = None,
        commit_message: Optional[str] = None,
    ) -> str:
        """Publish the pipeline to the Hugging Face Hub in one commit (weights, configs, model card, samples, code).

        The repository loads with ``NCSNPipeline.from_pretrained(repo_id)`` and, for users of plain
        diffusers, with ``DiffusionPipeline.from_pretrained(repo_id, trust_remote_code=True)``.

        Args:
            repo_id (`str`): ``"user/name"``; created if needed.
            private (`bool`): Visibility of a new repository (required: the Hub's default is public).
            token (`str`, *optional*): A write token; defaults to the logged-in one or ``HF_TOKEN``.
            commit_message (`str`, *optional*): The commit's message.

        Returns:
            `str`: The URL of the commit.
        """
        import tempfile

        try:
            from ncsn_pipeline.hub import push_folder_to_hub
        except ImportError as error:  # running from a repository's copied code without the package
            raise ImportError("push_to_hub needs the ncsn-pipeline package: pip install ncsn-pipeline") from error
        with tempfile.TemporaryDirectory(prefix="ncsn-save-") as folder:
            self.save_pretrained(folder)
            return push_folder_to_hub(
                folder,
                repo_id,
                private=private,
                pipeline_class=self.published_class(),
                token=token,
                commit_message=commit_message,
            )
