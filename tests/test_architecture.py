"""The architecture's checks themselves: job names resolve, and our two import-linter
contracts catch what they are for (checked on a small package made for the purpose)."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path

import grimp
import pytest

from service import PROJECT_ROOT
from tests.architecture_contracts import AcyclicModulesContract, NoPrivateNamesContract


def job_names() -> set[str]:
    """Every string literal in service/ that names a job by its dotted path."""
    names = set()
    for path in (PROJECT_ROOT / "service").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and node.value.startswith("service.jobs.")):
                names.add(node.value)
    return names


def test_every_job_named_by_the_domain_exists() -> None:
    names = job_names()
    assert "service.jobs.campaigns.send_batch" in names  # the scan finds them
    assert len(names) >= 8
    for name in sorted(names):
        module, _, attr = name.rpartition(".")
        assert callable(getattr(importlib.import_module(module), attr, None)), name


@pytest.fixture
def toy_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> grimp.ImportGraph:
    package = tmp_path / "toy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from . import b\n    return b\n")
    (package / "b.py").write_text("from .a import f\n_secret = 1\n")
    (package / "c.py").write_text("from .b import _secret\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield grimp.build_graph("toy", cache_dir=None)
    for name in [m for m in sys.modules if m == "toy" or m.startswith("toy.")]:
        del sys.modules[name]


def contract(kind: type, **options: list[str]) -> object:
    return kind(name="toy", session_options={}, contract_options=options)


def test_a_function_level_import_cycle_breaks_the_acyclic_contract(
    toy_graph: grimp.ImportGraph,
) -> None:
    check = contract(AcyclicModulesContract, packages=["toy"]).check(toy_graph, verbose=False)
    assert not check.kept
    assert check.metadata["cycles"] == [["toy.a", "toy.b"]]


def test_a_private_name_imported_from_another_module_breaks_the_contract(
    toy_graph: grimp.ImportGraph,
) -> None:
    check = contract(NoPrivateNamesContract, packages=["toy"]).check(toy_graph, verbose=False)
    assert not check.kept
    assert check.metadata["found"] == ["toy.c imports toy.b._secret (l.1)"]
