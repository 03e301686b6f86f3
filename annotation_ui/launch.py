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


def annotate_until_done(stage: str, config, port: int = 7860, overlap: int = 1, poll_s: float = 5.0) -> None:
    """A ``run_pipeline`` hook: before the preferences stage, collect human labels in the app."""
    if stage != "preferences":
        return
    prefs = config.preferences
    Path(prefs.db).parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "annotation_ui", "--candidates", prefs.candidates, "--db", prefs.db,
           "--port", str(port), "--overlap", str(overlap)]
    cmd += _auth_args()
    # SIGTERM (kill, a scheduler, systemd) must run the finally below, or the app outlives us on its port.
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    app = None
    try:
        app = subprocess.Popen(cmd)
        print(f"annotation app: http://127.0.0.1:{port}  (press Enter to stop labelling and continue the pipeline)")
        store = None
        while app.poll() is None:
            if store is None and Path(prefs.db).exists():
                store = LabelStore(prefs.db)
            if store is not None:
                progress = store.progress("", overlap)
                print(f"\rlabelled items: {progress['done_items']}/{progress['total_items']}", end="", flush=True)
                if progress["total_items"] and progress["done_items"] >= progress["total_items"]:
                    break
            if _enter_pressed(poll_s):
                break
        print()
    finally:
        if app is not None:
            app.terminate()
            app.wait(timeout=30)
        signal.signal(signal.SIGTERM, previous)


def vote_until_done(arena_dir: str, db: str, target: int, port: int = 7860, poll_s: float = 5.0) -> int:
    """Serve the arena app (``python -m annotation_ui --arena``) until ``target`` votes are stored or the
    operator presses Enter; returns the number of votes stored."""
    from rlhf.arena.store import VoteStore

    Path(db).parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "annotation_ui", "--arena", arena_dir, "--db", db, "--port", str(port),
           *_auth_args()]
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)  # as annotate_until_done: never orphan the app
    app, votes = None, 0
    try:
        app = subprocess.Popen(cmd)
        print(f"arena app: http://127.0.0.1:{port}  (press Enter to stop voting and rate the policies)")
        while app.poll() is None:
            if Path(db).exists():
                store = VoteStore(db)
                votes = store.count()
                store.close()
                print(f"\rvotes: {votes}/{target}", end="", flush=True)
                if votes >= target:
                    break
            if _enter_pressed(poll_s):
                break
        print()
    finally:
        if app is not None:
            app.terminate()
            app.wait(timeout=30)
        signal.signal(signal.SIGTERM, previous)
    return votes


def vote_and_rate(config):
    """``pipelines.run --annotate`` after the arena stage: people vote on its blind pairs until
    ``arena.num_votes`` votes (or Enter), then the votes and leaderboard go to ``<run_dir>/arena_votes``."""
    from annotation_ui.arena_export import ArenaExportConfig, export_votes

    arena, db = config.arena, f"{config.run_dir}/arena_votes.sqlite"
    vote_until_done(arena.output_dir, db, arena.num_votes)
    return export_votes(ArenaExportConfig(arena.output_dir, db, f"{config.run_dir}/arena_votes",
                                          arena.bootstrap_rounds, arena.seed))
