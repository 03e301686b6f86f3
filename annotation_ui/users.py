"""Annotator accounts: name -> password from a YAML/JSON file or the ANNOTATION_USERS variable.

File formats (YAML or JSON)::

    alice: secret1            # plain mapping name -> password
    bob: "sha256:<hex>"       # or a SHA-256 hex digest of the password, prefixed "sha256:"

    users: {alice: secret1}   # or with an explicit admin list
    admins: [alice]

``ANNOTATION_USERS="alice:pw,bob:pw"`` adds accounts from the environment; ``ANNOTATION_ADMINS``
(comma separated) adds admins.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Users:
    passwords: dict[str, str] = field(default_factory=dict)
    admins: set[str] = field(default_factory=set)

    @property
    def enabled(self) -> bool:
        return bool(self.passwords)

    def check(self, name: str, password: str) -> bool:
        """Gradio's auth callback: True when the name exists and the password matches."""
        stored = self.passwords.get(name)
        if stored is None or password is None:
            return False
        if stored.startswith("sha256:"):
            given = "sha256:" + hashlib.sha256(password.encode()).hexdigest()
            return hmac.compare_digest(given, stored)
        return hmac.compare_digest(password.encode(), stored.encode())

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


def load_users(path: str | Path | None = None, admins: list[str] | None = None,
               env: dict[str, str] | None = None) -> Users:
    """Accounts from ``path`` (YAML or JSON) plus ANNOTATION_USERS / ANNOTATION_ADMINS."""
    env = os.environ if env is None else env
    users = Users()
    if path:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"users file not found: {path}")
        text = path.read_text()
        try:
            data = json.loads(text) if path.suffix == ".json" else _yaml(text)
        except Exception as exc:
            raise ValueError(f"users file {path} is not valid YAML/JSON: {str(exc).splitlines()[0]}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"users file {path} must map name -> password (or have a 'users' mapping)")
        mapping = data.get("users", data) if isinstance(data.get("users"), dict) else data
        for name, password in mapping.items():
            if name == "admins":
                continue
            if not isinstance(password, (str, int)):
                raise ValueError(f"users file {path}: password of {name!r} must be a string")
            users.passwords[str(name)] = str(password)
        users.admins.update(str(a) for a in data.get("admins", []) or [])
    users.passwords.update(_parse_pairs(env.get("ANNOTATION_USERS", ""), "ANNOTATION_USERS"))
    users.admins.update(a.strip() for a in env.get("ANNOTATION_ADMINS", "").split(",") if a.strip())
    users.admins.update(admins or [])
    return users


def _yaml(text: str):
    import yaml

    return yaml.safe_load(text)
