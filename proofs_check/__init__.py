"""The paper's convergence claims (docs/spec.md section 4) as executable checks."""

from paramscale.proofs_check.claims import CLAIMS, Claim, Result, check
from paramscale.proofs_check.runner import sweep
from paramscale.proofs_check.validate import RuleInputError, validate_rule

__all__ = ["CLAIMS", "Claim", "Result", "check", "sweep", "validate_rule", "RuleInputError"]
