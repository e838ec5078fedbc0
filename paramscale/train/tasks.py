"""The deep-learning tasks of ``paramscale train``: data that ships with scikit-learn or is
generated, small models without batch norm (the paper's point is about scale), and each
task's test metric. Nothing is downloaded.

A task's data are fixed for a seed: the same train/test split, the same initial weights
and the same batches for every method, so that methods differ only in their updates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import nn

__all__ = ["Task", "Data", "TASKS"]


@dataclass(frozen=True)
class Data:
    """Train and test tensors; ``f_star``: the exact minimum of the training loss, where
    known (convex tasks), else NaN."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    f_star: float = math.nan


@dataclass(frozen=True)
class Task:
    """A data set, a model and how to score it.

    ``steps``: optimizer steps in quick and in full mode; ``batch``: minibatch size (the
    batches are drawn with the seed, the same for every method); ``metric``: the name of
    the test metric (higher is better, a fraction in [0, 1]); ``what``: one line for
    ``--list``."""

    name: str
    what: str
    data: Callable[[int], Data]
    model: Callable[[], nn.Module]
    steps: tuple[int, int]
    batch: int
    metric: str = "test accuracy"
    per_token: bool = False  # outputs (batch, length, classes): token accuracy
    cost: float = 1.0  # relative time of a step (runs are scheduled costliest first)
    eval_train: int | None = None  # the logged train loss is on this many first examples
    shift: Callable[[Data], Data] | None = None  # the data from half the steps on

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.per_token:
            return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), y.reshape(-1))
        return nn.functional.cross_entropy(out, y)

    def accuracy(self, out: torch.Tensor, y: torch.Tensor) -> float:
        return float((out.argmax(-1) == y).double().mean())


# -- data ---------------------------------------------------------------------------------
def _split(n: int, test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return order[test:], order[:test]


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)


DIGITS_TEST = 447  # a quarter of the 1797 images, the same split for every seed
SPLIT_SEED = 0  # the split is fixed; the seed varies the weights and the batches


def _digits_data(seed: int, image: bool) -> Data:
    x, y = _digits()
    tr, te = _split(len(y), DIGITS_TEST, SPLIT_SEED)
    shape = (-1, 1, 8, 8) if image else (-1, 64)
    t = torch.from_numpy
    return Data(t(x[tr]).reshape(shape), t(y[tr]), t(x[te]).reshape(shape), t(y[te]))


SHIFT_SEED = 1234  # the pixel permutation of the shift task, the same for every seed


def permuted_pixels(data: Data) -> Data:
    """The digits with their 64 pixels permuted (one fixed permutation, train and test):
    the same labels, a new input distribution (the shift task's second half)."""
    order = torch.from_numpy(np.random.default_rng(SHIFT_SEED).permutation(64))
    return Data(data.x_train[:, order], data.y_train, data.x_test[:, order], data.y_test)


def digits_mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)
    )


def digits_mlp_zero_head() -> nn.Module:
    """The MLP with its output layer initialised to zero (a common choice for residual
    branches and heads): every hidden weight's first gradient is exactly zero."""
    model = digits_mlp()
    nn.init.zeros_(model[-1].weight)
    nn.init.zeros_(model[-1].bias)
    return model


def digits_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 4 * 4, 10),
    )  # fmt: skip


SEQ_LENGTH, SEQ_VOCAB = 16, 16
SEQ_TRAIN, SEQ_TEST = 4096, 512


def _reversal_data(seed: int) -> Data:
    """Token sequences and their reversal: a fixed pool of training sequences and fresh
    test sequences (the same for every seed)."""
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    x = torch.randint(0, SEQ_VOCAB, (SEQ_TRAIN + SEQ_TEST, SEQ_LENGTH), generator=gen)
    y = x.flip(-1)
    return Data(x[:SEQ_TRAIN], y[:SEQ_TRAIN], x[SEQ_TRAIN:], y[SEQ_TRAIN:])


