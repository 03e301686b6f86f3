"""A small "candidates" artifact for the annotation tests (no generate stage needed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

XSS_SCRIPT = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=2">'


@dataclass
class FixtureConfig:
    """Stands in for the generate stage's config in the fixture's manifest."""

    num_prompts: int = 6
    num_candidates: int = 3


def fixture_rows(num_prompts: int = 6, num_candidates: int | list[int] = 3) -> list[dict]:
    """Rows of a candidates dataset; ``num_candidates`` may differ per prompt (a list)."""
    ks = num_candidates if isinstance(num_candidates, list) else [num_candidates] * num_prompts
    rows = []
    for p, k in enumerate(ks):
        texts = [f"Candidate {c} for prompt {p}: the film was {'great' if c % 2 else 'dull'}." for c in range(k)]
        if p == 0:  # untrusted model output must render as text
            texts[0] = f"Sneaky {XSS_SCRIPT} and {XSS_IMG} end."
        rows.append({
            "prompt_id": f"p{p:03d}",
            "prompt": f"Review #{p}: This movie",
            "candidate_ids": [f"p{p:03d}-c{c}" for c in range(k)],
            "candidates": texts,
        })
    return rows


def make_candidates_artifact(path: str | Path, num_prompts: int = 6, num_candidates: int | list[int] = 3) -> Path:
    """Write a finished candidates artifact (manifest + data/ saved with save_to_disk) at ``path``."""
    from datasets import Dataset

    from rlhf.artifacts import write_artifact

    rows = fixture_rows(num_prompts, num_candidates)
    with write_artifact(path, "candidates", FixtureConfig(len(rows), max(len(r["candidates"]) for r in rows))) as out:
        Dataset.from_list(rows).save_to_disk(str(out.path / "data"))
    return Path(path)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The annotation app served in this process on 127.0.0.1 (a context manager)."""

    def __init__(self, db_path, candidates_dir=None, users="alice:pw-alice,bob:pw-bob", admins=("alice",),
                 overlap: int = 1, guidelines: str | None = "docs/annotation_guidelines.md",
                 lease_seconds: float = 120.0):
        from annotation_ui.__main__ import import_candidates
        from annotation_ui.app import AppConfig
        from rlhf.preferences.store import LabelStore
        from annotation_ui.users import load_users

        self.store = LabelStore(db_path, lease_seconds=lease_seconds, overlap=overlap)
        if candidates_dir is not None:
            import_candidates(self.store, str(candidates_dir))
        env = {"ANNOTATION_USERS": users} if isinstance(users, str) else {}
        self.users = load_users(None, list(admins), env=env)
        if isinstance(users, dict):
            from annotation_ui.users import hash_password

            self.users.passwords.update({n: hash_password(pw) for n, pw in users.items()})
        self.config = AppConfig(overlap=overlap, guidelines=guidelines, users=self.users)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.demo = None

    def __enter__(self) -> "Server":
        from annotation_ui.app import build_app, launch_kwargs

        self.demo = build_app(self.store, self.config)
        self.demo.queue(default_concurrency_limit=16)
        self.demo.launch(server_name="127.0.0.1", server_port=self.port, prevent_thread_lock=True, quiet=True,
                         **launch_kwargs(self.config))
        return self

    def __exit__(self, *exc) -> None:
        self.demo.close()
        self.store.close()
