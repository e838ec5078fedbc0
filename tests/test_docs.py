"""Every code block of README.md and docs/*.md runs, as a reader would run it: the Python
blocks of a file in order in one namespace, each shell block through bash in the
repository root with this environment's ``paramscale`` first on the PATH. A shell block
whose first line is ``# long-running: ...`` (the full benchmark and the studies, 10-60
minutes each) is checked without being run: each command's arguments go through the
command line's own parser, and ``train``'s tasks and method specs through its resolver, so
a renamed option, task or method fails. Blocks marked ``text`` (or unmarked) are output,
not code; any other language fails, so no block escapes the runner. The README's PyTorch
example must also train, and a broken block must fail."""

import os
import re
import shlex
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).parents[1]
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN = {"python", "bash"}
NOT_CODE = {"", "text"}
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", flags=re.S | re.M)


def blocks(path: Path) -> list[tuple[str, str, int]]:
    """(language, code, line of the fence) of every fenced block in ``path``."""
    text = path.read_text()
    return [
        (m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1) for m in FENCE.finditer(text)
    ]


def run_python(path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The file's Python blocks in order, in one fresh module's namespace."""
    module = types.ModuleType(f"docs_{path.stem}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for lang, code, line in blocks(path):
        if lang == "python":
            exec(compile("\n" * line + code, str(path), "exec"), module.__dict__)  # noqa: S102
    return module.__dict__


def run_shell(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", code],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


LONG = "# long-running:"


def check_long(code: str) -> int:
    """Parse every ``paramscale`` command of a long-running block as the CLI would; train's
    tasks and methods resolved by name. Returns the number of commands checked."""
    from paramscale import train
    from paramscale.cli import build_parser

    commands = [shlex.split(line, comments=True) for line in code.replace("\\\n", " ").splitlines()]
    commands = [c for c in commands if c]
    for words in commands:
        assert words[0] == "paramscale", words
        args = build_parser().parse_args(words[1:])  # exits (SystemExit) on a bad option
        if words[1] == "train":
            if args.tasks:
                train.resolve_tasks(args.tasks.split(","))
            train.methods.expand(train.parse_methods(args.methods), args.quick)
    return len(commands)


def _id(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


PYTHON = [p for p in FILES if any(lang == "python" for lang, _, _ in blocks(p))]
SHELL = [
    pytest.param(code, id=f"{_id(p)}:{line}")
    for p in FILES
    for lang, code, line in blocks(p)
    if lang == "bash"
]


@pytest.mark.parametrize("path", FILES, ids=_id)
def test_every_block_is_code_that_runs_or_marked_output(path):
    langs = {lang for lang, _, _ in blocks(path)}
    assert langs <= RUN | NOT_CODE, f"{_id(path)}: blocks in {langs - RUN - NOT_CODE}"


TRAIN = (ROOT / "README.md", ROOT / "docs" / "torch.md")  # PyTorch examples that must train


@pytest.mark.parametrize("path", PYTHON, ids=_id)
def test_python_blocks_run(path, monkeypatch, capsys):
    namespace = run_python(path, monkeypatch)
    assert namespace["__name__"] == f"docs_{path.stem}"  # the blocks ran in this module
    if path in TRAIN:
        assert_it_trained(namespace, path)
        assert "Adam units" in capsys.readouterr().out


def assert_it_trained(namespace: dict, path: Path) -> None:
    """The PyTorch examples do more than run: the model learns digits (from ln 10 = 2.3)."""
    model, x, y = namespace["model"], namespace["x"], namespace["y"]
    with torch.no_grad():
        out = model(x)
    loss = torch.nn.functional.cross_entropy(out, y).item()
    accuracy = (out.argmax(1) == y).double().mean().item()
    assert loss < 0.2 and accuracy > 0.95, (path.name, loss, accuracy)


@pytest.mark.parametrize("code", SHELL)
def test_shell_blocks_run(code):
    if code.startswith(LONG):
        assert check_long(code) > 0
        return
    done = run_shell(code)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_the_runner_fails_a_broken_block(tmp_path, monkeypatch):
    """Planted errors: a Python block that raises, one that uses a name no block defined, a
    shell command that fails, and a block in an unknown language are all caught."""
    for code, error in (("raise RuntimeError('broken')", RuntimeError), ("print(nope)", NameError)):
        doc = tmp_path / "planted.txt"
        doc.write_text(f"Text.\n\n```python\nx = 1\n```\n\n```python\n{code}\n```\n")
        with pytest.raises(error):
            run_python(doc, monkeypatch)
    assert run_shell("paramscale check --claims NOPE --quick").returncode != 0
    assert run_shell("true\nfalse\ntrue").returncode != 0  # a failing line fails the block
    for bad in (  # a renamed option, an unknown method, an unknown task
        "paramscale train --quik",
        'paramscale train --methods "PSDASGD[transfr=max]"',
        "paramscale train --tasks digits-mpl",
    ):
        with pytest.raises((SystemExit, ValueError)):
            check_long(f"{LONG} planted\n{bad}")
    doc.write_text("```sh\nfalse\n```\n")
    with pytest.raises(AssertionError):
        test_every_block_is_code_that_runs_or_marked_output(doc)
