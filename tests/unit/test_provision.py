"""`python -m provision DIR`: every role's password made once and kept, .env's when set, new
ones on `--rotate`; the broker's definitions written every time, with no password in them."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from common.settings import Env, SettingsError
from harness.processes import ROOT
from provision.__main__ import provision
from provision.roles import pipeline_roles

ROLES = [role.role for role in pipeline_roles()]


def passwords(directory: Path) -> dict[str, str]:
    return {role: (directory / role / "password").read_text().strip() for role in ROLES}


def test_each_role_gets_a_password_of_its_own_kept_across_starts(tmp_path: Path) -> None:
    assert provision(tmp_path, set(), Env({})) == ROLES
    made = passwords(tmp_path)
    assert len(set(made.values())) == len(ROLES)
    assert all(len(password) >= 43 for password in made.values())  # 32 random bytes
    for role in ROLES:
        mode = stat.S_IMODE((tmp_path / role / "password").stat().st_mode)
        assert mode == 0o400, (role, oct(mode))
    assert provision(tmp_path, set(), Env({})) == []
    assert passwords(tmp_path) == made


def test_a_password_set_in_env_wins_and_rotate_replaces_the_rest(tmp_path: Path) -> None:
    provision(tmp_path, set(), Env({}))
    before = passwords(tmp_path)
    env = Env({"RABBITHOLE_ADMIN_PASSWORD": "chosen-by-the-operator"})
    assert provision(tmp_path, {"admin", "service_b"}, env) == ["service_b", "admin"]
    after = passwords(tmp_path)
    assert after["admin"] == "chosen-by-the-operator"
    assert after["service_b"] != before["service_b"]
    assert {r: p for r, p in after.items() if r not in ("admin", "service_b")} == {
        r: p for r, p in before.items() if r not in ("admin", "service_b")
    }


def test_the_definitions_name_every_user_and_hold_no_password(tmp_path: Path) -> None:
    provision(tmp_path, set(), Env({}))
    text = (tmp_path / "broker" / "definitions.json").read_text()
    assert not any(password in text for password in passwords(tmp_path).values())
    document = json.loads(text)
    assert sorted(user["name"] for user in document["users"]) == sorted(ROLES)
    assert "guest" not in text


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "provision", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_show_prints_one_password_and_a_wrong_role_is_one_line(tmp_path: Path) -> None:
    provision(tmp_path, set(), Env({}))
    shown = run(str(tmp_path), "--show", "monitor")
    assert shown.returncode == 0 and shown.stdout.strip() == passwords(tmp_path)["monitor"]
    wrong = run(str(tmp_path), "--show", "root")
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1
    assert wrong.stderr.startswith("provision: no role 'root': one of admin, first, last,")


def test_the_clusters_cookie_is_made_only_where_its_volume_is_mounted(tmp_path: Path) -> None:
    assert "cookie" not in provision(tmp_path, set(), Env({}))
    assert not (tmp_path / "cookie").exists()
    (tmp_path / "cookie").mkdir()
    assert provision(tmp_path, set(), Env({})) == ["cookie"]
    cookie = (tmp_path / "cookie" / "erlang.cookie").read_text().strip()
    assert len(cookie) == 64 and int(cookie, 16) >= 0
    assert provision(tmp_path, set(), Env({})) == []
    assert provision(tmp_path, {"cookie"}, Env({})) == ["cookie"]
    assert (tmp_path / "cookie" / "erlang.cookie").read_text().strip() != cookie
    provision(tmp_path, set(), Env({"RABBITMQ_ERLANG_COOKIE": "set-in-env"}))
    assert (tmp_path / "cookie" / "erlang.cookie").read_text().strip() == "set-in-env"


def test_a_bad_password_in_env_is_refused_without_showing_it(tmp_path: Path) -> None:
    bad = "s3cret\x01"
    with pytest.raises(SettingsError) as refused:
        provision(tmp_path, set(), Env({"RABBITHOLE_LAST_PASSWORD": bad}))
    assert "RABBITHOLE_LAST_PASSWORD='***'" in str(refused.value) and "s3cret" not in str(
        refused.value
    )


def test_a_key_prefix_that_cannot_be_one_acl_rule_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="STORE_KEY_PREFIX"):
        provision(tmp_path, set(), Env({"STORE_KEY_PREFIX": "two words:"}))
