"""What the network predicts: the noise eps, the velocity v, or the clean sample x0 — and how to convert.

With x_t = sqrt(ab) x0 + sqrt(1 - ab) eps (DDPM eq. 4), any one of (x0, eps, v) and x_t determine the
others. v = sqrt(ab) eps - sqrt(1 - ab) x0 is Salimans & Ho 2022's velocity (Appendix D), used by SD 2.x-v.
``alpha_bar`` broadcasts against ``x_t`` (e.g. [B, 1, 1, 1]; :func:`append_dims` makes it so).
"""

from __future__ import annotations

from enum import Enum

from torch import Tensor

from ldm_lab.names import unknown_name_error


class Prediction(str, Enum):
    """What the network is trained to output (LDM eq. 1; Salimans & Ho 2022 for v). A plain string works too."""

    EPS = "eps"  # the added noise
    V = "v"      # v = sqrt(ab) eps - sqrt(1 - ab) x0
    X0 = "x0"    # the clean sample


PREDICTIONS: tuple[str, ...] = tuple(p.value for p in Prediction)


def check_prediction(prediction: Prediction | str) -> str:
    """The prediction type as a plain string ("eps", "v" or "x0"); an unknown one raises an error listing them."""
    if prediction not in PREDICTIONS:
        raise unknown_name_error("prediction type", prediction, PREDICTIONS,
                                 advice="diffusers calls them 'epsilon', 'v_prediction' and 'sample'.")
    return Prediction(prediction).value


def append_dims(value: Tensor, ndim: int) -> Tensor:
    """[B] -> [B, 1, …, 1] with ``ndim`` dimensions, to broadcast a per-sample scalar over an image."""
    return value.reshape(value.shape + (1,) * (ndim - value.ndim))


def add_noise(x0: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """The forward process in closed form (DDPM eq. 4): x_t = sqrt(ab) x0 + sqrt(1 - ab) eps."""
    return alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * eps


def eps_to_x0(eps: Tensor, x_t: Tensor, alpha_bar: Tensor) -> Tensor:
    """x0 = (x_t - sqrt(1 - ab) eps) / sqrt(ab) (DDPM eq. 15)."""
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def x0_to_eps(x0: Tensor, x_t: Tensor, alpha_bar: Tensor) -> Tensor:
    """eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab)."""
    return (x_t - alpha_bar.sqrt() * x0) / (1 - alpha_bar).sqrt()


def v_to_x0(v: Tensor, x_t: Tensor, alpha_bar: Tensor) -> Tensor:
    """x0 = sqrt(ab) x_t - sqrt(1 - ab) v (Salimans & Ho 2022, Appendix D)."""
    return alpha_bar.sqrt() * x_t - (1 - alpha_bar).sqrt() * v


def v_to_eps(v: Tensor, x_t: Tensor, alpha_bar: Tensor) -> Tensor:
    """eps = sqrt(ab) v + sqrt(1 - ab) x_t."""
    return alpha_bar.sqrt() * v + (1 - alpha_bar).sqrt() * x_t


def velocity(x0: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """The v target: v = sqrt(ab) eps - sqrt(1 - ab) x0 (Salimans & Ho 2022, eq. 8 in their notation)."""
    return alpha_bar.sqrt() * eps - (1 - alpha_bar).sqrt() * x0


def prediction_to_x0(output: Tensor, prediction: Prediction | str, x_t: Tensor, alpha_bar: Tensor) -> Tensor:
    """Read a network output of the given type as an x0 estimate."""
    if check_prediction(prediction) == "eps":
        return eps_to_x0(output, x_t, alpha_bar)
    return v_to_x0(output, x_t, alpha_bar) if prediction == "v" else output


def prediction_to_eps(output: Tensor, prediction: Prediction | str, x_t: Tensor, alpha_bar: Tensor) -> Tensor:
    """Read a network output of the given type as an eps estimate."""
    if check_prediction(prediction) == "eps":
        return output
    return v_to_eps(output, x_t, alpha_bar) if prediction == "v" else x0_to_eps(output, x_t, alpha_bar)


def training_target(prediction: Prediction | str, x0: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """What a network of the given prediction type is trained to output for (x0, eps) at level ab."""
    if check_prediction(prediction) == "eps":
        return eps
    return velocity(x0, eps, alpha_bar) if prediction == "v" else x0


def flow_interpolate(x0: Tensor, noise: Tensor, t: Tensor) -> Tensor:
    """Rectified flow's forward process (Esser et al. 2024, eq. 3 with a_t = 1 - t, b_t = t):
    x_t = (1 - t) x0 + t noise, a straight line from data (t = 0) to noise (t = 1)."""
    return (1 - t) * x0 + t * noise


def flow_velocity(x0: Tensor, noise: Tensor) -> Tensor:
    """The rectified-flow target dx_t/dt = noise - x0 (Esser et al. 2024, §2)."""
    return noise - x0
