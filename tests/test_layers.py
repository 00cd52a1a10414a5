"""The import graph: arrows only point down the layers of DESIGN.md, and no module imports its own importer.

Every import counts, the ones inside functions too (rapo imports heavy packages where they are used).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Bottom first. A module may import its own layer and the ones before it, never one after it.
LAYERS = [
    "rapo_common",  # errors, paths, the output layer
    "prompts",
    "graph_db",
    "tools",
    "finetune",  # never imports agent: agent.runs.training_pairs reads the runs into its pairs
    "agent.settings",
    "agent.loop",
    "agent.runs",
    "agent.chat",
    "agent.web",
    "agent.cli",  # wires every command, finetune's included
    "agent",  # the package itself and `python -m agent`
]
PACKAGES = ("rapo_common", "prompts", "graph_db", "tools", "agent", "finetune")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


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
            # `from agent.loop import nodes` imports the module agent.loop.nodes
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if (ROOT / Path(*sub.split("."))).with_suffix(".py").exists() else base))
    return [(line, m) for line, m in found if m.split(".")[0] in PACKAGES or m == "tests" or m.startswith("tests.")]


def sources() -> list[Path]:
    return [ROOT / "rapo_common.py", *(p for pkg in PACKAGES[1:] for p in sorted((ROOT / pkg).rglob("*.py")))]


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
        ("agent.loop.nodes", "agent.loop"),
        ("agent.cli.main", "agent.cli"),
        ("agent", "agent"),
        ("tools.llm", "tools"),
    ],
)
def test_layer_is_the_most_specific(module, expected):
    assert LAYERS[layer(module)] == expected