class EncoderBlock(nn.Module):
    """A pre-norm transformer encoder block: multi-head self-attention, then a ReLU MLP of
    twice the width, each in a residual branch (as ``nn.TransformerEncoderLayer(norm_first=
    True, dropout=0)``, written out: 20% less time a step on the CPU)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.out = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.up, self.down = nn.Linear(width, 2 * width), nn.Linear(2 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, w = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, t, 3, self.heads, w // self.heads)
        q, k, v = qkv.transpose(1, 3).unbind(2)  # (b, heads, t, w / heads) each
        attended = nn.functional.scaled_dot_product_attention(q, k, v)
        x = x + self.out(attended.transpose(1, 2).reshape(b, t, w))
        return x + self.down(nn.functional.relu(self.up(self.norm2(x))))


class SequenceTransformer(nn.Module):
    """2 pre-norm encoder blocks, 4 heads, width 64, learned positions; one output per
    token (layer norm, no batch norm)."""

    def __init__(self, vocab: int = SEQ_VOCAB, length: int = SEQ_LENGTH, width: int = 64):
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        self.position = nn.Parameter(torch.randn(length, width) * 0.02)
        self.blocks = nn.Sequential(EncoderBlock(width, 4), EncoderBlock(width, 4))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.blocks(self.embed(tokens) + self.position)))


ZIPF_VOCAB, ZIPF_LENGTH, ZIPF_EXPONENT = 2000, 12, 1.1
ZIPF_TRAIN, ZIPF_TEST = 3000, 1000


def _zipf_data(seed: int) -> Data:
    """Bags of tokens drawn with Zipf frequencies (most vocabulary rows are rarely seen, and
    so get exactly zero gradient at most steps); the label is the sign of a hidden score of
    the tokens, so rare tokens matter too."""
    rng = np.random.default_rng(SPLIT_SEED)
    p = 1.0 / np.arange(1, ZIPF_VOCAB + 1) ** ZIPF_EXPONENT
    n = ZIPF_TRAIN + ZIPF_TEST
    x = rng.choice(ZIPF_VOCAB, size=(n, ZIPF_LENGTH), p=p / p.sum())
    score = rng.standard_normal(ZIPF_VOCAB)[x].sum(1)
    y = (score > np.median(score)).astype(np.int64)
    t = torch.from_numpy
    return Data(t(x[:ZIPF_TRAIN]), t(y[:ZIPF_TRAIN]), t(x[ZIPF_TRAIN:]), t(y[ZIPF_TRAIN:]))


def zipf_bag() -> nn.Module:
    return nn.Sequential(
        nn.EmbeddingBag(ZIPF_VOCAB, 32, mode="mean"), nn.Linear(32, 64), nn.ReLU(),
        nn.Linear(64, 2),
    )  # fmt: skip


LOGREG_L2 = 1e-3  # the loss's ridge term: with it the minimum is attained (f* exact)


def _breast_cancer_data(seed: int) -> Data:
    """breast_cancer, standardised with the training statistics; f* of the training loss
    (mean logistic loss + LOGREG_L2/2 ||w||^2, bias unpenalised) solved exactly."""
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    tr, te = _split(len(y), len(y) // 4, SPLIT_SEED)
    mu, sd = x[tr].mean(0), x[tr].std(0)
    x = (x - mu) / sd
    t = torch.from_numpy
    f_star = logreg_f_star(x[tr], y[tr])
    return Data(t(x[tr]).float(), t(y[tr]).long(), t(x[te]).float(), t(y[te]).long(), f_star)


@cache
def _logreg_f_star_cached(key: bytes, shape: tuple[int, int]) -> float:
    import cvxpy as cp

    data = np.frombuffer(key, dtype=np.float64).reshape(shape[0], shape[1] + 1)
    x, y = data[:, :-1], data[:, -1]
    w, b = cp.Variable(x.shape[1]), cp.Variable()
    z = x @ w + b
    # cross entropy of two logits (0, z) = logistic loss log(1 + exp(-s z)), s = +-1
    s = 2 * y - 1
    objective = cp.sum(cp.logistic(-cp.multiply(s, z))) / len(y) + LOGREG_L2 / 2 * cp.sum_squares(w)
    problem = cp.Problem(cp.Minimize(objective))
    problem.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    if problem.status != "optimal":
        raise RuntimeError(f"logreg-convex: Clarabel returned {problem.status!r}")
    return float(problem.value)


def logreg_f_star(x: np.ndarray, y: np.ndarray) -> float:
    """The exact minimum of the logreg-convex training loss (cvxpy, Clarabel)."""
    data = np.column_stack([x, y]).astype(np.float64)
    return _logreg_f_star_cached(data.tobytes(), x.shape)


class LogisticRegression(nn.Module):
    """One linear layer to a single logit; ``l2`` enters the loss (``penalty``)."""

    def __init__(self, features: int = 30):
        super().__init__()
        self.linear = nn.Linear(features, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        return torch.cat([torch.zeros_like(z), z], dim=-1)  # two logits: softmax = sigmoid

    def penalty(self) -> torch.Tensor:
        return LOGREG_L2 / 2 * self.linear.weight.square().sum()


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "digits-mlp",
            "scikit-learn digits, MLP 64-256-256-10 (ReLU)",
            lambda s: _digits_data(s, image=False),
            digits_mlp,
            (300, 1000),
            64,
        ),
        Task(
            "digits-cnn",
            "digits as 1x8x8 images, two 3x3 conv layers + linear head",
            lambda s: _digits_data(s, image=True),
            digits_cnn,
            (300, 1000),
            64,
            cost=3.0,
        ),
        Task(
            "seq-transformer",
            "reverse length-16 token sequences (vocabulary 16): 2-layer, 4-head, width-64 "
            "transformer, token accuracy",
            _reversal_data,
            SequenceTransformer,
            (400, 1500),
            64,
            "token accuracy",
            True,
            cost=10.0,
            eval_train=SEQ_TEST,
        ),
        Task(
            "logreg-convex",
            "logistic regression on breast_cancer (+ridge 1e-3): convex, f* exact (cvxpy)",
            _breast_cancer_data,
            LogisticRegression,
            (300, 1000),
            64,
        ),
        Task(
            "digits-mlp-zero-head",
            "the digits MLP with a zero-initialised output layer: every hidden weight's "
            "first gradient is exactly 0",
            lambda s: _digits_data(s, image=False),
            digits_mlp_zero_head,
            (300, 1000),
            64,
        ),
        Task(
            "digits-mlp-shift",
            "the digits MLP whose input pixels are permuted (one fixed permutation) halfway "
            "through; after the shift the test metric is on the permuted images",
            lambda s: _digits_data(s, image=False),
            digits_mlp,
            (300, 1000),
            64,
            shift=permuted_pixels,
        ),
        Task(
            "zipf-embedding",
            "bags of Zipf-distributed tokens (vocabulary 2000): embedding rows that most "
            "batches leave at zero gradient",
            _zipf_data,
            zipf_bag,
            (300, 1000),
            64,
        ),
    )
}
