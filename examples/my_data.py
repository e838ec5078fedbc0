"""A user's own data as problems for ``--problem examples/my_data.py:problems``: LAD and
Huber regression on scikit-learn's diabetes set with a bias column, badly scaled as it
comes (raw features), each certified by ``synthetic.from_data``."""

import numpy as np
from sklearn.datasets import load_diabetes

from paramscale import synthetic


def problems() -> list[synthetic.Problem]:
    X, t = load_diabetes(return_X_y=True)
    A = np.hstack([X, np.ones((len(t), 1))])
    return [
        synthetic.from_data("lad", A, t, name="diabetes"),
        synthetic.from_data("huber", A, t, delta=10.0, name="diabetes"),
    ]
