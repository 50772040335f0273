"""The named queries form one interface that every dialect implements.

Code above the drivers runs queries by name on whatever database it is given, so
every dialect must define the same names (a third dialect is checked by the same
tests); a dialect's own queries (`<dialect>/driver.sql`) are run by its driver
module only; and every query the package ships is run by the package.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kojo.sql import DRIVER_FILE, queries, query_files

DIALECTS = ("sqlite", "postgres", "mysql")
SRC = Path(__file__).resolve().parents[2] / "src" / "kojo"


def interface(dialect: str) -> set[str]:
    """The names a dialect defines outside its driver.sql."""
    return {
        name for name, path in query_files(dialect).items() if path != f"{dialect}/{DRIVER_FILE}"
    }


def own(dialect: str) -> set[str]:
    return set(query_files(dialect)) - interface(dialect)


def string_constants(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


def modules() -> dict[str, set[str]]:
    """Every module of the package (relative path) and the strings it contains."""
    return {str(path.relative_to(SRC)): string_constants(path) for path in SRC.rglob("*.py")}


def test_every_dialect_defines_the_same_query_names() -> None:
    first, *others = DIALECTS
    for dialect in others:
        assert interface(dialect) == interface(first), (
            f"only in {first}: {sorted(interface(first) - interface(dialect))}; "
            f"only in {dialect}: {sorted(interface(dialect) - interface(first))}"
        )


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_dialect_file_never_redefines_a_shared_query(dialect: str) -> None:
    shared = {name for name, path in query_files(dialect).items() if "/" not in path}
    for name in interface(dialect) - shared:
        assert query_files(dialect)[name] != f"{dialect}/{DRIVER_FILE}"
    assert len(queries(dialect)) == len(query_files(dialect))  # no name defined twice


def test_code_above_the_drivers_names_only_queries_of_the_interface() -> None:
    every = set().union(*(query_files(d) for d in DIALECTS))
    for module, strings in modules().items():
        if module.startswith("backends/"):
            continue
        private = strings & every - interface(DIALECTS[0])
        assert not private, f"{module} runs a dialect's own queries: {sorted(private)}"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_dialects_own_queries_are_run_by_its_driver_only(dialect: str) -> None:
    for module, strings in modules().items():
        users = strings & own(dialect)
        if users:
            assert module.startswith(f"backends/{dialect}"), (
                f"{module} runs {dialect}'s own queries {sorted(users)}"
            )


# Outside backends/ (the drivers and the stores), a module runs only the queries of its
# own concern's file: the rest of the package goes through the stores' methods.
CONCERNS = {
    "cron_scheduler.py": {"cron.sql"},
    "maintenance.py": {"maintenance.sql", "messages.sql"},
    "ipc.py": {"messages.sql"},
    "dashboard/queries.py": {"dashboard.sql"},
}


def concern(path: str) -> str:
    return path.rpartition("/")[2]  # sqlite/jobs.sql is jobs.sql's concern


def test_outside_the_stores_a_module_runs_only_its_own_concerns_queries() -> None:
    files = {name: concern(path) for d in DIALECTS for name, path in query_files(d).items()}
    for module, strings in modules().items():
        if module.startswith("backends/"):
            continue
        allowed = CONCERNS.get(module, set())
        strays = sorted(n for n in strings & set(files) if files[n] not in allowed)
        assert not strays, f"{module} runs queries of other concerns: {strays}"


def test_every_shipped_query_is_run_by_the_package() -> None:
    used = set().union(*modules().values())
    for dialect in DIALECTS:
        unused = set(query_files(dialect)) - used
        assert not unused, f"{dialect} ships queries nothing runs: {sorted(unused)}"
