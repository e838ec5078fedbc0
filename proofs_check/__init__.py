"""The paper's convergence claims as executable checks (issue: proofs_check)."""
