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
