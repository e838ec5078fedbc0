"""``EGStepSize``: the EG step-size adaptation (Amid et al. 2022) as a torch optimizer, the
equations of ``theory.eg.eg_stepsize`` (docs/spec.md, "EG step-size adaptation";
unverified: no public code exists) on lists of tensors:

    p_k = p_{k-1} * exp(gamma_p * m_{k-1} * g_k)      per-coordinate gains
    s_k = s_{k-1} * exp(gamma_s * <h_{k-1}, g_k>)     one global scale (float64, host)
    m_k = beta1 m_{k-1} + (1 - beta1) g_k
    h_k = mu h_{k-1} + lr * (p_k * u_k)               u_k = g_k, or Adam's direction
    x_{k+1} = x_k - s_k h_k

A baseline of ``paramscale train``, so written for clarity (one loop over tensors), not
speed. A step whose scale or gains overflow raises ``FloatingPointError`` and changes
nothing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from paramscale.theory.eg import eg_exponents, eg_stepsize

F64 = torch.float64


class EGStepSize(torch.optim.Optimizer):
    """EG step-size adaptation on top of SGD with momentum (``base="sgd"``) or Adam
    (``base="adam"``; then ``mu`` must be 0: Adam's first moment is the momentum).

    Args: ``lr`` (the base step, a group value), ``mu``, ``beta1``, ``gamma_p``,
    ``gamma_s``, ``base``, ``beta2``, ``eps``, ``exponent`` (``"raw"``, ``"cosine"``,
    ``"normalised"``: ``theory.eg.eg_exponents``): as
    ``theory.eg.eg_stepsize``, which checks them. The defaults, ``exponent="cosine"``
    and ``gamma_s=0.1``, are ``paramscale study eg``'s (docs/findings.md); the reference's
    are the survey's raw exponents. ``stats()`` returns ``k``,
    ``scale`` (s_k), ``q`` and ``lr`` (s_k times the first group's lr, the effective
    step)."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        mu: float | None = None,
        beta1: float = 0.9,
        gamma_p: float = 0.01,
        gamma_s: float = 0.1,
        base: str = "adam",
        beta2: float = 0.999,
        eps: float = 1e-8,
        exponent: str = "cosine",
    ) -> None:
        mu = (0.0 if base == "adam" else 0.9) if mu is None else mu
        rule = eg_stepsize(lr, mu, beta1, gamma_p, gamma_s, base, beta2, eps, exponent)
        if base == "adam" and mu != 0:
            raise ValueError(f"Invalid mu: {mu!r} with base='adam' (expected 0)")
        self.rule = rule
        super().__init__(params, {"lr": lr})
        self.state["global"] = {"k": 0, "scale": 1.0, "q": 0.0}

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        rule, glob = self.rule, self.state["global"]
        items = [
            (group, p) for group in self.param_groups for p in group["params"] if p.grad is not None
        ]
        if not items:
            return loss
        for _, p in items:
            if p.grad.is_sparse:
                raise TypeError("EGStepSize needs dense gradients")
            st = self.state[p]
            if not st:
                zeros = torch.zeros_like(p)
                st.update(gain=zeros + 1.0, m=zeros.clone(), h=zeros.clone(), v=zeros.clone())
        # <h_{k-1}, g_k>, ||h_{k-1}||**2, ||g_k||**2: one host sync
        sums = sum(
            (torch.stack([torch.dot(h, g), torch.dot(h, h), torch.dot(g, g)])
             for h, g in ((self.state[p]["h"].reshape(-1).to(F64), p.grad.reshape(-1).to(F64))
                          for _, p in items)),
            torch.zeros(3, dtype=F64),
        ).tolist()  # fmt: skip
        n = glob["k"] + 1
        c2 = 1 - rule.beta2**n
        q = rule.beta2 * glob["q"] + (1 - rule.beta2) * sums[2]
        vs = [self.state[p]["v"] * rule.beta2 + (1 - rule.beta2) * p.grad * p.grad
              for _, p in items]  # fmt: skip
        exps = [
            eg_exponents(rule.exponent, self.state[p]["m"], p.grad, v / c2, sums[0],
                         math.sqrt(sums[1]), math.sqrt(sums[2]), q / c2)
            for (_, p), v in zip(items, vs, strict=True)
        ]  # fmt: skip
        try:
            scale = glob["scale"] * math.exp(rule.gamma_s * exps[0][1])
        except OverflowError:
            scale = math.inf
        gains = [
            self.state[p]["gain"] * torch.exp(rule.gamma_p * e_p)
            for (_, p), (e_p, _) in zip(items, exps, strict=True)
        ]
        if not (math.isfinite(scale) and all(bool(torch.isfinite(g).all()) for g in gains)):
            raise FloatingPointError(
                f"EG step size overflowed at step {glob['k']}: step refused (diverged)"
            )
        for (group, p), gain, v in zip(items, gains, vs, strict=True):
            st, g = self.state[p], p.grad
            st["gain"], st["v"] = gain, v
            st["m"].lerp_(g, 1 - rule.beta1)
            if rule.base == "sgd":
                u = g
            else:
                u = st["m"] / (1 - rule.beta1**n) / (v.sqrt() / math.sqrt(c2) + rule.eps)
            st["h"].mul_(rule.mu).add_(gain * u, alpha=group["lr"])
            p.add_(st["h"], alpha=-scale)
        glob["k"], glob["scale"], glob["q"] = n, scale, q
        return loss

    def stats(self) -> dict[str, float]:
        glob = self.state["global"]
        return {**glob, "lr": glob["scale"] * self.param_groups[0]["lr"]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.state["global"].setdefault("q", 0.0)  # a checkpoint from before "normalised"
