"""The README is part of the product: its settings table and commands must match the code."""

from __future__ import annotations

import re

from harness.processes import ROOT

README = (ROOT / "README.md").read_text()


def settings_read_by_the_code() -> set[str]:
    names = set()
    for package in ("common", "first", "service", "last"):
        for path in (ROOT / package).glob("*.py"):
            names |= set(re.findall(r"env\.\w+\(\s*\"([A-Z][A-Z0-9_]+)\"", path.read_text()))
    return names


def test_every_setting_the_code_reads_is_in_the_readme_table() -> None:
    names = settings_read_by_the_code()
    assert {"AMQP_URL", "WORKERS", "EXPECTED_MESSAGES"} <= names
    rows = {
        m
        for line in README.splitlines()
        if line.startswith("| `")
        for m in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])
    }
    assert names <= rows, f"missing from the README table: {sorted(names - rows)}"


def test_every_variable_the_compose_files_interpolate_is_in_the_readme() -> None:
    for compose_file in ("docker-compose.yml", "docker-compose.cluster.yml"):
        compose = (ROOT / compose_file).read_text()
        for name in set(re.findall(r"\$\{([A-Z0-9_]+)", compose)):
            assert f"`{name}`" in README, (compose_file, name)


def test_the_make_targets_the_readme_names_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"`make ([\w-]+)", README)):
        assert re.search(rf"^{target}:", makefile, re.M), target
