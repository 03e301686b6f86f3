"""A small "arena" artifact for the arena-app tests (no policies sampled), and the app served in-process.

Policy names and paths are distinctive strings, so a test can search a page or a response for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from annotation_fixtures import XSS_SCRIPT, free_port

POLICIES = {"policy-zebra-sft": "sft", "policy-yak-ppo": "ppo", "policy-koala-dpo": "dpo"}
SECRET_PATH = "/runs/secret-run-dir-walrus"


@dataclass
class FixtureConfig:
    num_prompts: int = 5


def make_arena_artifact(path: str | Path, num_prompts: int = 5) -> Path:
    from rlhf.arena.format import KIND, Arena
    from rlhf.artifacts import write_artifact

    prompts = [f"Review #{i}: This movie" for i in range(num_prompts)]
    responses = {name: [f"Response text {n * 100 + i}." for i in range(num_prompts)] for n, name in enumerate(POLICIES)}
    responses["policy-yak-ppo"][0] = f"Sneaky {XSS_SCRIPT} end."
    gold = {name: [float(n)] * num_prompts for n, name in enumerate(POLICIES)}
    meta = {name: {"path": f"{SECRET_PATH}/{name}", "kind": kind, "fingerprint": f"fp-{name}"}
            for name, kind in POLICIES.items()}
    arena = Arena.build(prompts, responses, gold, meta, salt="test-salt")
    with write_artifact(path, KIND, FixtureConfig(num_prompts)) as out:
        arena.save(out.path)
    return Path(path)


def secrets_in(text: str) -> list[str]:
    """Policy names or paths found in ``text``."""
    return [s for s in [*POLICIES, SECRET_PATH] if s in text]


class ArenaAppServer:
    """The arena app served in this process on 127.0.0.1 (a context manager)."""

    def __init__(self, arena_dir, db_path, users="alice:pw-alice,bob:pw-bob", admins=("alice",), **config):
        from annotation_ui.arena_app import ArenaConfig, ArenaServer
        from annotation_ui.users import load_users
        from rlhf.arena.format import Arena
        from rlhf.arena.store import VoteStore

        self.store = VoteStore(db_path)
        self.users = load_users(None, list(admins), env={"ANNOTATION_USERS": users})
        self.server = ArenaServer(Arena.load(arena_dir), self.store, ArenaConfig(users=self.users, seed=0, **config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"

    def __enter__(self) -> "ArenaAppServer":
        from annotation_ui.arena_app import arena_launch_kwargs, build_arena_app

        self.demo = build_arena_app(self.server)
        self.demo.queue(default_concurrency_limit=16)
        self.demo.launch(server_name="127.0.0.1", server_port=self.port, prevent_thread_lock=True, quiet=True,
                         **arena_launch_kwargs(self.server.config))
        return self

    def __exit__(self, *exc) -> None:
        self.demo.close()
        self.store.close()
