"""The shape the design asks of ``torch_impl`` (docs/spec.md section 9, docs/torch.md): no
rule named outside the one registry of methods, small modules, a thin optimizer class,
and the train package independent of the figures that read its reports."""

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
TORCH_IMPL = sorted((ROOT / "torch_impl").glob("*.py"))
RULE_NAMES = re.compile(r"dadapt|polyak|numerator|g0_norm|keeps_sum", re.IGNORECASE)
REGISTRY = "optimizers.py"  # the named methods: the one module that names a rule


def test_no_module_of_torch_impl_names_a_step_rule_but_the_registry():
    found = [
        f"{path.name}:{n}: {line.strip()}"
        for path in TORCH_IMPL
        if path.name != REGISTRY
        for n, line in enumerate(path.read_text().splitlines(), start=1)
        if RULE_NAMES.search(line)
    ]
    assert not found, found


def test_modules_are_small_and_the_optimizer_class_thin():
    sizes = {path.name: len(path.read_text().splitlines()) for path in TORCH_IMPL}
    assert max(sizes.values()) <= 400, sizes
    tree = ast.parse((ROOT / "torch_impl" / "optimizer.py").read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ParameterScaled")
    assert cls.end_lineno - cls.lineno + 1 < 250


def test_the_train_package_does_not_import_the_figures():
    code = "import sys, paramscale.train; print(any('figures' in m for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
