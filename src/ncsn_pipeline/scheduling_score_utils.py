"""What every score-driven scheduler of this package shares: the prior, the identity input scaling,
the training perturbation and the bookkeeping of the current position in ``timesteps``."""

from __future__ import annotations

from typing import Union

import torch

from .sampling import add_noise_per_example


class ScoreSchedulerMixin:
    """Mixed into the schedulers that consume ``s(x, sigma)`` and start from ``N(0, sigma_max**2 I)``.

    Subclasses set ``timesteps`` and ``_step_index = None`` in ``set_timesteps``; each ``step`` begins with
    `_next_step_index`.
    """

    @property
    def init_noise_sigma(self) -> float:
        """Standard deviation of the initial noise: ``sigma_max``."""
        return float(self.config.sigma_max)

    @property
    def step_index(self):
        """Index into ``timesteps`` of the next call to ``step`` (``None`` before the first call)."""
        return self._step_index

    def scale_model_input(
        self, sample: torch.Tensor, timestep: Union[float, torch.Tensor, None] = None
    ) -> torch.Tensor:
        """Return ``sample`` unchanged: score models take the noisy sample as it is."""
        return sample

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: Union[float, torch.Tensor]
    ) -> torch.Tensor:
        """Perturb clean samples for training: ``x + sigma * z`` (NCSN eq. 5; the VE SDE's transition kernel).

        Args:
            original_samples (`torch.Tensor`): Clean data ``x``, shape ``(batch, ...)``.
            noise (`torch.Tensor`): Standard normal ``z``, same shape.
            timesteps (`float` or `torch.Tensor`): Noise level ``sigma``, a scalar or one per example ``(batch,)``.

        Returns:
            `torch.Tensor`: The noisy samples.
        """
        return add_noise_per_example(original_samples, noise, timesteps)

    def _init_step_index(self, timestep: Union[float, torch.Tensor]) -> None:
        self._step_index = 0  # a sampling run starts at the first timestep

    def _next_step_index(
        self, model_output: torch.Tensor, timestep: Union[float, torch.Tensor], sample: torch.Tensor
    ) -> int:
        """Check a ``step`` call's tensors and return the index of the timestep it is for."""
        if model_output.shape != sample.shape:
            raise ValueError(f"model_output shape {tuple(model_output.shape)} != sample shape {tuple(sample.shape)}.")
        if self._step_index is None:
            self._init_step_index(timestep)
        if self._step_index >= len(self.timesteps):
            raise ValueError(
                f"step was called {self._step_index + 1} times but there are only {len(self.timesteps)} timesteps; "
                "call `set_timesteps` again to start a new run."
            )
        return self._step_index
