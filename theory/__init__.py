"""NumPy reference implementations: scaling rules, step-size rules, ``parameter_scaled``."""

from theory import optimizers, scaling, stepsize
from theory.trajectory import Trajectory, run

__all__ = ["optimizers", "scaling", "stepsize", "run", "Trajectory"]
