"""PyTorch optimizers mirroring ``theory`` name for name (docs/spec.md section 6)."""

from paramscale.torch_impl.eg import EGStepSize
from paramscale.torch_impl.optimizer import ParameterScaled
from paramscale.torch_impl.optimizers import PSDASGD, PSSPS, PSDoG, PSDoWG

__all__ = ["ParameterScaled", "PSSPS", "PSDASGD", "PSDoG", "PSDoWG", "EGStepSize"]
