"""The "arena" artifact (its one home) and the rows and dataset of arena votes.

An arena artifact holds, per held-out prompt (an *item*), one response per policy. What a voter may
see and what only the server may know live in different files:

* ``items.jsonl``  voter-facing: ``item_id``, ``prompt`` and ``responses`` {response_id: text}, the
  response ids opaque hashes listed in sorted order (not in policy order);
* ``key.json``     server-only: response_id -> {"policy", "gold_reward"};
* ``policies.json`` policy name -> the artifact it was sampled from (path, kind, fingerprint);
* ``votes.jsonl``  the votes (simulated ones when the stage simulates voters), one ``Vote`` per line.

A vote is an append-only row (``Vote``): who voted, on which item, which policy was shown left (A)
and right (B), the outcome, when, and the id of the served request. A served pair (``serve``)
carries texts and a request id only; policy names stay in the server-side ``PendingVote``.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

from rlhf.arena.ratings import OUTCOME_SCORE

KIND = "arena"
ITEMS, KEY, POLICIES, VOTES = "items.jsonl", "key.json", "policies.json", "votes.jsonl"
OUTCOMES = tuple(OUTCOME_SCORE)  # A, B, tie, both_bad


@dataclass(frozen=True)
class Vote:
    """One vote, stored append-only (a correction is a new row, nothing is overwritten)."""

    voter: str
    item_id: str
    left: str  # policy shown as response A
    right: str  # policy shown as response B
    outcome: str  # one of OUTCOMES
    timestamp: float
    request_id: str

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"vote outcome '{self.outcome}' is not one of: {', '.join(OUTCOMES)}")
        if self.left == self.right:
            raise ValueError(f"a vote compares two different policies, got '{self.left}' twice")


@dataclass(frozen=True)
class PendingVote:
    """Server-side record of a served pair: what the request id stands for. Never sent to a voter."""

    request_id: str
    item_id: str
    left: str
    right: str
    served_at: float

    def vote(self, voter: str, outcome: str, timestamp: float | None = None) -> Vote:
        return Vote(voter, self.item_id, self.left, self.right, outcome,
                    time.time() if timestamp is None else timestamp, self.request_id)


def response_id(salt: str, item_id: str, policy: str) -> str:
    """Opaque id of a policy's response to an item: guessing the policy needs the salt."""
    return hashlib.sha256(f"{salt}\0{item_id}\0{policy}".encode()).hexdigest()[:16]


@dataclass
class Arena:
    """An arena artifact's content in memory."""

    items: dict[str, dict]  # item_id -> {"item_id", "prompt", "responses": {response_id: text}}
    key: dict[str, dict]  # response_id -> {"policy", "gold_reward"}
    policies: dict[str, dict]  # policy name -> {"path", "kind", "fingerprint"}

    @classmethod
    def build(cls, prompts: Sequence[str], responses: dict[str, Sequence[str]], gold: dict[str, Sequence[float]],
              policies: dict[str, dict], salt: str) -> "Arena":
        """``responses[policy][i]`` answers ``prompts[i]``; ``gold`` the same shape (gold rewards)."""
        items, key = {}, {}
        for i, prompt in enumerate(prompts):
            item_id = f"item-{i:05d}"
            texts = {}
            for policy in policies:
                rid = response_id(salt, item_id, policy)
                texts[rid] = responses[policy][i]
                key[rid] = {"policy": policy, "gold_reward": float(gold[policy][i])}
            items[item_id] = {"item_id": item_id, "prompt": prompt, "responses": dict(sorted(texts.items()))}
        return cls(items, key, policies)

    @property
    def policy_names(self) -> list[str]:
        return list(self.policies)

    def _rid(self, item_id: str, policy: str) -> str:
        for rid in self.items[item_id]["responses"]:
            if self.key[rid]["policy"] == policy:
                return rid
        raise KeyError(f"policy '{policy}' has no response to {item_id}")

    def response(self, item_id: str, policy: str) -> str:
        return self.items[item_id]["responses"][self._rid(item_id, policy)]

    def gold(self, item_id: str, policy: str) -> float:
        return self.key[self._rid(item_id, policy)]["gold_reward"]

    def serve(self, item_id: str, left: str, right: str, now: float | None = None) -> tuple[dict, PendingVote]:
        """(what the voter sees, what the server keeps): texts and a fresh request id, no policy names."""
        request_id = secrets.token_hex(8)
        item = self.items[item_id]
        shown = {"request_id": request_id, "prompt": item["prompt"],
                 "response_a": self.response(item_id, left), "response_b": self.response(item_id, right)}
        return shown, PendingVote(request_id, item_id, left, right, time.time() if now is None else now)

    def save(self, path: Path) -> None:
        with open(path / ITEMS, "w") as fh:
            fh.writelines(json.dumps(item) + "\n" for item in self.items.values())
        (path / KEY).write_text(json.dumps(self.key, indent=1))
        (path / POLICIES).write_text(json.dumps(self.policies, indent=2))

    @classmethod
    def load(cls, path: str | Path) -> "Arena":
        path = Path(path)
        items = [json.loads(line) for line in (path / ITEMS).read_text().splitlines() if line.strip()]
        return cls({item["item_id"]: item for item in items}, json.loads((path / KEY).read_text()),
                   json.loads((path / POLICIES).read_text()))


def write_votes(path: Path, votes: Iterable[Vote]) -> None:
    with open(path, "w") as fh:
        fh.writelines(json.dumps(asdict(v)) + "\n" for v in votes)


def read_votes(path: Path) -> list[Vote]:
    if not path.is_file():
        return []
    return [Vote(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def votes_dataset(arena: Arena, votes: Sequence[Vote]):
    """The votes as a ``datasets.Dataset``: TRL-like prompt / response_a / response_b / winner columns
    (winner: A, B, tie or both_bad), plus policy_a / policy_b, voter, timestamp, item_id, request_id."""
    from datasets import Dataset

    return Dataset.from_list([
        {"prompt": arena.items[v.item_id]["prompt"], "response_a": arena.response(v.item_id, v.left),
         "response_b": arena.response(v.item_id, v.right), "winner": v.outcome, "policy_a": v.left,
         "policy_b": v.right, "voter": v.voter, "timestamp": v.timestamp, "item_id": v.item_id,
         "request_id": v.request_id}
        for v in votes
    ])


def vote_arrays(policies: Sequence[str], votes: Sequence[Vote]) -> tuple[list[int], list[int], list[str], list[str]]:
    """(left indices, right indices, outcomes, voters) for the rating and outlier functions."""
    index = {name: i for i, name in enumerate(policies)}
    unknown = {p for v in votes for p in (v.left, v.right)} - set(index)
    if unknown:
        raise ValueError(f"votes name policies not in this arena: {', '.join(sorted(unknown))}")
    return ([index[v.left] for v in votes], [index[v.right] for v in votes],
            [v.outcome for v in votes], [v.voter for v in votes])
