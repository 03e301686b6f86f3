"""Accounts: salted argon2 hashes, `users add`, plain-text refusal, sign-in rate limit, and
--no-auth refused on a non-loopback host before anything is written."""

import io
import os
import stat

import pytest

from annotation_ui import users as users_mod
from annotation_ui.users import RateLimiter, Users, add_user, hash_password, load_users


def test_hashes_are_salted_argon2():
    a, b = hash_password("pw"), hash_password("pw")
    assert a.startswith("$argon2id$") and a != b  # a random salt per hash
    u = Users({"alice": a})
    assert u.check("alice", "pw") and not u.check("alice", "PW") and not u.check("bob", "pw")


def test_users_add_command_writes_a_private_hash_file(tmp_path, monkeypatch, capsys):
    path = tmp_path / "users.yaml"
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\n"))
    users_mod.main(["add", "alice", "--file", str(path), "--admin", "--password-stdin"])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "s3cret" not in path.read_text() and "$argon2id$" in path.read_text()
    prompts = iter(["pw-b", "pw-b"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(prompts))
    users_mod.main(["add", "bob", "--file", str(path)])
    u = load_users(path, env={})
    assert u.check("alice", "s3cret") and u.check("bob", "pw-b") and u.admins == {"alice"}
    prompts = iter(["one", "two"])
    with pytest.raises(SystemExit):
        users_mod.main(["add", "carol", "--file", str(path)])
    assert "differ" in capsys.readouterr().err


def test_plaintext_and_sha256_entries_are_refused(tmp_path):
    path = tmp_path / "users.yaml"
    path.write_text("alice: secret\n")
    with pytest.raises(ValueError, match=r"plain text.*python -m annotation_ui.users add alice"):
        load_users(path, env={})
    path.write_text("bob: 'sha256:abc'\n")
    with pytest.raises(ValueError, match=r"unsalted sha256.*users add bob"):
        load_users(path, env={})
    path.write_text("alice: secret\n")
    with pytest.warns(UserWarning, match="PLAIN-TEXT"):
        assert load_users(path, env={}, allow_plaintext=True).check("alice", "secret")


def test_sign_in_rate_limit_backs_off():
    now = [0.0]
    u = Users({"alice": hash_password("pw")}, limiter=RateLimiter(max_failures=5, base_delay=30, clock=lambda: now[0]))
    for _ in range(5):
        assert not u.check("alice", "guess")
    assert not u.check("alice", "pw")  # locked: even the right password is refused
    now[0] += 31
    assert u.check("alice", "pw")  # back-off over; success resets the count
    for _ in range(5):
        u.check("alice", "guess")
    key = "alice\x00"  # name + client address (none outside a request)
    assert u.limiter.retry_after(key) == pytest.approx(30)
    now[0] += 31
    assert not u.check("alice", "guess")  # one more failure after the back-off: twice as long
    assert u.limiter.retry_after(key) == pytest.approx(60)


@pytest.mark.timeout(60)
def test_sign_in_rate_limit_through_the_server(tmp_path):
    import sys
    from pathlib import Path

    import httpx

    sys.path.insert(0, str(Path(__file__).parent))
    from annotation_fixtures import Server

    from rlhf.preferences.store import Item

    srv = Server(tmp_path / "labels.sqlite", None)
    srv.store.add_items([Item("p", "prompt", ["a", "b"], ["x", "y"])])
    with srv:
        login = lambda pw: httpx.post(srv.url + "login", data={"username": "bob", "password": pw})  # noqa: E731
        assert [login("wrong").status_code for _ in range(5)] == [400] * 5
        assert login("pw-bob").status_code == 400  # locked for this name from this address
        assert srv.users.limiter.retry_after("bob\x00127.0.0.1") > 0  # keyed by name and client address
        assert httpx.post(srv.url + "login", data={"username": "alice", "password": "pw-alice"}).status_code == 200


def test_no_auth_refused_on_a_public_host(tmp_path, capsys):
    from annotation_ui.__main__ import is_loopback, main

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    db = tmp_path / "labels.sqlite"
    with pytest.raises(SystemExit):
        main(["--db", str(db), "--no-auth", "--host", "0.0.0.0"])
    err = capsys.readouterr().err
    assert "--no-auth" in err and "loopback" in err and len(err.strip().splitlines()) == 1
    assert not db.exists()  # refused before anything was written


def test_user_visible_errors_hide_paths_and_rationales_are_bounded(tmp_path):
    from types import SimpleNamespace

    import gradio as gr

    from annotation_ui import app as ui
    from rlhf.preferences.store import Item, LabelStore

    store = LabelStore(tmp_path / "secret-dir" / "labels.sqlite")
    store.add_items([Item("p", "prompt", ["a", "b"], ["x", "y"])])
    cfg = ui.AppConfig(users=Users({"alice": hash_password("pw")}))
    req = SimpleNamespace(username="alice")
    with pytest.raises(gr.Error) as err:
        ui.api_submit(store, cfg, "nope", {"a": 1, "b": 2}, False, False, "", "", req)
    assert "secret-dir" not in str(err.value) and "nope" in str(err.value)
    with pytest.raises(gr.Error, match="under 2000"):
        ui.api_submit(store, cfg, "p", {"a": 1, "b": 2}, False, False, "x" * 2001, "", req)
    assert store.labels() == []
    ui.api_submit(store, cfg, "p", {"a": 1, "b": 2}, False, False, "x" * 2000, "", req)
    assert len(store.labels()[0].rationale) == 2000
    assert ui.launch_kwargs(cfg)["max_file_size"] == "1mb"


def test_app_serves_gold_first_and_tells_a_paused_annotator(tmp_path):
    from types import SimpleNamespace

    from annotation_ui import app as ui
    from rlhf.preferences import quality
    from rlhf.preferences.store import Item, LabelStore

    store = LabelStore(tmp_path / "labels.sqlite")
    store.add_items([Item(f"p{i}", "prompt", [f"p{i}a", f"p{i}b"], ["x", "y"]) for i in range(4)])
    quality.add_gold_items(store, [("p3", {"vote": "a_better"})])
    cfg = ui.AppConfig(users=Users({"alice": hash_password("pw")}), qc=quality.QCConfig(onboarding=1))
    req = SimpleNamespace(username="alice")
    view = ui.on_load(store, cfg, ui.TaskState(), req)
    assert view.state.item_id == "p3"  # onboarding: the gold item comes first
    quality.pause(store, "alice", "test")
    view = ui.on_load(store, cfg, ui.TaskState(), req)
    assert view.state.item_id is None and "paused" in view.status
