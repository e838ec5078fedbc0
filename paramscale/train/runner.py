"""Running ``paramscale train``: one run is (task, method, seed); every run of a benchmark
writes its logged steps as rows of one tidy CSV (``COLUMNS``), from which the table and
the figure are made.

Every run of a seed sees the same initial weights and the same batches. A run is
single-threaded (``torch.set_num_threads(1)``), so it gives the same numbers whichever
worker process runs it: the CSV is the same from one invocation to the next, apart from
``wall_s``. A run that diverges (a non-finite loss, or an optimizer that refuses a
non-finite step) is recorded with the step and the quantity, and its rows end there; a
run that raises anything else is recorded as an error. Neither stops the benchmark.
"""

from __future__ import annotations

import csv
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from paramscale.train.methods import Method, rebuild
from paramscale.train.tasks import TASKS, Data, Task

COLUMNS = (
    "task", "method", "family", "seed", "step", "train_loss", "train_gap", "test_metric",
    "effective_lr", "lr_units", "grid_lr", "wall_s", "status", "detail",
)  # fmt: skip
LOG_POINTS = 20  # logged steps per run (and step 0); quick mode: QUICK_LOG_POINTS
QUICK_LOG_POINTS = 10  # evaluations cost (the transformer's take a third of its run)


@dataclass(frozen=True)
class Job:
    """One run: task name, method, seed, number of steps, device, logged points."""

    task: str
    method: Method
    seed: int
    steps: int
    device: str = "cpu"
    log_points: int = LOG_POINTS


def logged_steps(steps: int, points: int = LOG_POINTS) -> list[int]:
    """0, the final step, and ``points - 1`` evenly spaced ones between."""
    return sorted({round(i * steps / points) for i in range(points + 1)})


@contextmanager
def _one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _batches(seed: int, n: int, batch: int, steps: int) -> np.ndarray:
    """The indices of every step's batch: from the seed only, so the same for each method."""
    return np.random.default_rng(seed).integers(0, n, size=(steps, batch))


