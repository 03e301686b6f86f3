"""``python -m annotation_ui --candidates <artifact> --db <labels.sqlite>``: serve the annotation app."""

from __future__ import annotations

import argparse
import sys

from annotation_ui.app import AppConfig, build_app, launch_kwargs
from annotation_ui.users import load_users
from rlhf.resources import GUIDELINES
from rlhf.preferences.export import candidate_items
from rlhf.preferences.store import LabelStore


def import_candidates(store: LabelStore, path: str) -> int:
    """Import the items of a "candidates" artifact (idempotent); returns how many were new."""
    return store.add_items(candidate_items(path)[1])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m annotation_ui", description="Serve the preference annotation app.")
    p.add_argument("--candidates", help="candidates artifact directory (python -m pipelines.generate); "
                   "optional when the database already holds items")
    p.add_argument("--db", required=True, help="SQLite label store (with --arena: the vote store; created if missing)")
    p.add_argument("--arena", help="arena artifact (python -m pipelines.arena): serve blind A/B votes between policies")
    p.add_argument("--pairing", default="active", help="--arena: active (most-overlapping ratings) or uniform")
    p.add_argument("--votes-per-voter", type=int, help="--arena: cap on votes per voter (default: no cap)")
    p.add_argument("--users", help="YAML/JSON file name -> password (or set ANNOTATION_USERS='alice:pw,bob:pw')")
    p.add_argument("--admins", default="", help="comma-separated admin names (or an 'admins' list in --users)")
    p.add_argument("--no-auth", action="store_true", help="no sign-in; every label is recorded as 'anonymous'")
    p.add_argument("--overlap", type=int, default=1, help="distinct annotators per item")
    p.add_argument("--guidelines", default=str(GUIDELINES), help="Markdown shown in the app (default: the packaged guide)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=7860)
    args = p.parse_args(argv)

    try:
        users = load_users(args.users, [a.strip() for a in args.admins.split(",") if a.strip()])
        if not users.enabled and not args.no_auth:
            raise ValueError("no annotator accounts: pass --users users.yaml or set ANNOTATION_USERS "
                             "(or --no-auth for a local single-user session)")
        if args.arena:
            from annotation_ui.arena_app import ArenaConfig, serve

            arena_config = ArenaConfig(users=users, pairing=args.pairing, votes_per_voter=args.votes_per_voter)
            return serve(args.arena, args.db, arena_config, args.host, args.port)
        if args.overlap < 1:
            raise ValueError("--overlap must be >= 1")
        store = LabelStore(args.db)
        if args.candidates:
            new = import_candidates(store, args.candidates)
            print(f"imported {new} new item(s) from {args.candidates}")
        if not store.items():
            raise ValueError(f"{args.db} holds no items: pass --candidates <candidates artifact>")
    except Exception as exc:  # ArtifactError, ValueError: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    config = AppConfig(overlap=args.overlap, guidelines=args.guidelines, users=users)
    demo = build_app(store, config)
    demo.queue(default_concurrency_limit=16)
    demo.launch(server_name=args.host, server_port=args.port, **launch_kwargs(config))


if __name__ == "__main__":
    main()
