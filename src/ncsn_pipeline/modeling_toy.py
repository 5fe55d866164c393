"""Small score models: exact scores of a Gaussian mixture and of a correlated Gaussian, and an MLP for
low-dimensional data.

Both follow the package's score contract, ``model(sample, timestep).sample = s(x, sigma)`` with the
noise level ``sigma`` passed as ``timestep``, so every scheduler and `NCSNPipeline` can drive them.
"""

from __future__ import annotations

import math
import numbers
from typing import List, Optional, Sequence, Tuple, Union

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.models.unets.unet_2d import UNet2DOutput
from torch import nn

from .checks import check_bool, check_integer
from .guidance import ClassifierOutput
from .modeling_utils import StrictLoadingMixin, as_float64_tensor, check_all, model_class_labels

# Limits of `ToyScoreModel` (a config file is untrusted input): widths, depth and 50M parameters (200 MB).
MAX_TOY_WIDTH = 65_536
MAX_TOY_LAYERS = 64
MAX_TOY_PARAMETERS = 50_000_000


def _sigma_per_example(timestep: Union[float, torch.Tensor], sample: torch.Tensor) -> torch.Tensor:
    """Return the noise level as a ``(batch,)`` tensor on the sample's device, validated."""
    sigma = torch.as_tensor(timestep, device=sample.device)
    if sigma.ndim == 0:
        sigma = sigma.expand(sample.shape[0])
    elif sigma.shape != (sample.shape[0],):
        raise ValueError(
            f"timestep (the noise level sigma) must be a scalar or of shape ({sample.shape[0]},), "
            f"got shape {tuple(sigma.shape)}."
        )
    check_all(
        torch.isfinite(sigma) & (sigma > 0),
        "timestep (the noise level sigma) must be positive and finite",
        sigma.tolist,
    )
    return sigma


