"""The README's examples run: its PyTorch example trains (the loss goes down)."""

import re
from pathlib import Path

import torch

README = Path(__file__).parents[1] / "README.md"


def _block(containing: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return next(b for b in blocks if containing in b)


def test_the_pytorch_example_trains(capsys):
    code = _block("torch_impl.PSDASGD(model.parameters())")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102
    model, x, y = namespace["model"], namespace["x"], namespace["y"]
    with torch.no_grad():
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out, y).item()
        accuracy = (out.argmax(1) == y).double().mean().item()
    assert loss < 0.2 and accuracy > 0.95  # from ln(10) = 2.3 at the start
    assert "Adam units" in capsys.readouterr().out
