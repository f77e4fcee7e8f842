"""The README and the pages under docs/ are part of the product: the settings table must list
what the code reads, and what the pages tell people to run (make targets, `python -m` modules,
files) must exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.unit.pages import CONFIGURATION, ROOT, code_blocks, name, pages

# Every package whose processes read settings: the runtime, the HTTP pipeline and the tools.
READERS = ("common", "first", "service", "last", "http_pipeline", "tools", "provision")
COMPOSE_FILES = ("docker-compose.yml", "docker-compose.cluster.yml")


def settings_read_by_the_code() -> set[str]:
    names = set()
    for package in READERS:
        for path in (ROOT / package).rglob("*.py"):
            names |= set(re.findall(r"env\.\w+\(\s*\"([A-Z][A-Z0-9_]+)\"", path.read_text()))
    return names


def variables_the_compose_files_interpolate() -> set[str]:
    names = set()
    for compose_file in COMPOSE_FILES:
        names |= set(re.findall(r"\$\{([A-Z0-9_]+)", (ROOT / compose_file).read_text()))
    return names


def settings_table() -> set[str]:
    """The variables the rows of docs/configuration.md's tables name in their first column."""
    return {
        variable
        for line in CONFIGURATION.read_text().splitlines()
        if line.startswith("| `")
        for variable in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])
    }


def test_every_setting_the_code_reads_is_in_the_settings_table() -> None:
    names = settings_read_by_the_code()
    assert {"AMQP_URL", "WORKERS", "EXPECTED_MESSAGES", "NEXT_URL", "MANAGEMENT_URL"} <= names
    missing = sorted(names - settings_table())
    assert not missing, f"missing from the table in docs/configuration.md: {missing}"


def test_every_variable_the_compose_files_interpolate_is_in_the_settings_table() -> None:
    missing = sorted(variables_the_compose_files_interpolate() - settings_table())
    assert not missing, f"missing from the table in docs/configuration.md: {missing}"


def test_every_row_of_the_settings_table_is_still_read() -> None:
    known = settings_read_by_the_code() | variables_the_compose_files_interpolate()
    stale = sorted(settings_table() - known)
    assert not stale, f"nothing reads these rows of docs/configuration.md: {stale}"


def make_targets_named(text: str) -> set[str]:
    """`make x` in the prose, and make x at the start of a command or after a shell operator,
    or an environment setting, in code blocks."""
    named = set(re.findall(r"`make ([\w-]+)", text))
    for block in code_blocks(text):
        named |= set(re.findall(r"(?:^|[;&|]\s*|\w=\S+\s+)make ([\w-]+)", block, re.M))
    return named


@pytest.mark.parametrize("page", pages(), ids=name)
def test_the_make_targets_a_page_names_exist(page: Path) -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = make_targets_named(page.read_text())
    missing = sorted(t for t in targets if not re.search(rf"^{re.escape(t)}:", makefile, re.M))
    assert not missing, f"{name(page)} names make targets the Makefile lacks: {missing}"


def runnable(module: str) -> bool:
    """What `python -m module` can run from the repository's root: a module file, or a
    package with a __main__.py."""
    path = ROOT.joinpath(*module.split("."))
    return path.with_suffix(".py").is_file() or (path / "__main__.py").is_file()


@pytest.mark.parametrize("page", pages(), ids=name)
def test_the_python_modules_a_page_runs_exist(page: Path) -> None:
    modules = set(re.findall(r"python -m ([\w.]+\w)", page.read_text()))
    missing = sorted(module for module in modules if not runnable(module))
    assert not missing, f"{name(page)} runs modules that do not exist: {missing}"


def repository_files_named(text: str) -> set[str]:
    """The code spans that name a file of this repository by its path: a top-level folder of
    it, then a file name with an extension (`common/topology.py`, `rabbitmq/20-cluster.conf`,
    a test's `tests/faults/test_x.py::test_y`)."""
    folders = {path.name for path in ROOT.iterdir() if path.is_dir()}
    return {
        span
        for span in re.findall(r"`([\w.-]+(?:/[\w.-]+)*/[\w-]+\.\w+)(?:::[\w\[\]-]+)*`", text)
        if span.split("/")[0] in folders and not span.startswith(".")
    }


@pytest.mark.parametrize("page", pages(), ids=name)
def test_the_files_a_page_names_exist(page: Path) -> None:
    missing = sorted(f for f in repository_files_named(page.read_text()) if not (ROOT / f).exists())
    assert not missing, f"{name(page)} names files that do not exist: {missing}"
