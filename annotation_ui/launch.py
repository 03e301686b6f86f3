"""``pipelines.run --annotate``: serve the annotation app and wait for people to label (or vote in the arena).

Runs the app as a child process (``python -m annotation_ui``) on the candidates the pipeline just
generated, prints progress, and returns when every item has its ``overlap`` labels or the operator
presses Enter; then the pipeline exports whatever has been labelled.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from rlhf.preferences.store import LabelStore


def _enter_pressed(timeout: float) -> bool:
    if not sys.stdin or not sys.stdin.isatty():
        time.sleep(timeout)
        return False
    ready, _, _ = select.select([sys.stdin], [], [], timeout)
    return bool(ready) and sys.stdin.readline() is not None


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def _auth_args() -> list[str]:
    """users.yaml in the working directory, else ANNOTATION_USERS, else a local session without sign-in."""
    if Path("users.yaml").exists():
        return ["--users", "users.yaml"]
    if os.environ.get("ANNOTATION_USERS"):
        return []
    print("annotation app: no users.yaml here and no ANNOTATION_USERS, so it runs WITHOUT sign-in, on "
          "127.0.0.1 only, and everything is recorded as 'anonymous' (add accounts with "
          "python -m annotation_ui.users add NAME)")
    return ["--no-auth"]


def _serve_until(cmd: list[str], banner: str, progress: Callable[[], tuple[str, bool] | None],
                 poll_s: float) -> None:
    """Run the app ``cmd`` as a child process until ``progress()`` says done (or Enter, or the app exits).

    ``progress()`` returns (a status line, done) or None while there is nothing to report yet.
    """
    # SIGTERM (kill, a scheduler, systemd) must run the finally below, or the app outlives us on its port.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    app = None
    try:
        app = subprocess.Popen(cmd)
        print(banner)
        while app.poll() is None:
            state = progress()
            if state is not None:
                line, done = state
                print(f"\r{line}", end="", flush=True)
                if done:
                    break
            if _enter_pressed(poll_s):
                break
        print()
    finally:
        if app is not None:
            app.terminate()
            app.wait(timeout=30)
        signal.signal(signal.SIGTERM, previous)


def annotate_until_done(stage: str, config, port: int = 7860, overlap: int = 1, poll_s: float = 5.0) -> None:
    """A ``run_pipeline`` hook: before the preferences stage, collect human labels in the app."""
    if stage != "preferences":
        return
    prefs = config.preferences
    Path(prefs.db).parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "annotation_ui", "--candidates", prefs.candidates, "--db", prefs.db,
           "--port", str(port), "--overlap", str(overlap), *_auth_args()]
    stores: list[LabelStore] = []

    def progress() -> tuple[str, bool] | None:
        if not stores and Path(prefs.db).exists():
            stores.append(LabelStore(prefs.db))
        if not stores:
            return None
        done, total = (stores[0].progress("", overlap)[k] for k in ("done_items", "total_items"))
        return f"labelled items: {done}/{total}", bool(total) and done >= total

    _serve_until(cmd, f"annotation app: http://127.0.0.1:{port}  (press Enter to stop labelling and continue "
                      "the pipeline)", progress, poll_s)


def vote_until_done(arena_dir: str, db: str, target: int, port: int = 7860, poll_s: float = 5.0) -> int:
    """Serve the arena app (``python -m annotation_ui --arena``) until ``target`` votes are stored or the
    operator presses Enter; returns the number of votes stored."""
    from rlhf.arena.store import VoteStore

    Path(db).parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "annotation_ui", "--arena", arena_dir, "--db", db, "--port", str(port),
           *_auth_args()]
    votes = [0]

    def progress() -> tuple[str, bool] | None:
        if not Path(db).exists():
            return None
        store = VoteStore(db)
        votes[0] = store.count()
        store.close()
        return f"votes: {votes[0]}/{target}", votes[0] >= target

    _serve_until(cmd, f"arena app: http://127.0.0.1:{port}  (press Enter to stop voting and rate the policies)",
                 progress, poll_s)
    return votes[0]


def vote_and_rate(config):
    """``pipelines.run --annotate`` after the arena stage: people vote on its blind pairs until
    ``arena.num_votes`` votes (or Enter), then the votes and leaderboard go to ``<run_dir>/arena_votes``."""
    from annotation_ui.arena_export import ArenaExportConfig, export_votes

    arena, db = config.arena, f"{config.run_dir}/arena_votes.sqlite"
    vote_until_done(arena.output_dir, db, arena.num_votes)
    return export_votes(ArenaExportConfig(arena.output_dir, db, f"{config.run_dir}/arena_votes",
                                          arena.bootstrap_rounds, arena.seed))
