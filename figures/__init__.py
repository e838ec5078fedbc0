"""The figures, each drawn from a CSV: the convex ones (rate curves, tightness, invariance,
learning rates, the rule grid: ``plots``), the PEP worst cases (``pep``) and the network
runs (``training``)."""
