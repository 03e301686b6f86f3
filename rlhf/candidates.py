"""The "candidates" artifact: K sampled responses per prompt, for annotators to rank.

Its one home: the kind, the content-derived ids and the reader. ``rlhf.stages.generate`` writes it;
the preferences stage, the label store and the annotation app read it.
"""

from __future__ import annotations

import hashlib

from datasets import Dataset, load_from_disk

from rlhf.artifacts import Artifact

KIND = "candidates"
COLUMNS = ["prompt_id", "prompt", "candidate_ids", "candidates"]


def _digest(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()


def prompt_id(prompt: str) -> str:
    """Content-derived, so the same prompt has the same id in every candidates artifact."""
    return "p" + _digest(prompt)[:10]


def candidate_id(pid: str, k: int, text: str) -> str:
    """Depends on the text: a label made for another sample of this prompt can never match by accident."""
    return f"{pid}-{k}-{_digest(pid, str(k), text)[:6]}"


def pair_item_id(item_id: str, a: str, b: str) -> str:
    """The item id of one candidate pair of item ``item_id`` (selection): the same pair, the same id."""
    return f"{item_id}~{_digest(a, b)[:8]}"


def source_item_id(item_id: str) -> str:
    """The prompt's item id behind a pair item id (``pair_item_id``); other ids are returned as they are."""
    return item_id.split("~", 1)[0]


def load_candidates(artifact: Artifact) -> Dataset:
    """The candidates dataset of a finished artifact."""
    return load_from_disk(str(artifact.path / "data"))
