"""Annotator accounts: salted argon2id password hashes in a users file, sign-in rate limiting.

Create or update accounts with::

    python -m annotation_ui.users add alice [--file users.yaml] [--admin] [--password-stdin]

which writes (mode 0600)::

    users:
      alice: "$argon2id$v=19$m=19456,t=2,p=1$..."
    admins: [alice]

A password stored in plain text (or as the old unsalted ``sha256:<hex>``) is refused with the
command that fixes it; ``--allow-plaintext`` (local experiments only) accepts it with a warning.
``ANNOTATION_USERS="alice:pw,bob:pw"`` adds accounts from the environment (hashed in memory, never
written anywhere); ``ANNOTATION_ADMINS`` (comma separated) adds admins.

Sign-in is rate limited per account and client address: after ``max_failures`` wrong passwords
in a row, that name from that address is refused (right password or not) for a back-off that
doubles with each further failure. Gradio's auth callback receives only name and password, so the
``ClientAddress`` middleware (installed by ``annotation_ui.app.launch_kwargs``) hands it the
address of the request being served. Behind a reverse proxy that address is the proxy's.
"""

from __future__ import annotations

import argparse
import contextvars
import getpass
import json
import os
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

HASH_PREFIX = "$argon2"
# argon2id at OWASP's minimum (19 MiB, 2 passes, 1 lane): ~50 ms per check on a small server, so
# 50 annotators signing in at once stay responsive; the salt is random per hash.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def add_command(name: str, path: str | Path = "users.yaml") -> str:
    return f"python -m annotation_ui.users add {name} --file {path}"


CLIENT_ADDRESS: contextvars.ContextVar[str] = contextvars.ContextVar("client_address", default="")


