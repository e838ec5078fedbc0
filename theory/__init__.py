"""NumPy reference implementations: scaling rules, step-size rules, ``parameter_scaled``."""

from paramscale.theory import optimizers, scaling, stepsize
from paramscale.theory.trajectory import Trajectory, run

__all__ = ["optimizers", "scaling", "stepsize", "run", "Trajectory"]
