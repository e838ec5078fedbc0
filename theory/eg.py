"""EG step-size adaptation (Amid, Anil, Fifty, Warmuth 2022): per-coordinate gains and a
global scale moved by exponentiated gradient on top of a base direction (SGD's or Adam's),
and the exponents that move them (``eg_exponents``), written once for NumPy and torch
(``torch_impl.eg``). docs/spec.md, "EG step-size adaptation"."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from paramscale.theory import _validate as check

__all__ = ["EGState", "EG_EXPONENTS", "eg_exponents", "eg_stepsize"]


class EGState(NamedTuple):
    """EG's state: step count, per-coordinate gains ``p``, global scale ``s``, the gradient
    EMA ``m``, the last update ``h`` and (Adam base) the second moment ``v``."""

    k: int
    p: np.ndarray
    s: float
    m: np.ndarray
    h: np.ndarray
    v: np.ndarray
    q: float = 0.0  # the EMA of ||g||**2 (exponent="normalised")


EG_EXPONENTS = ("raw", "cosine", "normalised")


def eg_exponents(
    kind: str, m: Any, g: Any, v_hat: Any, hg: float, h_norm: float, g_norm: float, q_hat: float
) -> tuple[Any, float]:
    """The gains' and the scale's EG exponents (before gamma_p, gamma_s), written once for
    NumPy and torch (docs/spec.md, "EG step-size adaptation"): ``raw`` m_{k-1} g_k and
    <h_{k-1}, g_k>; ``cosine`` sign(m_{k-1} g_k) (each coordinate's cosine) and
    cos(h_{k-1}, g_k); ``normalised`` m_{k-1} g_k / vhat_k and <h_{k-1}, g_k> / (||h_{k-1}||
    sqrt(qhat_k)), by running second moments. A zero norm gives a zero exponent."""
    if kind == "raw":
        return m * g, hg
    if kind == "cosine":
        scale = hg / (h_norm * g_norm) if h_norm * g_norm > 0 else 0.0
        return (m * g).sign() if hasattr(m, "sign") else np.sign(m * g), scale
    denom = h_norm * math.sqrt(q_hat)
    scale = hg / denom if denom > 0 else 0.0
    return m * g / (v_hat + 1e-30), scale


@dataclass(frozen=True)
class eg_stepsize:
    """Step-size adaptation by exponentiated gradient (Amid et al. 2022, arXiv 2202.00145)
    on top of a base direction ``u_k``.

    No public code exists and the seed text has no equations; these are the equations of
    the only rendering found (a third-party survey, docs/spec.md "EG step-size
    adaptation"), UNVERIFIED against the paper's Algorithm box:

        p_k = p_{k-1} * exp(gamma_p * m_{k-1} * g_k)      per-coordinate gains (EG)
        s_k = s_{k-1} * exp(gamma_s * <h_{k-1}, g_k>)     global scale (EG)
        m_k = beta1 m_{k-1} + (1 - beta1) g_k
        h_k = mu h_{k-1} + lr * (p_k * u_k)
        x_{k+1} = x_k - s_k h_k

    ``base="sgd"``: ``u_k = g_k`` (the survey's form). ``base="adam"``: ``u_k = mhat_k /
    (sqrt(vhat_k) + eps)``, Adam's direction (the paper augments "a given optimizer"; its
    experiments use Adam-like bases), with ``mu = 0`` (Adam's m is the momentum).
    Choices (no source for them): s_0 = 1, p_0 = 1, m_{-1} = h_{-1} = 0, no gain
    normalisation or clipping. With gamma_p = gamma_s = 0 it is heavy-ball SGD
    (``torch.optim.SGD(lr, momentum=mu)``) or ``torch.optim.Adam(lr, (beta1, beta2), eps)``,
    which the tests check; s and p stay positive."""

    lr: float = 0.1
    mu: float = 0.9
    beta1: float = 0.9
    gamma_p: float = 0.01
    gamma_s: float = 0.01
    base: str = "sgd"
    beta2: float = 0.999
    eps: float = 1e-8
    exponent: str = "raw"
    name: str = "eg_stepsize"

    def __post_init__(self) -> None:
        check.positive("lr", self.lr)
        check.unit_interval("mu", self.mu)
        check.unit_interval("beta1", self.beta1)
        check.non_negative("gamma_p", self.gamma_p)
        check.non_negative("gamma_s", self.gamma_s)
        check.choice("base", self.base, ("sgd", "adam"))
        check.choice("exponent", self.exponent, EG_EXPONENTS)
        check.unit_interval("beta2", self.beta2)
        check.positive("eps", self.eps)

    def init(self, x0: np.ndarray) -> EGState:
        z = np.zeros_like(np.asarray(x0, dtype=np.float64))
        return EGState(0, z + 1.0, 1.0, z, z, z)

    def step(self, state: EGState, x: np.ndarray, loss: Any, grad: Any):
        g = check.gradient(grad, np.asarray(x), state.k)
        n = state.k + 1
        v = self.beta2 * state.v + (1 - self.beta2) * g * g
        q = self.beta2 * state.q + (1 - self.beta2) * float(g @ g)
        c2 = 1 - self.beta2**n
        e_p, e_s = eg_exponents(
            self.exponent, state.m, g, v / c2, float(state.h @ g), float(np.linalg.norm(state.h)),
            float(np.linalg.norm(g)), q / c2,
        )  # fmt: skip
        with np.errstate(over="ignore"):
            p = state.p * np.exp(self.gamma_p * e_p)
            s = state.s * float(np.exp(self.gamma_s * e_s))
        if not (math.isfinite(s) and np.all(np.isfinite(p))):
            raise FloatingPointError(
                f"EG step size overflowed at step {state.k}: step refused (diverged)"
            )
        m = state.m + (1 - self.beta1) * (g - state.m)  # torch's lerp form
        if self.base == "sgd":
            u = g
        else:  # Adam's direction, bias-corrected as torch.optim.Adam
            u = (m / (1 - self.beta1**n)) / (np.sqrt(v) / math.sqrt(c2) + self.eps)
        h = self.mu * state.h + self.lr * (p * u)
        new = EGState(state.k + 1, p, s, m, h, v, q)
        return x - s * h, new, {"lr": s * self.lr, "min_gain": float(np.min(p))}
