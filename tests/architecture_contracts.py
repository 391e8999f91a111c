"""Two import-linter contract types of our own (registered in `.importlinter`).

- `acyclic_modules`: no import cycle between any two modules of the root packages,
  function-level imports included (grimp reads every import statement, wherever it is).
  The built-in contracts check layers and sibling packages; a cycle inside one layer,
  e.g. between two modules of one feature, would slip through them.
- `no_private_names`: no module imports another module's private name
  (`from .x import _helper`). A name that another module needs is part of its
  module's interface and gets a public name.

`lint-imports` (run by `make test`) checks both with the built-in layers contract.
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain import fields
from importlinter.domain.contract import Contract, ContractCheck


def _root_modules(graph: ImportGraph, roots: set[str]) -> list[str]:
    return sorted(m for m in graph.modules if m.split(".")[0] in roots)


class AcyclicModulesContract(Contract):
    """No module reaches itself through its imports."""

    type_name = "acyclic_modules"
    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        roots = {str(p) for p in self.packages}  # type: ignore[attr-defined]
        modules = _root_modules(graph, roots)
        edges = {m: sorted(n for n in graph.find_modules_directly_imported_by(m)
                           if n.split(".")[0] in roots and n != m) for m in modules}
        cycles = [c for c in _strongly_connected(modules, edges) if len(c) > 1]
        return ContractCheck(kept=not cycles, warnings=[], metadata={"cycles": cycles})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for cycle in check.metadata["cycles"]:
            output.print_error("Import cycle: " + " <-> ".join(cycle))
            output.new_line()


def _strongly_connected(nodes: list[str], edges: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (the graph is small, but recursion depth is not ours)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            successors = edges.get(node, [])
            if i < len(successors):
                work.append((node, i + 1))
                nxt = successors[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                found.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return found


class NoPrivateNamesContract(Contract):
    """`from module import _name` only inside the module that defines `_name`."""

    type_name = "no_private_names"
    packages = fields.ListField(subfield=fields.StringField())

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        roots = {str(p) for p in self.packages}  # type: ignore[attr-defined]
        found: list[str] = []
        for module in _root_modules(graph, roots):
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                continue
            path = Path(spec.origin)
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.ImportFrom):
                    continue
                source = _absolute(package, node)
                if source.split(".")[0] not in roots:
                    continue
                for alias in node.names:
                    name = alias.name
                    if name.startswith("_") and not name.startswith("__"):
                        found.append(f"{module} imports {source}.{name} (l.{node.lineno})")
        return ContractCheck(kept=not found, warnings=[], metadata={"found": found})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for line in check.metadata["found"]:
            output.print_error(line, bold=False)
        output.new_line()


def _absolute(package: str, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))
