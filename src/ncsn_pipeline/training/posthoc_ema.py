"""Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of Diffusion Models", §3):
choose the EMA length after training instead of before.

1. **Power-function EMA.** A profile with exponent ``gamma`` averages the weights of steps 1..t with weights
   proportional to ``tau^gamma``: after step t, ``ema = beta_t ema + (1 - beta_t) theta_t`` with
   ``beta_t = (1 - 1/t)^(gamma + 1)`` (`power_function_beta`). Unrolled, step tau gets exactly
   ``(tau^(gamma+1) - (tau-1)^(gamma+1)) / t^(gamma+1)`` (`power_function_weights`), so the profile's length grows
   with training instead of being fixed in steps as a constant decay's is.
2. **Its width**, ``sigma_rel``: the standard deviation of that weighting over [0, t] relative to t,
   ``sqrt(gamma + 1) / ((gamma + 2) sqrt(gamma + 3))`` (`gamma_to_sigma_rel`; its inverse solves a cubic,
   `sigma_rel_to_gamma`). EDM2 tracks two profiles, ``sigma_rel`` 0.05 and 0.10, and saves both every so many steps.
3. **Reconstruction.** Any other profile (t_o, gamma_o) is approximated by a weighted sum of the snapshots: the
   weights minimise the squared distance between the weighting functions over tau, so they solve ``A x = b`` with
   ``A_ij = <w_i, w_j>`` and ``b_i = <w_i, w_o>`` (`profile_inner_product`: for t_a <= t_b,
   ``(a+1)(b+1) / ((a+b+1) t_b) (t_a / t_b)^b``), then are normalised to sum to 1
   (`reconstruction_coefficients`). The fit's relative error says whether the snapshots can represent the
   target at all; `reconstruct` refuses a target they cannot.

Example:
    >>> round(gamma_to_sigma_rel(sigma_rel_to_gamma(0.05)), 6)
    0.05
    >>> round(sigma_rel_to_gamma(0.10), 3)
    6.937
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy
import torch

DEFAULT_SIGMA_RELS = (0.05, 0.10)  # EDM2's two tracked profiles
MAX_SIGMA_REL = 0.28  # below 1 / sqrt(12) = 0.2887 (gamma = 0): a positive exponent
MAX_RELATIVE_ERROR = 0.05  # of the reconstructed weighting function, beyond which a target is refused


def gamma_to_sigma_rel(gamma: float) -> float:
    """Step 2: the relative width of the power-function weighting with exponent ``gamma``."""
    return math.sqrt(gamma + 1) / ((gamma + 2) * math.sqrt(gamma + 3))


def sigma_rel_to_gamma(sigma_rel: float) -> float:
    """Step 2, inverted: ``(gamma+2)^2 (gamma+3) sigma_rel^2 = gamma + 1``, the cubic
    ``gamma^3 + 7 gamma^2 + (16 - s) gamma + (12 - s) = 0`` with ``s = sigma_rel^-2``; its largest real root."""
    if not 0.0 < sigma_rel <= MAX_SIGMA_REL:
        raise ValueError(f"sigma_rel must lie in (0, {MAX_SIGMA_REL}] (a positive exponent), got {sigma_rel}.")
    s = sigma_rel**-2
    roots = numpy.roots([1.0, 7.0, 16.0 - s, 12.0 - s])
    return float(max(root.real for root in roots if abs(root.imag) < 1e-9))


def power_function_beta(gamma: float, step: int) -> float:
    """Step 1: the decay applied at ``step`` (1-based); 0 at step 1, so the first average is the first weights."""
    return (1.0 - 1.0 / step) ** (gamma + 1.0)


def power_function_weights(gamma: float, step: int) -> torch.Tensor:
    """Step 1, unrolled: the weight of each of steps 1..``step`` in the profile after ``step`` (they sum to 1)."""
    tau = torch.arange(1, step + 1, dtype=torch.float64)
    return (tau ** (gamma + 1) - (tau - 1) ** (gamma + 1)) / float(step) ** (gamma + 1)


def profile_inner_product(step_a: float, gamma_a: float, step_b: float, gamma_b: float) -> float:
    """Step 3: ``integral of w_a(tau) w_b(tau) dtau`` for ``w(tau) = (gamma+1) tau^gamma / t^(gamma+1)`` on [0, t]."""
    if step_a > step_b:
        step_a, gamma_a, step_b, gamma_b = step_b, gamma_b, step_a, gamma_a
    ratio = (step_a / step_b) ** gamma_b
    return (gamma_a + 1) * (gamma_b + 1) / ((gamma_a + gamma_b + 1) * step_b) * ratio


def reconstruction_coefficients(
    snapshots: Sequence[Tuple[int, float]], target: Tuple[int, float]
) -> Tuple[List[float], float]:
    """Step 3: the weights of the snapshots ``(step, gamma)`` whose sum best approximates the profile ``target``
    ``(step, gamma)``, and the relative error of that approximation's weighting function (0: exact)."""
    if not snapshots:
        raise ValueError("no snapshots to reconstruct from.")
    gram = numpy.array([[profile_inner_product(*a, *b) for b in snapshots] for a in snapshots])
    right = numpy.array([profile_inner_product(*a, *target) for a in snapshots])
    # Least squares rather than a plain solve: nearby snapshots make the Gram matrix nearly singular.
    solution = numpy.linalg.lstsq(gram, right, rcond=None)[0]
    target_norm = profile_inner_product(*target, *target)
    residual = max(float(solution @ gram @ solution - 2 * solution @ right + target_norm), 0.0)
    coefficients = solution / solution.sum()
    return [float(value) for value in coefficients], math.sqrt(residual / target_norm)


