"""``python -m annotation_ui --candidates <artifact> --db <labels.sqlite>``: serve the annotation app."""

from __future__ import annotations

import argparse
import ipaddress
import socket
import sys
from pathlib import Path

from annotation_ui.app import MAX_K, AppConfig, build_app, launch_kwargs
from annotation_ui.users import load_users
from rlhf.resources import GUIDELINES
from rlhf.preferences.export import candidate_items
from rlhf.preferences.store import LabelStore


def import_candidates(store: LabelStore, path: str) -> int:
    """Import the items of a "candidates" artifact (idempotent); returns how many were new."""
    return store.add_items(candidate_items(path)[1])


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost" (the only hosts --no-auth may listen on)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port_free(host: str, port: int) -> None:
    """Fail before anything is written when another server already listens on host:port."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # like uvicorn: TIME_WAIT is not "busy"
        try:
            s.bind((host, port))
        except OSError as exc:
            raise ValueError(f"cannot listen on {host}:{port} ({exc.strerror}): is another app running there? "
                             f"Pass --port with a free port") from None


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m annotation_ui", description="Serve the preference annotation app.")
    p.add_argument("--candidates", help="candidates artifact directory (python -m pipelines.generate); "
                   "optional when the database already holds items")
    p.add_argument("--db", required=True, help="SQLite label store (with --arena: the vote store; created if missing)")
    p.add_argument("--arena", help="arena artifact (python -m pipelines.arena): serve blind A/B votes between policies")
    p.add_argument("--pairing", default="active", help="--arena: active (most-overlapping ratings) or uniform")
    p.add_argument("--votes-per-voter", type=int, help="--arena: cap on votes per voter (default: no cap)")
    p.add_argument("--users", help="users file with password hashes (python -m annotation_ui.users add NAME), "
                   "or set ANNOTATION_USERS='alice:pw,bob:pw'")
    p.add_argument("--allow-plaintext", action="store_true",
                   help="accept plain-text passwords in --users (local experiments only; warns)")
    p.add_argument("--admins", default="", help="comma-separated admin names (or an 'admins' list in --users)")
    p.add_argument("--no-auth", action="store_true",
                   help="no sign-in (loopback --host only); every label is recorded as 'anonymous'")
    p.add_argument("--gold", help="JSONL of gold items for quality control: {item_id, ranks|vote} per line")
    p.add_argument("--overlap", type=int, default=1, help="distinct annotators per item")
    p.add_argument("--lease-seconds", type=float, default=120.0,
                   help="how long an item stays reserved for the annotator it was shown to without a heartbeat "
                        "(the open page renews it every lease/4 s; closing the tab releases it)")
    p.add_argument("--guidelines", default=str(GUIDELINES), help="Markdown shown in the app (default: the packaged guide)")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (0.0.0.0 exposes it)")
    p.add_argument("--port", type=int, default=7860)
    args = p.parse_args(argv)

    # Every input is checked before the DB is created or written.
    try:
        if args.no_auth and not is_loopback(args.host):
            raise ValueError(f"--no-auth makes every visitor an admin: it only runs on a loopback --host "
                             f"(127.0.0.1), not {args.host}. Create accounts with `python -m annotation_ui.users add NAME`")
        users = load_users(args.users, [a.strip() for a in args.admins.split(",") if a.strip()],
                           allow_plaintext=args.allow_plaintext)
        if not users.enabled and not args.no_auth:
            raise ValueError("no annotator accounts: pass --users users.yaml or set ANNOTATION_USERS "
                             "(or --no-auth for a local single-user session)")
        if args.arena:
            from annotation_ui.arena_app import ArenaConfig, serve

            check_port_free(args.host, args.port)

            arena_config = ArenaConfig(users=users, pairing=args.pairing, votes_per_voter=args.votes_per_voter)
            return serve(args.arena, args.db, arena_config, args.host, args.port)
        if args.overlap < 1:
            raise ValueError("--overlap must be >= 1")
        if args.lease_seconds < 5:
            raise ValueError("--lease-seconds must be >= 5 (the page renews its lease every lease/4 seconds)")
        if args.guidelines and not Path(args.guidelines).is_file():
            raise ValueError(f"guidelines file {args.guidelines} does not exist: fix --guidelines "
                             "(or pass --guidelines '' for none)")
        check_port_free(args.host, args.port)
        items = candidate_items(args.candidates)[1] if args.candidates else []
        too_big = [it.item_id for it in items if len(it.candidate_ids) > MAX_K]
        if too_big:
            raise ValueError(f"{len(too_big)} item(s) have more than {MAX_K} candidates (e.g. {too_big[0]}); "
                             f"the app shows at most {MAX_K}: generate fewer per prompt")
        if not items and not Path(args.db).is_file():
            raise ValueError(f"no label DB at {args.db} and no --candidates: pass --candidates <candidates artifact>")
        store = LabelStore(args.db, lease_seconds=args.lease_seconds, overlap=args.overlap)
        if items:
            print(f"imported {store.add_items(items)} new item(s) from {args.candidates}")
        if not store.items():
            raise ValueError(f"{args.db} holds no items: pass --candidates <candidates artifact>")
        if args.gold:
            from rlhf.preferences import quality

            added = quality.add_gold_items(store, quality.read_gold_file(args.gold), source="file")
            print(f"gold items: {added} from {args.gold}")
    except Exception as exc:  # ArtifactError, ValueError, CandidatesChanged: one line, no traceback
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    config = AppConfig(overlap=args.overlap, guidelines=args.guidelines or None, users=users,
                       heartbeat_s=max(1.0, args.lease_seconds / 4))
    demo = build_app(store, config)
    demo.queue(default_concurrency_limit=16)
    try:
        demo.launch(server_name=args.host, server_port=args.port, **launch_kwargs(config))
    except OSError as exc:  # the port was taken between the check and the launch
        print(f"error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