class GaussianMixtureScore(StrictLoadingMixin, ModelMixin, ConfigMixin):
    r"""Exact score of a Gaussian mixture perturbed by Gaussian noise, for checking samplers.

    The data distribution is ``p(x) = sum_k w_k N(x; mu_k, s_k**2 I)``. Perturbed by ``N(0, sigma**2 I)``
    it stays a mixture, ``p_sigma(x) = sum_k w_k N(x; mu_k, (s_k**2 + sigma**2) I)``, whose score is

        s(x, sigma) = sum_k r_k(x) (mu_k - x) / (s_k**2 + sigma**2),

    with the posterior responsibilities ``r_k(x) ∝ w_k N(x; mu_k, (s_k**2 + sigma**2) I)`` (computed
    with log-sum-exp, in float64). Any sampler driven by this model samples the true perturbed
    distribution up to its own discretisation error, so its statistics can be tested exactly:
    NCSN's toy (section 3.2) is ``GaussianMixtureScore.ncsn_toy()``.

    The model has no trainable parameters; its configuration (``config.json``) is the whole
    definition. The means, weights and variances are kept as (saved) float64 buffers.

    Args:
        weights (`Sequence[float]`): Mixture weights ``w_k``, positive, summing to 1 (within 1e-6).
        means (`Sequence`): Mode means ``mu_k``, one per weight; each mode is an array of the data
            shape, e.g. ``[[-5, -5], [5, 5]]`` for 2-D points or ``K`` nested ``1 x 8 x 8`` lists
            for images. The data shape (``sample_shape``) is the shape of one mean.
        stds (`Sequence[float]` or `float`): Per-mode standard deviations ``s_k > 0`` (a single
            number is used for every mode).
        class_conditional (`bool`, defaults to `False`): Each mode is a class: ``forward`` then takes
            ``class_labels`` and returns the score of the chosen mode alone, ``(mu_y - x) / (s_y**2 + sigma**2)``
            (the exact class-conditional score; `GaussianMixtureClassifier` is the matching exact classifier).
        unconditional_class (`bool`, defaults to `False`): With ``class_conditional``, also take the "no class"
            label (index K, or ``class_labels=None``) and return the mixture's score there, as a model trained with
            label dropout does: the exact reference of classifier-free guidance.

    Example:
        >>> import torch
        >>> model = GaussianMixtureScore.ncsn_toy()
        >>> model(torch.tensor([[5.0, 5.0]]), torch.tensor([1.0])).sample  # at a mode the score is 0
        tensor([[0., 0.]])
    """

    @register_to_config
    def __init__(
        self,
        weights: Sequence[float] = (0.2, 0.8),
        means: Sequence = ((-5.0, -5.0), (5.0, 5.0)),
        stds: Union[Sequence[float], float] = (1.0, 1.0),
        class_conditional: bool = False,
        unconditional_class: bool = False,
    ):
        super().__init__()
        check_bool("class_conditional", class_conditional)
        check_bool("unconditional_class", unconditional_class)
        if unconditional_class and not class_conditional:
            raise ValueError("unconditional_class=True needs class_conditional=True (the modes are the classes).")
        weights_t = as_float64_tensor("weights", weights)
        means_t = as_float64_tensor("means", means)
        if weights_t.ndim != 1 or len(weights_t) < 1:
            raise ValueError(f"weights must be a non-empty list of numbers, got {weights!r}.")
        if not torch.isfinite(weights_t).all() or (weights_t <= 0).any() or abs(weights_t.sum().item() - 1) > 1e-6:
            raise ValueError(f"weights must be positive and sum to 1, got {weights_t.tolist()}.")
        if means_t.ndim < 2 or means_t.shape[0] != len(weights_t):
            raise ValueError(
                f"means must hold one array per weight ({len(weights_t)} weights), got shape {tuple(means_t.shape)}."
            )
        if not torch.isfinite(means_t).all():
            raise ValueError("means must be finite.")
        if isinstance(stds, numbers.Real):
            stds = [float(stds)] * len(weights_t)
        stds_t = as_float64_tensor("stds", stds)
        if stds_t.shape != weights_t.shape or not torch.isfinite(stds_t).all() or (stds_t <= 0).any():
            raise ValueError(f"stds must be {len(weights_t)} positive finite numbers, got {stds!r}.")
        # Store plain lists in the config so it is JSON-serialisable whatever the caller passed.
        self.register_to_config(weights=weights_t.tolist(), means=means_t.tolist(), stds=stds_t.tolist())
        self.register_buffer("mode_log_weights", weights_t.log())
        self.register_buffer("mode_means", means_t.reshape(len(weights_t), -1))
        self.register_buffer("mode_variances", stds_t**2)

    @property
    def num_classes(self) -> Optional[int]:
        """The number of modes if the model is class-conditional, else `None`."""
        return len(self.config.weights) if self.config.class_conditional else None

    @property
    def unconditional_label(self) -> Optional[int]:
        """The "no class" label (index K) when ``unconditional_class``, else `None`."""
        return self.num_classes if self.config.get("unconditional_class") else None

    @property
    def sample_shape(self) -> Tuple[int, ...]:
        """Shape of one sample (the shape of one mean)."""
        return tuple(torch.as_tensor(self.config.means).shape[1:])

    @classmethod
    def ncsn_toy(cls) -> GaussianMixtureScore:
        """NCSN's toy distribution ``0.2 N((-5, -5), I) + 0.8 N((5, 5), I)`` (Song & Ermon 2019, section 3.2)."""
        return cls(weights=[0.2, 0.8], means=[[-5.0, -5.0], [5.0, 5.0]], stds=[1.0, 1.0])

    def mode_weights(self, points: torch.Tensor) -> List[float]:
        """Fraction of ``points`` nearest to each mode's mean: how a sampler shares mass between the modes.

        >>> model = GaussianMixtureScore.ncsn_toy()
        >>> model.mode_weights(torch.tensor([[4.0, 6.0], [-5.0, -4.0], [5.0, 5.0], [6.0, 6.0]]))
        [0.25, 0.75]
        """
        means = self.mode_means.to(points.device, torch.float64)
        nearest = torch.cdist(points.reshape(points.shape[0], -1).double(), means).argmin(dim=1)
        return (torch.bincount(nearest, minlength=means.shape[0]).double() / points.shape[0]).tolist()

    def log_prob(self, sample: torch.Tensor, sigma: Union[float, torch.Tensor]) -> torch.Tensor:
        """Log-density of the ``sigma``-perturbed mixture at ``sample`` (float64, one value per example).

        Args:
            sample (`torch.Tensor`): Points of shape ``(batch, *sample_shape)``.
            sigma (`float` or `torch.Tensor`): Noise level, scalar or ``(batch,)``.

        Returns:
            `torch.Tensor`: ``log p_sigma(x)``, shape ``(batch,)``.
        """
        flat, variances = self._flatten(sample, sigma)
        return torch.logsumexp(self._log_joint(flat, variances), dim=1)

    def _flatten(self, sample: torch.Tensor, sigma: Union[float, torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        if tuple(sample.shape[1:]) != self.sample_shape:
            raise ValueError(
                f"sample must have shape (batch, {', '.join(map(str, self.sample_shape))}), got {tuple(sample.shape)}."
            )
        sigma = _sigma_per_example(sigma, sample).to(torch.float64)
        flat = sample.reshape(sample.shape[0], -1).to(torch.float64)
        # Variance of every mode at every example's noise level: (batch, K).
        return flat, self.mode_variances.double()[None, :] + sigma[:, None] ** 2

    def _log_joint(self, flat: torch.Tensor, variances: torch.Tensor) -> torch.Tensor:
        """``log w_k + log N(x; mu_k, v_k I)`` for every example and mode, shape (batch, K); float64 whatever the
        module's dtype (a model moved to bfloat16 keeps its rounded parameters but computes its score exactly)."""
        dim = flat.shape[1]
        squared_distances = torch.cdist(flat, self.mode_means.double()) ** 2
        return (
            self.mode_log_weights.double()
            - 0.5 * squared_distances / variances
            - 0.5 * dim * torch.log(2 * math.pi * variances)
        )

    def forward(
        self,
        sample: torch.Tensor,
        timestep: Union[float, torch.Tensor],
        class_labels: Optional[torch.Tensor] = None,
        return_dict: bool = True,
    ) -> Union[UNet2DOutput, Tuple[torch.Tensor]]:
        """Exact score ``grad_x log p_sigma(x)`` of the perturbed mixture (or ``grad_x log p_sigma(x | y)``).

        Args:
            sample (`torch.Tensor`): Points of shape ``(batch, *sample_shape)``.
            timestep (`float` or `torch.Tensor`): The noise level ``sigma``, scalar or ``(batch,)``.
            class_labels (`torch.Tensor`, *optional*): The mode ``y`` of each example (class-conditional models
                only; required there).
            return_dict (`bool`, defaults to `True`): Return a `UNet2DOutput` instead of a tuple.

        Returns:
            `UNet2DOutput` or `tuple`: ``.sample`` is the score, same shape and dtype as ``sample``.
        """
        flat, variances = self._flatten(sample, timestep)
        batch, classes, unconditional = sample.shape[0], self.num_classes, self.unconditional_label
        labels = model_class_labels(class_labels, batch, classes, unconditional, flat.device)
        # 1. Responsibilities r_k(x) of each mode under the perturbed mixture (one-hot at y given a class; the
        #    mixture's own for the "no class" label).
        modes = len(self.mode_variances)
        responsibilities = torch.softmax(self._log_joint(flat, variances), dim=1)
        if labels is not None:
            chosen = torch.nn.functional.one_hot(labels.clamp(max=modes - 1), modes).to(flat.dtype)
            responsibilities = torch.where((labels < modes)[:, None], chosen, responsibilities)
        # 2. Score = sum_k r_k (mu_k - x) / v_k, i.e. (sum_k (r_k / v_k) mu_k) - (sum_k r_k / v_k) x.
        weighted = responsibilities / variances
        score = weighted @ self.mode_means.double() - weighted.sum(dim=1, keepdim=True) * flat
        score = score.reshape(sample.shape).to(sample.dtype)
        if not return_dict:
            return (score,)
        return UNet2DOutput(sample=score)


class GaussianMixtureClassifier(GaussianMixtureScore):
    r"""The exact noise-conditional classifier of a Gaussian mixture's modes, for testing classifier guidance.

    ``log p_sigma(y = k | x) = log w_k N(x; mu_k, (s_k**2 + sigma**2) I) - log p_sigma(x)``: the logits are the
    log joint densities (softmax gives the posterior responsibilities). Guiding `GaussianMixtureScore` with it at
    ``guidance_scale=1`` follows the exact class-conditional score.

    Example:
        >>> import torch
        >>> classifier = GaussianMixtureClassifier.ncsn_toy()
        >>> classifier(torch.tensor([[4.0, 4.0]]), 1.0).logits.softmax(dim=1)[0, 1].item() > 0.999
        True
    """

    @property
    def num_classes(self) -> int:
        """The number of modes (classes)."""
        return len(self.config.weights)

    def forward(self, sample: torch.Tensor, timestep: Union[float, torch.Tensor], return_dict: bool = True):
        """Logits ``log w_k N(x; mu_k, (s_k**2 + sigma**2) I)``, shape ``(batch, K)``, in `ClassifierOutput`."""
        flat, variances = self._flatten(sample, timestep)
        logits = self._log_joint(flat, variances).to(sample.dtype)
        return ClassifierOutput(logits=logits) if return_dict else (logits,)


class GaussianScore(StrictLoadingMixin, ModelMixin, ConfigMixin):
    r"""Exact score of a Gaussian with a full covariance, for checking samplers on data whose pixels inform each other.

    Perturbed by ``N(0, sigma**2 I)``, ``N(mu, S)`` becomes ``N(mu, S + sigma**2 I)``, whose score is

        s(x, sigma) = -(S + sigma**2 I)^-1 (x - mu),

    computed in the eigenbasis of ``S`` (float64). Conditionals of a Gaussian are Gaussian in closed form, so
    inpainting and colorization can be checked exactly against it (``tests/test_inpainting.py``,
    ``benchmarks/inpainting_bias.py``).

    Args:
        mean (`Sequence[float]`): ``mu``, one entry per dimension of the flattened sample.
        covariance (`Sequence[Sequence[float]]`): ``S``, symmetric positive definite, ``D x D``.
        shape (`Sequence[int]`, *optional*): The sample shape (default ``(D,)``), e.g. ``(3, 1, 2)`` for an RGB
            image of 1 x 2 pixels; the covariance is over the flattened (C, H, W) order.

    Example:
        >>> import torch
        >>> model = GaussianScore(mean=[0.0, 0.0], covariance=[[1.0, 0.5], [0.5, 1.0]])
        >>> model(torch.tensor([[1.0, 0.0]]), 1.0).sample  # -(S + I)^-1 x
        tensor([[-0.5333,  0.1333]])
    """

    @register_to_config
    def __init__(
        self,
        mean: Sequence[float] = (0.0, 0.0),
        covariance: Sequence[Sequence[float]] = ((1.0, 0.0), (0.0, 1.0)),
        shape: Optional[Sequence[int]] = None,
    ):
        super().__init__()
        mean_t = as_float64_tensor("mean", mean)
        covariance_t = as_float64_tensor("covariance", covariance)
        if mean_t.ndim != 1 or len(mean_t) < 1 or not torch.isfinite(mean_t).all():
            raise ValueError(f"mean must be a non-empty list of finite numbers, got {mean!r}.")
        dimension = len(mean_t)
        if covariance_t.shape != (dimension, dimension) or not torch.isfinite(covariance_t).all():
            raise ValueError(
                f"covariance must be a finite {dimension} x {dimension} matrix (one row per mean entry), got shape "
                f"{tuple(covariance_t.shape)}."
            )
        if not torch.allclose(covariance_t, covariance_t.T, rtol=1e-6, atol=1e-9):
            raise ValueError("covariance must be symmetric.")
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance_t)
        if eigenvalues.min() <= 0:
            smallest = float(eigenvalues.min())
            raise ValueError(f"covariance must be positive definite; its smallest eigenvalue is {smallest:.3g}.")
        shape = (dimension,) if shape is None else tuple(check_integer("shape entry", side) for side in shape)
        if math.prod(shape) != dimension:
            raise ValueError(f"shape {shape} holds {math.prod(shape)} values, but mean has {dimension}.")
        self.register_to_config(mean=mean_t.tolist(), covariance=covariance_t.tolist(), shape=list(shape))
        self.register_buffer("center", mean_t)
        self.register_buffer("eigenvalues", eigenvalues)
        self.register_buffer("eigenvectors", eigenvectors)

    @property
    def sample_shape(self) -> Tuple[int, ...]:
        """Shape of one sample (``shape``)."""
        return tuple(self.config.shape)

    def conditional(
        self, known_index: Sequence[int], known_values: Sequence[float]
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The distribution of the other (flattened) coordinates given the ``known_index`` ones, in closed form.

        ``mu_u + S_uk S_kk^-1 (y - mu_k)`` and ``S_uu - S_uk S_kk^-1 S_ku`` (the Schur complement).

        Returns:
            `tuple`: the unknown coordinates' indices, their conditional mean and covariance (float64).

        >>> GaussianScore(mean=[0.0, 1.0], covariance=[[1.0, 0.5], [0.5, 1.0]]).conditional([0], [2.0])
        (tensor([1]), tensor([2.], dtype=torch.float64), tensor([[0.7500]], dtype=torch.float64))
        """
        covariance = self.eigenvectors @ torch.diag(self.eigenvalues) @ self.eigenvectors.T
        known = torch.as_tensor(list(known_index), dtype=torch.long)
        unknown = torch.tensor([i for i in range(len(self.center)) if i not in set(known.tolist())], dtype=torch.long)
        gain = covariance[unknown][:, known] @ torch.linalg.inv(covariance[known][:, known])
        values = as_float64_tensor("known_values", known_values).reshape(-1)
        mean = self.center[unknown] + gain @ (values - self.center[known])
        return unknown, mean, covariance[unknown][:, unknown] - gain @ covariance[known][:, unknown]

    def forward(
        self, sample: torch.Tensor, timestep: Union[float, torch.Tensor], return_dict: bool = True
    ) -> Union[UNet2DOutput, Tuple[torch.Tensor]]:
        """Exact score ``grad_x log p_sigma(x)`` of the perturbed Gaussian (arguments as `GaussianMixtureScore`)."""
        if tuple(sample.shape[1:]) != self.sample_shape:
            raise ValueError(
                f"sample must have shape (batch, {', '.join(map(str, self.sample_shape))}), got {tuple(sample.shape)}."
            )
        sigma = _sigma_per_example(timestep, sample).to(torch.float64)[:, None]
        # float64 whatever the module's dtype: a model moved to bfloat16 keeps its (rounded) parameters but computes
        # its score exactly.
        center, eigenvalues, eigenvectors = self.center.double(), self.eigenvalues.double(), self.eigenvectors.double()
        rotated = (sample.reshape(sample.shape[0], -1).to(torch.float64) - center) @ eigenvectors
        score = -(rotated / (eigenvalues + sigma**2)) @ eigenvectors.T
        score = score.reshape(sample.shape).to(sample.dtype)
        if not return_dict:
            return (score,)
        return UNet2DOutput(sample=score)


class ToyScoreModel(StrictLoadingMixin, ModelMixin, ConfigMixin):
    r"""A small noise-conditional MLP score network for low-dimensional data (2-D toys).

    ``s(x, sigma) = MLP([x, log(sigma)]) / sigma``: the noise level enters as ``log(sigma)`` (scale-free
    over a wide range of levels) and the output is divided by ``sigma``, as NCSNv2's Technique 3 does
    for images, so that the network's output has unit scale at every level (the true score of data
    perturbed by ``N(0, sigma**2 I)`` grows like ``1 / sigma``).

    Args:
        data_dim (`int`, defaults to 2): Dimensions of one example.
        hidden_size (`int`, defaults to 128): Width of the hidden layers.
        num_layers (`int`, defaults to 3): Number of hidden layers (>= 1).

    Example:
        >>> import torch
        >>> model = ToyScoreModel(data_dim=2, hidden_size=32)
        >>> model(torch.zeros(5, 2), torch.full((5,), 0.5)).sample.shape
        torch.Size([5, 2])
    """

    @register_to_config
    def __init__(self, data_dim: int = 2, hidden_size: int = 128, num_layers: int = 3):
        super().__init__()
        data_dim = check_integer("data_dim", data_dim, high=MAX_TOY_WIDTH)
        hidden_size = check_integer("hidden_size", hidden_size, high=MAX_TOY_WIDTH)
        num_layers = check_integer("num_layers", num_layers, high=MAX_TOY_LAYERS)
        num_parameters = (data_dim + 2) * hidden_size + (num_layers - 1) * (hidden_size + 1) * hidden_size
        num_parameters += (hidden_size + 1) * data_dim
        if num_parameters > MAX_TOY_PARAMETERS:
            raise ValueError(
                f"ToyScoreModel(data_dim={data_dim}, hidden_size={hidden_size}, num_layers={num_layers}) would have "
                f"{num_parameters:,} parameters, more than the limit of {MAX_TOY_PARAMETERS:,} for this small MLP."
            )
        layers = []
        width_in = data_dim + 1
        for _ in range(num_layers):
            layers += [nn.Linear(width_in, hidden_size), nn.SiLU()]
            width_in = hidden_size
        layers.append(nn.Linear(hidden_size, data_dim))
        self.net = nn.Sequential(*layers)

    @property
    def sample_shape(self) -> Tuple[int]:
        """Shape of one sample: ``(data_dim,)``."""
        return (self.config.data_dim,)

    def forward(
        self, sample: torch.Tensor, timestep: Union[float, torch.Tensor], return_dict: bool = True
    ) -> Union[UNet2DOutput, Tuple[torch.Tensor]]:
        """Estimate the score ``s(x, sigma)``.

        Args:
            sample (`torch.Tensor`): Points of shape ``(batch, data_dim)``.
            timestep (`float` or `torch.Tensor`): The noise level ``sigma``, scalar or ``(batch,)``.
            return_dict (`bool`, defaults to `True`): Return a `UNet2DOutput` instead of a tuple.

        Returns:
            `UNet2DOutput` or `tuple`: ``.sample`` is the score estimate, shape ``(batch, data_dim)``.
        """
        if sample.ndim != 2 or sample.shape[1] != self.config.data_dim:
            raise ValueError(f"sample must have shape (batch, {self.config.data_dim}), got {tuple(sample.shape)}.")
        sigma = _sigma_per_example(timestep, sample).to(sample.dtype)
        features = torch.cat([sample, sigma.log()[:, None]], dim=1)
        score = self.net(features) / sigma[:, None]
        if not return_dict:
            return (score,)
        return UNet2DOutput(sample=score)