class PowerFunctionEMA:
    """Step 1 for several profiles of a model's parameters at once (EDM2's ``sigma_rel`` 0.05 and 0.10 by default).

    Args:
        parameters: the model's ``named_parameters()`` (names key the snapshots).
        sigma_rels: the profiles' widths.

    Example:
        >>> model = torch.nn.Linear(2, 1)
        >>> ema = PowerFunctionEMA(model.named_parameters())
        >>> ema.update(model.named_parameters(), step=1)  # the first step copies the weights
        >>> torch.equal(ema.profiles[0.05]["weight"], model.weight.detach())
        True
    """

    def __init__(
        self, parameters: Iterable[Tuple[str, torch.Tensor]], sigma_rels: Sequence[float] = DEFAULT_SIGMA_RELS
    ):
        self.sigma_rels = tuple(float(value) for value in sigma_rels)
        self.gammas = {sigma_rel: sigma_rel_to_gamma(sigma_rel) for sigma_rel in self.sigma_rels}
        parameters = list(parameters)
        self.profiles: Dict[float, Dict[str, torch.Tensor]] = {
            sigma_rel: {name: parameter.detach().clone() for name, parameter in parameters}
            for sigma_rel in self.sigma_rels
        }

    @torch.no_grad()
    def update(self, parameters: Iterable[Tuple[str, torch.Tensor]], step: int) -> None:
        """Average in the weights after ``step`` (1-based, the optimizer steps so far)."""
        parameters = list(parameters)
        for sigma_rel, profile in self.profiles.items():
            beta = power_function_beta(self.gammas[sigma_rel], step)
            for name, parameter in parameters:
                profile[name].lerp_(parameter.detach().to(profile[name].dtype), 1.0 - beta)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """Every profile as flat tensors (``"<sigma_rel>/<name>"``) for safetensors: a checkpoint's or a snapshot's."""
        return {f"{sigma_rel}/{name}": tensor.detach().cpu().contiguous()
                for sigma_rel, profile in self.profiles.items() for name, tensor in profile.items()}  # fmt: skip

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        for sigma_rel, profile in self.profiles.items():
            for name, tensor in profile.items():
                tensor.copy_(state[f"{sigma_rel}/{name}"])


# ------------------------------------------------------------------------------------------- snapshots on disk
SNAPSHOT_FOLDER = "posthoc_ema"  # inside ncsn-train's output folder (never uploaded: pushes copy the pipeline only)


def snapshot_path(output_dir: Path, step: int) -> Path:
    return Path(output_dir) / SNAPSHOT_FOLDER / f"snapshot-{step:08d}.safetensors"


def save_snapshot(output_dir: Path, step: int, ema: PowerFunctionEMA) -> Path:
    """Write every profile after ``step`` into one safetensors file, atomically (a killed run leaves none half
    written); the metadata says the step and the profiles."""
    from safetensors.torch import save_file

    from ..files import write_atomically

    path = snapshot_path(output_dir, step)
    metadata = {"step": str(step), "sigma_rels": json.dumps(list(ema.sigma_rels))}
    write_atomically(path, lambda temporary: save_file(ema.state_dict(), temporary, metadata=metadata))
    return path


def list_snapshots(output_dir: Path) -> List[Tuple[int, Path]]:
    """The snapshots of a training folder, ``(step, file)`` by step."""
    found = []
    for path in (Path(output_dir) / SNAPSHOT_FOLDER).glob("snapshot-*.safetensors"):
        stem = path.stem.removeprefix("snapshot-")
        if stem.isdigit():
            found.append((int(stem), path))
    return sorted(found)