def _loss(task: Task, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    loss = task.loss(model(x), y)
    penalty = getattr(model, "penalty", None)
    return loss + penalty() if penalty is not None else loss


@torch.no_grad()
def _evaluate(task: Task, model: torch.nn.Module, data: Data) -> tuple[float, float]:
    n = task.eval_train or len(data.y_train)
    train = float(_loss(task, model, data.x_train[:n], data.y_train[:n]))
    return train, task.accuracy(model(data.x_test), data.y_test)


def _finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def run(job: Job) -> list[dict[str, Any]]:
    """The rows of one run (``COLUMNS``)."""
    task, method = TASKS[job.task], job.method
    with _one_thread():
        torch.manual_seed(job.seed)
        data = _to(task.data(job.seed), job.device)
        model = task.model().to(job.device)
        batches = torch.from_numpy(_batches(job.seed, len(data.y_train), task.batch, job.steps))
        rows, status, detail = _train(task, method, model, data, batches, job)
    base = {
        "task": job.task, "method": method.name, "family": method.family, "seed": job.seed,
        "lr_units": method.units, "grid_lr": method.grid_lr, "status": status,
        "detail": detail,
    }  # fmt: skip
    for row in rows:
        row["train_gap"] = row["train_loss"] - data.f_star
    return [{**base, **row} for row in rows]


def _to(data: Data, device: str) -> Data:
    if device == "cpu":
        return data
    move = [t.to(device) for t in (data.x_train, data.y_train, data.x_test, data.y_test)]
    return Data(*move, f_star=data.f_star)


def _train(
    task: Task, method: Method, model: torch.nn.Module, data: Data, batches: torch.Tensor, job: Job
) -> tuple[list[dict[str, Any]], str, str]:
    """(rows, status, detail): the loop, stopped at the first non-finite loss or refused
    step."""
    opt = method.make(model.parameters())
    log_at = set(logged_steps(job.steps, job.log_points))
    rows: list[dict[str, Any]] = []
    wall = 0.0

    def log(step: int) -> None:
        if method.schedule_free:
            opt.eval()
        train, metric = _evaluate(task, model, data)
        if method.schedule_free:
            opt.train()
        lr = method.effective_lr(opt) if step > 0 else math.nan
        rows.append(
            {
                "step": step,
                "train_loss": train,
                "test_metric": metric,
                "effective_lr": lr,
                "wall_s": wall,
            }  # fmt: skip
        )

    if method.schedule_free:
        opt.train()
    model.train()
    log(0)
    for k in range(job.steps):
        if task.shift is not None and k == job.steps // 2:  # the distribution shifts
            data = task.shift(data)
        idx = batches[k].to(job.device)
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = _loss(task, model, data.x_train[idx], data.y_train[idx])
        value = float(loss.detach())
        if not math.isfinite(value):
            return _diverged(rows, k, wall, f"train loss is {value} at step {k}")
        loss.backward()
        try:
            if method.needs_loss:
                opt.step(loss=loss)
            else:
                opt.step()
        except FloatingPointError as exc:
            return _diverged(rows, k, wall, f"step {k} refused: {exc}")
        except Exception as exc:  # one method's failure never stops the benchmark
            return rows, "error", f"{type(exc).__name__} at step {k}: {exc}"
        wall += time.perf_counter() - t0
        if k + 1 in log_at:
            if not _finite(model):
                return _diverged(rows, k + 1, wall, f"non-finite weights after step {k}")
            log(k + 1)
            if not math.isfinite(rows[-1]["train_loss"]):
                return _diverged(rows, k + 1, wall, f"train loss is non-finite at step {k + 1}")
    return rows, "ok", ""


def _diverged(rows: list[dict], step: int, wall: float, detail: str) -> tuple[list, str, str]:
    """The rows of a diverged run: its logged steps, then one at the divergence (NaN)."""
    rows = [r for r in rows if r["step"] < step]
    nan = math.nan
    rows.append(
        {"step": step, "train_loss": nan, "test_metric": nan, "effective_lr": nan, "wall_s": wall}
    )
    return rows, "diverged", detail


def skipped_rows(task: str, name: str, family: str, seed: int, reason: str) -> dict[str, Any]:
    nan = math.nan
    return {
        "task": task, "method": name, "family": family, "seed": seed, "step": 0,
        "train_loss": nan, "train_gap": nan, "test_metric": nan, "effective_lr": nan,
        "lr_units": "", "grid_lr": None, "wall_s": 0.0, "status": "skipped", "detail": reason,
    }  # fmt: skip


def _worker(args: tuple) -> list[dict[str, Any]]:
    task, key, seed, steps, device, points = args
    return run(Job(task, rebuild(key), seed, steps, device, points))


def run_all(
    jobs: list[Job], workers: int = 1, progress: Callable[[Job, list[dict]], None] | None = None
) -> list[list[dict[str, Any]]]:
    """Every job's rows, in the order of ``jobs``; ``workers > 1`` runs them in that many
    processes (each run single-threaded, so the numbers do not depend on it)."""
    results: list[list[dict[str, Any]] | None] = [None] * len(jobs)
    if workers <= 1:
        for i, job in enumerate(jobs):
            results[i] = run(job)
            if progress:
                progress(job, results[i])
        return results  # type: ignore[return-value]
    # the costliest tasks first, so that no long run starts last
    order = sorted(range(len(jobs)), key=lambda i: -TASKS[jobs[i].task].cost * jobs[i].steps)
    with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
        futures = {
            pool.submit(
                _worker,
                (
                    jobs[i].task,
                    jobs[i].method.key,
                    jobs[i].seed,
                    jobs[i].steps,
                    jobs[i].device,
                    jobs[i].log_points,
                ),  # fmt: skip
            ): i
            for i in order
        }
        for future in as_completed(futures):
            i = futures[future]
            results[i] = future.result()
            if progress:
                progress(jobs[i], results[i])
    return results  # type: ignore[return-value]


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(row[k]) for k in COLUMNS})


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)  # round-trips exactly
    return value


def read_csv(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV written by ``write_csv``, numbers as numbers."""
    floats = ("train_loss", "train_gap", "test_metric", "effective_lr", "wall_s")
    with Path(path).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    missing = [c for c in COLUMNS if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"Invalid train CSV {path}: missing column(s) {missing}")
    for row in rows:
        for key in floats:
            row[key] = float(row[key]) if row[key] != "" else math.nan
        row["seed"], row["step"] = int(row["seed"]), int(row["step"])
        row["grid_lr"] = float(row["grid_lr"]) if row["grid_lr"] else None
    return rows


class Progress:
    """Progress of a benchmark on stderr: a bar redrawn in place on a terminal, one line
    per finished run otherwise (logs, CI)."""

    def __init__(self, total: int, stream: Any = None) -> None:
        self.total, self.done, self.t0 = total, 0, time.perf_counter()
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def __call__(self, job: Job, rows: list[dict[str, Any]]) -> None:
        self.done += 1
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.done * (self.total - self.done)
        last = rows[-1]
        what = f"{last['status']}" if last["status"] != "ok" else f"{last['test_metric']:.3f}"
        text = (
            f"[{self.done}/{self.total}] {_clock(elapsed)} (eta {_clock(eta)}) "
            f"{job.task} {job.method.name} seed {job.seed}: {what}"
        )
        if self.tty:
            width = 24
            filled = int(width * self.done / self.total)
            bar = "#" * filled + "." * (width - filled)
            end = "\n" if self.done == self.total else ""
            print(f"\r\033[K[{bar}] {text}"[: shutil.get_terminal_size().columns + 8], end=end,
                  file=self.stream, flush=True)  # fmt: skip
        else:
            print(text, file=self.stream, flush=True)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}:{s:02d}"
