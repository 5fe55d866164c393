"""Test-only helpers (kept out of the package)."""

from __future__ import annotations

import threading

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput


def reset_accelerate_state() -> None:
    """Forget accelerate's process-wide state, so that several trainings can run in one Python process."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(reset_partial_state=True)
    PartialState._reset_state()
    GradientState._reset_state()


class RunGauge:
    """Thread-safe count of running calls and its peak: wrap a function with `wrap` to measure concurrency."""

    def __init__(self):
        self._lock = threading.Lock()
        self.current = 0
        self.peak = 0

    def wrap(self, function):
        def counted(*args, **kwargs):
            with self._lock:
                self.current += 1
                self.peak = max(self.peak, self.current)
            try:
                return function(*args, **kwargs)
            finally:
                with self._lock:
                    self.current -= 1

        return counted

    def reset_peak(self) -> None:
        """Forget the peak (start a new measurement)."""
        with self._lock:
            self.peak = self.current


class CorrelatedGaussianScore(ModelMixin, ConfigMixin):
    """The exact score of ``N(mean, covariance)`` perturbed by sigma, ``-(covariance + sigma^2 I)^-1 (x - mean)``, as a
    score model (``model(x, sigma).sample``) for flat ``(batch, D)`` samples: pixels that inform one another."""

    @register_to_config
    def __init__(self, mean, covariance):
        super().__init__()
        covariance_t = torch.as_tensor(covariance, dtype=torch.float64)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance_t)
        self.register_buffer("center", torch.as_tensor(mean, dtype=torch.float64))
        self.register_buffer("eigenvalues", eigenvalues)
        self.register_buffer("eigenvectors", eigenvectors)

    @property
    def sample_shape(self):
        return (len(self.config.mean),)

    def forward(self, sample, timestep, return_dict=True):
        sigma = torch.as_tensor(timestep, dtype=torch.float64).reshape(-1, 1)
        rotated = (sample.double() - self.center) @ self.eigenvectors
        score = -(rotated / (self.eigenvalues + sigma**2)) @ self.eigenvectors.T
        return UNet2DOutput(sample=score.to(sample.dtype))


def gaussian_conditional(mean, covariance, known_index, known_values):
    """Mean and covariance of the unknown coordinates of ``N(mean, covariance)`` given the known ones."""
    mean, covariance = torch.as_tensor(mean, dtype=torch.float64), torch.as_tensor(covariance, dtype=torch.float64)
    known = torch.as_tensor(known_index)
    unknown = torch.tensor([i for i in range(len(mean)) if i not in set(known.tolist())])
    gain = covariance[unknown][:, known] @ torch.linalg.inv(covariance[known][:, known])
    conditional_mean = mean[unknown] + gain @ (torch.as_tensor(known_values, dtype=torch.float64) - mean[known])
    conditional_covariance = covariance[unknown][:, unknown] - gain @ covariance[known][:, unknown]
    return unknown, conditional_mean, conditional_covariance
