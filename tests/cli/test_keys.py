"""``ferry keys create`` / ``list`` / ``revoke`` on a key file: the secret is printed once and stored nowhere, list
shows no secret, revoke is by name, bad input is one line, and concurrent commands lose no key."""

from __future__ import annotations

import json
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ferry.cli import app
from ferry.online.auth import KeyStore, hash_key
from ferry.online.keyfile import KEY_PREFIX, create_key, read_keys, revoke_key


def keys(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["keys", *args], env={"COLUMNS": "300", **(env or {})})
    return result.exit_code, result.stdout, result.stderr


def test_create_prints_the_secret_once_list_never_and_revoke_by_name(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    env = {"FERRY_ONLINE_API_KEYS_FILE": str(path)}
    code, out, err = keys("create", "shop", "--scope", "predict", "--scope", "feedback", "--rate", "5", env=env)
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith(KEY_PREFIX)
    assert len(out.strip().splitlines()) == 1  # stdout is the secret alone, for scripts
    assert "shown only now" in err
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    stored = path.read_text()
    assert secret not in stored
    assert hash_key(secret) in stored
    store = KeyStore([], path, reload_s=0)
    assert store.check(secret, "predict").status == 200
    assert store.check(secret, "admin").status == 403

    code, out, err = keys("create", "ops", "-s", "admin", "--expires", "2020-01-01T00:00:00", "--file", str(path))
    assert code == 0, err
    expired = out.strip()
    assert store.check(expired, "admin").why == "expired_key"  # read again: the file changed

    code, listing, _ = keys("list", env=env)
    assert code == 0
    for name, state in (("shop", "active"), ("ops", "expired")):
        assert any(name in line and state in line for line in listing.splitlines()), listing
    assert secret not in listing
    assert expired not in listing
    assert hash_key(secret) not in listing
    assert hash_key(expired) not in listing

    code, out, err = keys("revoke", "shop", env=env)
    assert code == 0, err
    assert store.check(secret, "predict").why == "revoked_key"
    assert any("shop" in line and "revoked" in line for line in keys("list", env=env)[1].splitlines())
    assert [e.name for e in read_keys(path)] == ["shop", "ops"]  # the revoked entry stays; its name is never reused


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("create", "shop", "-s", "predict"), "a key named 'shop' is already in"),
        (("create", "new", "-s", "everything"), "--scope 'everything' is not a scope"),
        (("create", 'bad"name', "-s", "predict"), "key name 'bad\"name' is invalid"),
        (("create", "new", "-s", "predict", "--rate", "0"), "key rate_per_s"),
        (("create", "new", "-s", "predict", "--daily-quota", "-1"), "key daily_quota"),
        (("revoke", "nobody"), "no key named 'nobody'"),
    ],
)
def test_bad_input_is_one_line_and_changes_nothing(tmp_path: Path, args: tuple[str, ...], says: str) -> None:
    path = tmp_path / "keys.json"
    create_key(path, "shop", ["predict"])
    before = path.read_bytes()
    code, out, err = keys(*args, "--file", str(path))
    assert code == 2, (out, err)
    assert says in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert path.read_bytes() == before


def test_no_key_file_and_a_broken_key_file_are_named(tmp_path: Path) -> None:
    code, _, err = keys("list", env={"FERRY_ONLINE_API_KEYS_FILE": None})
    assert code == 2
    assert "set FERRY_ONLINE_API_KEYS_FILE" in err
    broken = tmp_path / "keys.json"
    broken.write_text('[{"name": "x", "sha256": "nothex", "scopes": ["predict"]}]')
    code, _, err = keys("create", "y", "-s", "predict", "--file", str(broken))
    assert code == 2
    assert "is not a list of key entries: at 0.sha256" in err
    assert "nothex" in broken.read_text()  # left as it was


def test_concurrent_creates_and_revokes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"

    def make(i: int) -> str:
        return create_key(path, f"k{i}", ["predict"])[0]

    with ThreadPoolExecutor(8) as pool:
        secrets = list(pool.map(make, range(32)))
    entries = read_keys(path)
    assert sorted(e.name for e in entries) == sorted(f"k{i}" for i in range(32))
    assert {e.sha256 for e in entries} == {hash_key(s) for s in secrets}
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: revoke_key(path, f"k{i}"), range(0, 32, 2)))
    revoked = {e.name for e in read_keys(path) if e.revoked}
    assert revoked == {f"k{i}" for i in range(0, 32, 2)}
    json.loads(path.read_text())  # whole
