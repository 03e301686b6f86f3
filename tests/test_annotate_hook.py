"""pipelines.run --annotate: the hook serves the app on the run's candidates and waits for labels."""

import types

from annotation_ui import launch
from rlhf.preferences.store import Item, LabelStore


class FakeApp:
    def __init__(self, cmd):
        self.cmd, self.terminated = cmd, False

    def poll(self):
        return None if not self.terminated else 0

    def terminate(self):
        self.terminated = True

    def wait(self, timeout=None):
        return 0


def test_hook_serves_candidates_and_returns_when_every_item_is_labelled(tmp_path, monkeypatch):
    db = tmp_path / "labels.sqlite"
    store = LabelStore(db)
    store.add_items([Item("p1", "I watched it.", ["a", "b"], [" Great.", " Bad."])])
    store.submit("alice", "p1", {"a": 1, "b": 2})
    started = []
    monkeypatch.setattr(launch.subprocess, "Popen", lambda cmd: started.append(FakeApp(cmd)) or started[-1])
    config = types.SimpleNamespace(preferences=types.SimpleNamespace(candidates=str(tmp_path / "candidates"), db=str(db)))

    launch.annotate_until_done("reward", config)  # other stages: nothing happens
    assert not started
    launch.annotate_until_done("preferences", config, poll_s=0.01)
    (app,) = started
    assert app.cmd[app.cmd.index("--candidates") + 1] == str(tmp_path / "candidates")
    assert app.cmd[app.cmd.index("--db") + 1] == str(db)
    assert app.terminated  # the app is stopped once every item has its labels


def test_without_accounts_the_hook_says_it_runs_without_sign_in(tmp_path, monkeypatch, capsys):
    db = tmp_path / "labels.sqlite"
    store = LabelStore(db)
    store.add_items([Item("p1", "I watched it.", ["a", "b"], [" Great.", " Bad."])])
    store.submit("alice", "p1", {"a": 1, "b": 2})
    monkeypatch.chdir(tmp_path)  # no users.yaml here
    monkeypatch.delenv("ANNOTATION_USERS", raising=False)
    started = []
    monkeypatch.setattr(launch.subprocess, "Popen", lambda cmd: started.append(FakeApp(cmd)) or started[-1])
    config = types.SimpleNamespace(preferences=types.SimpleNamespace(candidates="c", db=str(db)))
    launch.annotate_until_done("preferences", config, poll_s=0.01)
    assert "--no-auth" in started[0].cmd
    out = capsys.readouterr().out
    assert "WITHOUT sign-in" in out and "127.0.0.1 only" in out and "annotation_ui.users add" in out


def test_sigterm_to_the_pipeline_stops_the_app_it_started(tmp_path):
    """A killed pipelines.run must not leave the app holding its port."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "pipeline.py"
    script.write_text(f"""
import subprocess, sys, types
from annotation_ui import launch
real = subprocess.Popen
def fake_app(cmd):  # stands in for the app: a child that would run forever
    app = real([sys.executable, "-c", "import time; time.sleep(600)"])
    print(app.pid, flush=True)
    return app
launch.subprocess.Popen = fake_app
config = types.SimpleNamespace(preferences=types.SimpleNamespace(candidates="c", db={str(tmp_path / 'labels.sqlite')!r}))
launch.annotate_until_done("preferences", config, poll_s=0.2)
""")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=tmp_path,
                              env={**os.environ, "ANNOTATION_USERS": "alice:pw"})
    child = int(parent.stdout.readline())
    while "annotation app: http" not in parent.stdout.readline():  # the app is started and tracked
        pass
    parent.send_signal(signal.SIGTERM)
    assert parent.wait(timeout=30) != 0
    for _ in range(100):  # the child is ours only until reaped; poll until it is gone
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError("the app outlived the pipeline")


def test_arena_hook_returns_with_the_vote_count_once_the_target_is_stored(tmp_path, monkeypatch):
    from rlhf.arena.format import OUTCOMES, PendingVote
    from rlhf.arena.store import VoteStore

    db = tmp_path / "votes.sqlite"
    store = VoteStore(db)
    for i in range(3):
        store.add_served("alice", PendingVote(f"r{i}", f"item{i}", "ppo", "dpo", 0.0))
        store.record("alice", f"r{i}", f"item{i}", OUTCOMES[0])
    store.close()
    started = []
    monkeypatch.setattr(launch.subprocess, "Popen", lambda cmd: started.append(FakeApp(cmd)) or started[-1])

    assert launch.vote_until_done(str(tmp_path / "arena"), str(db), target=3, poll_s=0.01) == 3
    (app,) = started
    assert app.cmd[app.cmd.index("--arena") + 1] == str(tmp_path / "arena")
    assert app.terminated  # stopped once the target is reached