def remove_snapshots_after(output_dir: Path, step: int) -> List[Path]:
    """On resuming from the checkpoint of ``step``: the snapshots written after it are written again (identical,
    as the resumed run is exact); remove them so that none is left from a run that went on differently."""
    removed = [path for snapshot_step, path in list_snapshots(output_dir) if snapshot_step > step]
    for path in removed:
        path.unlink()
    return removed


def _snapshot_profiles(path: Path) -> List[float]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return [float(value) for value in json.loads(handle.metadata()["sigma_rels"])]


def reconstruction_plan(
    output_dir: Path, sigma_rel: float, at_step: Optional[int] = None
) -> Tuple[int, List[Tuple[int, Path]], List[float], float]:
    """What `reconstruct` will do, without reading any weights: the step, the snapshot files it uses, one
    coefficient per (snapshot, tracked profile) in file order, and the fit's relative error.

    Raises:
        ValueError: no snapshots; ``at_step`` before the first one or after the last; a ``sigma_rel`` outside
            (0, `MAX_SIGMA_REL`]; or one the snapshots cannot represent (relative error of the fitted weighting above
            `MAX_RELATIVE_ERROR`; the message gives the range they can).
    """
    snapshots = list_snapshots(output_dir)
    if not snapshots:
        raise ValueError(
            f"{output_dir} holds no post-hoc EMA snapshots ({SNAPSHOT_FOLDER}/): train with ncsn-train --posthoc_ema."
        )
    first, last = snapshots[0][0], snapshots[-1][0]
    at_step = last if at_step is None else at_step
    if not first <= at_step <= last:
        raise ValueError(f"--at_step must lie from the first to the last snapshot ({first} to {last}), got {at_step}.")
    target_gamma = sigma_rel_to_gamma(sigma_rel)
    used = [(step, path) for step, path in snapshots if step <= at_step]
    points = [(step, sigma_rel_to_gamma(tracked)) for step, path in used for tracked in _snapshot_profiles(path)]
    coefficients, error = reconstruction_coefficients(points, (at_step, target_gamma))
    if error > MAX_RELATIVE_ERROR:
        representable = [
            value / 1000 for value in range(5, int(MAX_SIGMA_REL * 1000) + 1, 5)
            if reconstruction_coefficients(points, (at_step, sigma_rel_to_gamma(value / 1000)))[1] <= MAX_RELATIVE_ERROR
        ]  # fmt: skip
        span = f"{min(representable):g} to {max(representable):g}" if representable else "none"
        raise ValueError(
            f"--sigma_rel {sigma_rel:g} cannot be reconstructed from these {len(used)} snapshots (the fitted "
            f"weighting is {error:.0%} off, above {MAX_RELATIVE_ERROR:.0%}); they represent sigma_rel {span} at step "
            f"{at_step}."
        )
    return at_step, used, coefficients, error


def reconstruct(
    output_dir: Path, sigma_rel: float, at_step: Optional[int] = None, progress: Optional[Callable[[str], None]] = None
) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    """The weights of the power-function profile ``sigma_rel`` at ``at_step`` (default: the last snapshot's step),
    from the snapshots of ``output_dir`` up to that step (step 3), and a record of how (for the card). Raises what
    `reconstruction_plan` raises."""
    from safetensors.torch import load_file

    at_step, used, coefficients, error = reconstruction_plan(output_dir, sigma_rel, at_step)
    tracked_widths = set()
    weights: Dict[str, torch.Tensor] = {}
    coefficient_of = iter(coefficients)  # in the plan's order: snapshot by snapshot, profile by profile
    for index, (step, path) in enumerate(used):
        state = load_file(str(path))
        for tracked in _snapshot_profiles(path):
            tracked_widths.add(tracked)
            coefficient, prefix = next(coefficient_of), f"{tracked}/"
            for key, tensor in state.items():
                if key.startswith(prefix):  # summed in float64: hundreds of terms of both signs
                    name = key[len(prefix) :]
                    weights[name] = weights.get(name, 0) + coefficient * tensor.double()
        if progress is not None:
            progress(f"snapshot {index + 1}/{len(used)} (step {step})")
    record = {
        "sigma_rel": sigma_rel,
        "step": at_step,
        "snapshots": len(used),
        "tracked_sigma_rels": sorted(tracked_widths),
        "relative_error": round(error, 6),
    }
    return {name: tensor.float() for name, tensor in weights.items()}, record