class ClientAddress:
    """ASGI middleware: makes the client address of the request being served visible to the auth
    callback (``CLIENT_ADDRESS``), which Gradio calls without the request."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http":
            return await self.app(scope, receive, send)
        token = CLIENT_ADDRESS.set((scope.get("client") or ("",))[0] or "")
        try:
            await self.app(scope, receive, send)
        finally:
            CLIENT_ADDRESS.reset(token)


@dataclass
class RateLimiter:
    """Failed sign-ins per key: ``max_failures`` in a row -> locked for ``base_delay`` seconds,
    doubling with every further failure up to ``max_delay``; a success resets the key."""

    max_failures: int = 5
    base_delay: float = 30.0
    max_delay: float = 900.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, int] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, key: str) -> float:
        """Seconds until ``key`` may try again (0 = now)."""
        with self._lock:
            return max(0.0, self._locked_until.get(key, 0.0) - self.clock())

    def record(self, key: str, ok: bool) -> None:
        with self._lock:
            if ok:
                self._failures.pop(key, None)
                self._locked_until.pop(key, None)
                return
            n = self._failures[key] = self._failures.get(key, 0) + 1
            if n >= self.max_failures:
                delay = min(self.max_delay, self.base_delay * 2 ** (n - self.max_failures))
                self._locked_until[key] = self.clock() + delay


@dataclass
class Users:
    passwords: dict[str, str] = field(default_factory=dict)  # name -> argon2 hash
    admins: set[str] = field(default_factory=set)
    limiter: RateLimiter = field(default_factory=RateLimiter)

    @property
    def enabled(self) -> bool:
        return bool(self.passwords)

    def check(self, name: str, password: str) -> bool:
        """Gradio's auth callback: True when the name exists, it is not locked out by the rate
        limit, and the password matches its hash."""
        if name is None or password is None:
            return False
        key = f"{name}\x00{CLIENT_ADDRESS.get()}"
        if self.limiter.retry_after(key) > 0:
            return False
        stored = self.passwords.get(name)
        try:
            ok = stored is not None and _HASHER.verify(stored, password)
        except (VerificationError, InvalidHashError):
            ok = False
        if stored is None:
            _HASHER.hash(password)  # same cost for unknown names: timing does not reveal which exist
        self.limiter.record(key, ok)
        return ok

    def is_admin(self, name: str | None) -> bool:
        return bool(name) and name in self.admins


def _parse_pairs(text: str, what: str) -> dict[str, str]:
    pairs = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, password = part.partition(":")
        if not sep or not name.strip() or not password:
            raise ValueError(f"{what}: entry {part!r} is not name:password (e.g. alice:pw,bob:pw)")
        pairs[name.strip()] = password
    return pairs


def read_users_file(path: str | Path) -> tuple[dict[str, str], list[str]]:
    """The raw (name -> stored secret, admins) of a users file, without checking the secrets."""
    path = Path(path)
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else _yaml(text)
    except Exception as exc:
        raise ValueError(f"users file {path} is not valid YAML/JSON: {str(exc).splitlines()[0]}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"users file {path} must map name -> password hash (or have a 'users' mapping)")
    mapping = data.get("users", data) if isinstance(data.get("users"), dict) else data
    out = {}
    for name, secret in mapping.items():
        if name in ("admins", "users"):
            continue
        if not isinstance(secret, (str, int)):
            raise ValueError(f"users file {path}: password hash of {name!r} must be a string")
        out[str(name)] = str(secret)
    return out, [str(a) for a in data.get("admins", []) or []]


def load_users(path: str | Path | None = None, admins: list[str] | None = None,
               env: dict[str, str] | None = None, allow_plaintext: bool = False) -> Users:
    """Accounts from ``path`` (YAML or JSON, argon2 hashes) plus ANNOTATION_USERS / ANNOTATION_ADMINS."""
    env = os.environ if env is None else env
    users = Users()
    if path:
        if not Path(path).is_file():
            raise ValueError(f"users file not found: {path}. Create it with `{add_command('NAME', path)}`")
        secrets, file_admins = read_users_file(path)
        for name, secret in secrets.items():
            if secret.startswith(HASH_PREFIX):
                users.passwords[name] = secret
                continue
            if not allow_plaintext:
                kind = "an unsalted sha256 digest" if secret.startswith("sha256:") else "plain text"
                raise ValueError(f"users file {path}: the password of {name!r} is stored as {kind}; "
                                 f"replace it with a hash: `{add_command(name, path)}`")
            if secret.startswith("sha256:"):
                raise ValueError(f"users file {path}: sha256 digests cannot be checked safely; "
                                 f"re-enter the password of {name!r}: `{add_command(name, path)}`")
            warnings.warn(f"users file {path}: {name!r} has a PLAIN-TEXT password (--allow-plaintext); "
                          f"hash it with `{add_command(name, path)}`", stacklevel=2)
            users.passwords[name] = hash_password(secret)
        users.admins.update(file_admins)
    users.passwords.update({n: hash_password(pw) for n, pw in
                            _parse_pairs(env.get("ANNOTATION_USERS", ""), "ANNOTATION_USERS").items()})
    users.admins.update(a.strip() for a in env.get("ANNOTATION_ADMINS", "").split(",") if a.strip())
    users.admins.update(admins or [])
    return users


def add_user(path: str | Path, name: str, password: str, admin: bool = False) -> None:
    """Write ``name``'s argon2 hash into the users file (created with mode 0600; others kept)."""
    path = Path(path)
    name = name.strip()
    if not name or any(c in name for c in ":,\n") or name != " ".join(name.split()):
        raise ValueError(f"user name {name!r} is empty or contains ':', ',' or extra spaces; pick another")
    if not password:
        raise ValueError("empty password: choose a non-empty one")
    secrets, admins = read_users_file(path) if path.is_file() else ({}, [])
    secrets[name] = hash_password(password)
    if admin and name not in admins:
        admins.append(name)
    data = {"users": secrets, "admins": admins}
    text = json.dumps(data, indent=2) if path.suffix == ".json" else _yaml_dump(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp files are mode 0600
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _yaml(text: str):
    import yaml

    return yaml.safe_load(text)


def _yaml_dump(data) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m annotation_ui.users", description="Manage annotator accounts.")
    sub = p.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="add an account or set its password (asks twice, or reads stdin)")
    add.add_argument("name")
    add.add_argument("--file", default="users.yaml", help="users file (YAML or .json; created with mode 0600)")
    add.add_argument("--admin", action="store_true", help="also list the account as an admin")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin (one line)")
    args = p.parse_args(argv)
    try:
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {args.name}: ")
            if getpass.getpass("again: ") != password:
                raise ValueError("the two passwords differ; nothing written")
        add_user(args.file, args.name, password, admin=args.admin)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"{args.name}: password hash written to {args.file}")


if __name__ == "__main__":
    main()
