"""A user's scaling rule, written once against the array API: Adam's second moment,
normalised by its largest entry, so alpha**2 <= 1 + eps and the scale is set by the step
rule alone.

    alpha_k**2 = sqrt(vhat_k) / (max(sqrt(vhat_k)) + eps) + eps,  vhat_k = v_k / (1 - b2^(k+1))

Validate it end to end (from the repository root):

    paramscale validate-rule examples/max_normalised_adam.py:max_normalised_adam
"""

from dataclasses import dataclass

from array_api_compat import array_namespace

from paramscale.theory.scaling import Moments


@dataclass(frozen=True)
class max_normalised_adam:
    beta2: float = 0.999
    eps: float = 1e-8
    name: str = "max_normalised_adam"
    monotone: bool = False

    def init(self, x0):
        # a Moments state: torch_impl reads its k as the parameter's own step count
        return Moments(0, array_namespace(x0).zeros_like(x0))

    def update(self, state, g, x):
        xp = array_namespace(g)
        v = self.beta2 * state.v + (1 - self.beta2) * g * g
        r = xp.sqrt(v / (1 - self.beta2 ** (state.k + 1)))
        return xp.sqrt(r / (xp.max(r) + self.eps) + self.eps), Moments(state.k + 1, v)
