"""The import graph of the package `rapo`: arrows only point down the layers of DESIGN.md, and no module imports
its own importer.

Every import counts, the ones inside functions too (rapo imports heavy packages where they are used).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Bottom first. A module may import its own layer and the ones before it, never one after it.
LAYERS = [
    "rapo.common",  # errors, paths, the output layer
    "rapo.prompts",
    "rapo.graph_db",
    "rapo.tools",
    "rapo.finetune",  # never imports agent: rapo.agent.runs.training_pairs reads the runs into its pairs
    "rapo.agent.settings",
    "rapo.agent.loop",
    "rapo.agent.runs",
    "rapo.agent.chat",
    "rapo.agent.web",
    "rapo.agent.cli",  # wires every command, finetune's included
    "rapo.agent",  # the package itself
    "rapo",  # the public package and `python -m rapo`
]
# The repository's folders and the names they are installed under (pyproject.toml's package-dir)
FOLDERS = {"rapo": "rapo", "agent": "rapo.agent", "tools": "rapo.tools", "graph_db": "rapo.graph_db",
           "prompts": "rapo.prompts", "finetune": "rapo.finetune"}  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts[0] = FOLDERS[parts[0]]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_path(module: str) -> Path:
    """The source file `module` would be if it is a module (rather than a package or a name in one)."""
    parts = module.split(".")[1:]
    folder = next((f for f, name in FOLDERS.items() if name != "rapo" and parts[:1] == [name[5:]]), "rapo")
    if folder != "rapo":
        parts = parts[1:]
    return (ROOT / folder / Path(*(parts or ["__init__"]))).with_suffix(".py")


def layer(module: str) -> int:
    """The index of the most specific layer `module` belongs to."""
    matches = [i for i, name in enumerate(LAYERS) if module == name or module.startswith(name + ".")]
    if not matches:
        raise ValueError(f"{module} is in no layer")
    return max(matches, key=lambda i: len(LAYERS[i]))


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every rapo module `path` imports, at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                pytest.fail(f"{path}:{node.lineno}: a relative import (rapo imports absolutely)")
            base = node.module or ""
            # `from rapo.agent.loop import nodes` imports the module rapo.agent.loop.nodes
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if base.startswith("rapo") and module_path(sub).exists() else base))
    return [(line, m) for line, m in found if m.split(".")[0] in ("rapo", "tests")]


def sources() -> list[Path]:
    return [p for folder in FOLDERS for p in sorted((ROOT / folder).rglob("*.py"))]


def test_every_module_is_in_a_layer():
    for path in sources():
        layer(module_name(path))


def test_imports_point_down():
    upward = []
    for path in sources():
        here = layer(module_name(path))
        for line, target in imports(path):
            if target == "tests" or target.startswith("tests."):
                upward.append(f"{path.relative_to(ROOT)}:{line} imports {target} (nothing imports tests)")
            elif layer(target) > here:
                upward.append(
                    f"{path.relative_to(ROOT)}:{line} imports {target} ({LAYERS[layer(target)]} is above "
                    f"{LAYERS[here]})"
                )
    assert not upward, "\n".join(upward)


def test_no_import_cycles():
    """No module imports, directly or through others, a module that imports it (lazy imports included)."""
    graph = {module_name(p): {t for _, t in imports(p)} for p in sources()}
    cycles = []
    for start in graph:
        stack, seen = [(start, [start])], set()
        while stack:
            module, path = stack.pop()
            for target in graph.get(module, ()):
                if target == start:
                    cycles.append(" -> ".join([*path, start]))
                elif target not in seen:
                    seen.add(target)
                    stack.append((target, [*path, target]))
    assert not cycles, "\n".join(sorted(set(cycles)))


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("rapo.agent.loop.nodes", "rapo.agent.loop"),
        ("rapo.agent.cli.main", "rapo.agent.cli"),
        ("rapo.agent", "rapo.agent"),
        ("rapo.tools.llm", "rapo.tools"),
        ("rapo.common", "rapo.common"),
        ("rapo.__main__", "rapo"),
    ],
)
def test_layer_is_the_most_specific(module, expected):
    assert LAYERS[layer(module)] == expected
