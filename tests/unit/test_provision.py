"""`python -m provision DIR`: every role's password made once and kept, .env's when set, new
ones on `--rotate`; the broker's definitions written every time, with no password in them."""

from __future__ import annotations

import datetime
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from common.settings import Env, SettingsError
from harness.processes import ROOT
from provision.__main__ import provision
from provision.certificates import RENEW_DAYS, Authority, server_names
from provision.roles import pipeline_roles

ROLES = [role.role for role in pipeline_roles()]


def passwords(directory: Path) -> dict[str, str]:
    return {role: (directory / role / "password").read_text().strip() for role in ROLES}


def test_each_role_gets_a_password_of_its_own_kept_across_starts(tmp_path: Path) -> None:
    assert provision(tmp_path, set(), Env({})) == [*ROLES, "tls"]
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
    assert wrong.stderr.startswith("provision: no 'root' to name: one of admin, ca, first, last,")


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


def certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def names(cert: x509.Certificate) -> list[str]:
    held = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return [str(name.value) for name in held]


def test_each_server_gets_a_certificate_of_its_own_signed_by_the_kept_authority(
    tmp_path: Path,
) -> None:
    for host in ("rabbitmq", "rabbitmq-2", "store"):
        (tmp_path / "tls" / host).mkdir(parents=True)  # a volume the compose files mount
    made = provision(tmp_path, set(), Env({}))
    assert made[-4:] == ["tls", "tls:rabbitmq", "tls:rabbitmq-2", "tls:store"]
    ca = (tmp_path / "ca" / "ca.pem").read_bytes()
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o400
    authority = certificate(tmp_path / "ca" / "ca.pem")
    for host in ("rabbitmq", "rabbitmq-2", "store"):
        server = tmp_path / "tls" / host
        cert = certificate(server / "cert.pem")
        cert.verify_directly_issued_by(authority)
        assert names(cert) == [host, "localhost", "127.0.0.1"]
        assert (server / "ca.pem").read_bytes() == ca
        key = serialization.load_pem_private_key((server / "key.pem").read_bytes(), None)
        assert key.public_key() == cert.public_key()
    for role in ROLES:  # every client trusts the authority alone
        assert (tmp_path / role / "ca.pem").read_bytes() == ca
    kept = (tmp_path / "tls" / "store" / "cert.pem").read_bytes()
    assert provision(tmp_path, set(), Env({})) == []
    assert (tmp_path / "tls" / "store" / "cert.pem").read_bytes() == kept


def test_rotating_tls_makes_a_new_authority_and_every_certificate_again(tmp_path: Path) -> None:
    (tmp_path / "tls" / "rabbitmq").mkdir(parents=True)
    provision(tmp_path, set(), Env({}))
    before = passwords(tmp_path), (tmp_path / "ca" / "ca.pem").read_bytes()
    assert provision(tmp_path, {"tls"}, Env({})) == ["tls", "tls:rabbitmq"]
    assert passwords(tmp_path) == before[0]  # the passwords stay
    assert (tmp_path / "ca" / "ca.pem").read_bytes() != before[1]
    authority = certificate(tmp_path / "ca" / "ca.pem")
    certificate(tmp_path / "tls" / "rabbitmq" / "cert.pem").verify_directly_issued_by(authority)
    assert (tmp_path / "service_a" / "ca.pem").read_bytes() == authority.public_bytes(
        serialization.Encoding.PEM
    )


def test_a_certificate_near_its_end_is_made_again_at_the_next_start(tmp_path: Path) -> None:
    server = tmp_path / "tls" / "store"
    server.mkdir(parents=True)
    provision(tmp_path, set(), Env({}))
    ca = tmp_path / "ca"
    authority = Authority.load((ca / "ca.key").read_bytes(), (ca / "ca.pem").read_bytes())
    _key, short = authority.issue(server_names("store"), days=RENEW_DAYS)
    (server / "cert.pem").write_bytes(short)
    assert provision(tmp_path, set(), Env({})) == ["tls:store"]
    left = certificate(server / "cert.pem").not_valid_after_utc - datetime.datetime.now(
        datetime.UTC
    )
    assert left.days > RENEW_DAYS


def test_show_ca_prints_the_authoritys_certificate(tmp_path: Path) -> None:
    provision(tmp_path, set(), Env({}))
    shown = run(str(tmp_path), "--show", "ca")
    assert shown.returncode == 0
    assert shown.stdout.strip() == (tmp_path / "ca" / "ca.pem").read_text().strip()


def test_a_key_and_certificate_that_are_not_one_pair_are_made_again(tmp_path: Path) -> None:
    """A write cut short between the two files leaves a pair that would never serve."""
    server = tmp_path / "tls" / "store"
    server.mkdir(parents=True)
    provision(tmp_path, set(), Env({}))
    (server / "key.pem").write_bytes((tmp_path / "ca" / "ca.key").read_bytes())  # another key
    assert provision(tmp_path, set(), Env({})) == ["tls:store"]
    (tmp_path / "ca" / "ca.pem").write_bytes((server / "cert.pem").read_bytes())  # not the CA's
    assert provision(tmp_path, set(), Env({})) == ["tls", "tls:store"]
