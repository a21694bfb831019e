"""Code a newcomer reads in one sitting: no function of the package over 120 lines, and the training loop's
`train()` at most 80, calling named steps."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "occreid"


def function_lengths() -> dict[str, int]:
    lengths = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                where = f"occreid/{path.relative_to(PACKAGE)}:{node.lineno} {node.name}"
                lengths[where] = node.end_lineno - node.lineno + 1
    return lengths


def test_no_function_is_longer_than_120_lines():
    lengths = function_lengths()
    assert len(lengths) > 500  # the whole package was read
    assert not {where: n for where, n in lengths.items() if n > 120}


def test_the_training_loop_reads_in_one_sitting():
    lengths = {
        where.split(" ")[-1]: n for where, n in function_lengths().items() if "engine/trainer.py" in where
    }
    assert lengths["train"] <= 80
    source = (PACKAGE / "engine" / "trainer.py").read_text()
    train = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "train")
    called = {c.func.id for c in ast.walk(train) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
    assert {"_set_up", "_resume", "_train_epoch", "_evaluate_and_checkpoint"} <= called
