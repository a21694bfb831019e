"""The package's imports go one way, and no two files import each other, directly or in a circle.

Every `import` of occreid counts, also those inside functions (they run when the function does); only imports
under `if TYPE_CHECKING:` (never run) are left out. Importing `occreid.a.b` also runs `occreid/a/__init__.py`,
so a module depends on the packages of what it imports too (not on its own packages, which run before it).
docs/extending.md draws the same layers.
"""

from __future__ import annotations

import ast
from fnmatch import fnmatch
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "occreid"

# Bottom to top: a module imports only its own layer and the layers below. The method registry and each
# method's config section sit with the config, which needs them (occreid/methods/__init__.py).
LAYERS = [
    ("utilities", ["__init__.py", "errors.py", "utils/*"]),
    (
        "config",
        [
            "config_fields.py",
            "config.py",
            "methods/__init__.py",
            "methods/*/__init__.py",
            "methods/*/config.py",
        ],
    ),
    ("data and pose", ["data/*", "pose/*"]),
    ("modeling and methods", ["modeling/*", "methods/*"]),
    ("evaluation", ["evaluation/*"]),
    ("inference", ["inference/*"]),
    ("retrieval", ["retrieval/*"]),
    ("engine", ["engine/*"]),
    ("reports and apps", ["reports/*", "apps/*"]),
    ("command line", ["cli/*", "__main__.py"]),
]


def layer_of(module: Path) -> int:
    relative = module.relative_to(PACKAGE).as_posix()
    for index, (_, patterns) in enumerate(LAYERS):
        if any(fnmatch(relative, pattern) for pattern in patterns):
            return index
    raise AssertionError(f"occreid/{relative} is in no layer of tests/test_layers.py")


def module_file(dotted: str) -> Path | None:
    """The file `occreid.a.b` names (a module or a package's __init__), None if it names none."""
    path = PACKAGE.parent.joinpath(*dotted.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            return True
    return False


def imported_files(source: Path) -> set[Path]:
    """The occreid files `source` imports (each name of a `from X import a, b` may be a module itself), plus
    the parent packages that importing them runs."""
    tree = ast.parse(source.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = ".".join(source.relative_to(PACKAGE.parent).with_suffix("").parts)
    if source.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names: list[str] = []
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names += [base] + [f"{base}.{alias.name}" for alias in node.names]
    files = set()
    for name in names:
        parts = name.split(".")
        if parts[0] != "occreid":
            continue
        for end in range(1, len(parts) + 1):  # the module and every parent package
            found = module_file(".".join(parts[:end]))
            if found is not None:
                files.add(found)
    # A module's own packages are already being imported when it runs: not a dependency of it.
    own = {parent / "__init__.py" for parent in source.parents if parent.is_relative_to(PACKAGE)}
    return files - own - {source}


def import_graph() -> dict[Path, set[Path]]:
    return {path: imported_files(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_import_goes_down_or_stays_in_its_layer():
    upward = [
        f"occreid/{src.relative_to(PACKAGE)} ({LAYERS[layer_of(src)][0]}) imports "
        f"occreid/{dst.relative_to(PACKAGE)} ({LAYERS[layer_of(dst)][0]})"
        for src, targets in import_graph().items()
        for dst in sorted(targets)
        if layer_of(dst) > layer_of(src)
    ]
    assert not upward, "\n".join(upward)


def cycles(graph: dict[Path, set[Path]]) -> list[list[Path]]:
    """The strongly connected components of more than one file (Tarjan's algorithm, iteratively)."""
    index: dict[Path, int] = {}
    low: dict[Path, int] = {}
    stack: list[Path] = []
    on_stack: set[Path] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, targets = work[-1]
            for target in targets:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(sorted(graph.get(target, ())))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_no_two_files_import_each_other_directly_or_in_a_circle():
    circles = [" <-> ".join(f"occreid/{p.relative_to(PACKAGE)}" for p in c) for c in cycles(import_graph())]
    assert not circles, "\n".join(circles)


@pytest.mark.parametrize(
    ("graph", "expected"),
    [
        ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ],
)
def test_the_circle_finder_finds_circles_and_only_circles(graph, expected):
    as_paths = {Path(k): {Path(v) for v in vs} for k, vs in graph.items()}
    assert cycles(as_paths) == [[Path(n) for n in c] for c in expected]


def test_imports_inside_functions_and_parent_packages_count():
    models = imported_files(PACKAGE / "inference" / "models.py")
    assert {PACKAGE / "modeling" / "__init__.py", PACKAGE / "modeling" / "checkpoint.py"} <= models
    assert PACKAGE / "inference" / "__init__.py" not in models  # its own package
    # FeatureExtractor.from_checkpoint imports the model loader inside a method
    assert PACKAGE / "inference" / "models.py" in imported_files(PACKAGE / "inference" / "extractor.py")
    # the registry names the config and the model base class for type checkers only
    assert PACKAGE / "config.py" not in imported_files(PACKAGE / "methods" / "__init__.py")
