"""PyTorch optimizers mirroring ``theory`` name for name (docs/spec.md section 6)."""

from paramscale.torch_impl.eg import EGStepSize
from paramscale.torch_impl.optimizer import PSDASGD, PSSPS, ParameterScaled

__all__ = ["ParameterScaled", "PSSPS", "PSDASGD", "EGStepSize"]
