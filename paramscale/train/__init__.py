"""``paramscale train``: a deep-learning benchmark on bundled data (a miniature of the
paper's Table 3). Tasks in ``tasks``, methods in ``methods``, runs and the CSV in
``runner``, the table in ``report``; ``outputs.write_outputs`` writes the CSV, then the
table and the figure (``figures.training``) made from it.

    rows = benchmark(["digits-mlp"], ["adam", "PSDASGD"], seeds=[0, 1, 2], quick=True)
"""

from __future__ import annotations

from typing import Any

from paramscale.train import methods, report, runner, tasks
from paramscale.train.methods import FAMILIES, expand, split_specs
from paramscale.train.runner import Job, run_all, skipped_rows
from paramscale.train.tasks import TASKS

__all__ = ["benchmark", "resolve_tasks", "tasks", "methods", "runner", "report"]


def resolve_tasks(names: list[str]) -> list[str]:
    """The task names, checked: an unknown one is a ValueError listing the valid ones."""
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise ValueError(f"Unknown task(s) {unknown} (expected some of: {', '.join(TASKS)})")
    return names


def benchmark(
    task_names: list[str],
    method_specs: list[str],
    seeds: list[int],
    quick: bool = True,
    device: str = "cpu",
    workers: int = 1,
    steps: int | None = None,
    progress: Any = None,
) -> list[dict[str, Any]]:
    """Every (task, method, seed) run's rows, in that order; skipped methods (a package
    not installed) get one row per task and seed saying why. ``steps`` overrides the
    tasks' own (quick or full) step counts."""
    resolve_tasks(task_names)
    found, skipped = expand(method_specs, quick)
    points = runner.QUICK_LOG_POINTS if quick else runner.LOG_POINTS
    jobs = [
        Job(t, m, seed, steps or TASKS[t].steps[0 if quick else 1], device, points)
        for t in task_names
        for m in found
        for seed in seeds
    ]
    if progress is True:
        progress = runner.Progress(len(jobs))
    results = iter(run_all(jobs, workers, progress or None))
    rows: list[dict[str, Any]] = []
    for t in task_names:
        for _ in range(len(found) * len(seeds)):
            rows += next(results)
        for name, reason in skipped.items():
            family = FAMILIES[name.partition("[")[0].lower()].name
            rows += [skipped_rows(t, name, family, seed, reason) for seed in seeds]
    return rows


def default_methods() -> list[str]:
    return list(methods.DEFAULT)


def parse_methods(text: str) -> list[str]:
    return split_specs(text) if text else default_methods()
