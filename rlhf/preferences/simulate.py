"""Simulated annotators (AlpacaFarm-style): rank candidates by the gold reward, with human-like noise.

Each simulated annotator perceives a candidate's utility as its gold reward plus Gumbel noise of
scale ``temperature``, and ranks by it. Sorting Gumbel-perturbed scores samples a Plackett-Luce
ranking, so any two candidates are ordered by a Bradley-Terry model:
P(i above j) = sigmoid((gold_i - gold_j) / temperature); temperature 0 ranks by the gold reward
exactly. Candidates whose perceived utilities are within ``tie_margin`` of the best candidate of
their group share a rank (people do not split hairs), and with probability ``flip_rate`` the whole
ranking is reversed (AlpacaFarm's label flips; for two candidates exactly a flipped pairwise label).
See Dubois et al. 2023, "AlpacaFarm", section 3.2.

They write through ``LabelStore`` exactly like people do: ``next_item`` assignment with the same
overlap, ``submit`` for each label, annotator names ``sim-0``, ``sim-1``, ... They write to a DB of
their own (the preferences stage's ``simulated_db``), never to the one people label in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rlhf.preferences.store import Item, LabelStore
from rlhf.config import ConfigError, option
from rlhf.sampling import join
from rlhf.tasks.gold import gold_reward

PREFIX = "sim-"


def is_simulated(annotator: str) -> bool:
    return annotator.startswith(PREFIX)


@dataclass
class SimulatorConfig:
    num_annotators: int = option(3, "simulated annotators, named sim-0 .. sim-(n-1)")
    overlap: int = option(2, "distinct annotators per item (as in the annotation app); agreement needs >= 2")
    temperature: float = option(
        0.1, "Bradley-Terry/Gumbel noise scale on the gold reward (VADER compound, in [-1, 1]); 0 = exact gold "
        "order (AlpacaFarm, Dubois et al. 2023)")
    flip_rate: float = option(0.0, "probability that an annotator reverses a whole ranking (AlpacaFarm label flips)")
    tie_margin: float = option(0.02, "candidates whose perceived rewards are within this of their group's best tie")
    seed: int = option(0, "annotator i draws its noise from the stream (seed, i)")

    def validate(self) -> None:
        if self.num_annotators < 1 or self.overlap < 1:
            raise ConfigError(f"num_annotators and overlap must be >= 1, got {self.num_annotators} and {self.overlap}")
        if self.temperature < 0 or self.tie_margin < 0:
            raise ConfigError(f"temperature and tie_margin must be >= 0, got {self.temperature} and {self.tie_margin}")
        if not 0 <= self.flip_rate <= 1:
            raise ConfigError(f"flip_rate must be in [0, 1], got {self.flip_rate}")


def noisy_ranks(gold: list[float], temperature: float, flip_rate: float, tie_margin: float,
                rng: np.random.Generator) -> tuple[list[int], bool]:
    """Dense ranks (1 = best, ties share a rank) of one annotator's noisy view; and whether it flipped."""
    utility = np.asarray(gold, dtype=float)
    if temperature > 0:
        utility = utility + temperature * rng.gumbel(size=len(utility))
    ranks = [0] * len(utility)
    rank, leader = 0, None
    for i in np.argsort(-utility, kind="stable"):
        if leader is None or utility[leader] - utility[i] > tie_margin:
            rank, leader = rank + 1, i  # a new tie group, led by its best candidate
        ranks[i] = rank
    flipped = bool(flip_rate > 0 and rng.random() < flip_rate)
    if flipped:
        ranks = [rank + 1 - r for r in ranks]
    return ranks, flipped


def item_gold(item: Item) -> list[float]:
    return gold_reward(join(item.prompt, c) for c in item.candidates)


def simulate(store: LabelStore, cfg: SimulatorConfig) -> dict[str, int]:
    """Let the simulated annotators label until ``next_item`` has nothing left for any of them.

    They take turns, one item each, like a team working through the queue in parallel.
    """
    cfg.validate()
    names = [f"{PREFIX}{i}" for i in range(cfg.num_annotators)]
    rngs = {name: np.random.default_rng([cfg.seed, i]) for i, name in enumerate(names)}
    gold_cache: dict[str, list[float]] = {}
    counts = {"sim/labels": 0, "sim/flipped": 0}
    active = list(names)
    while active:
        for name in list(active):
            item = store.next_item(name, cfg.overlap)
            if item is None:
                active.remove(name)
                continue
            if item.item_id not in gold_cache:
                gold_cache[item.item_id] = item_gold(item)
            ranks, flipped = noisy_ranks(gold_cache[item.item_id], cfg.temperature, cfg.flip_rate,
                                         cfg.tie_margin, rngs[name])
            store.submit(name, item.item_id, dict(zip(item.candidate_ids, ranks)),
                         rationale="simulated: gold reward + noise", meta={"simulated": True, "flipped": flipped},
                         overlap=cfg.overlap)
            counts["sim/labels"] += 1
            counts["sim/flipped"] += flipped
    return counts


def random_clicks(k: int, rng: np.random.Generator) -> tuple[list[int], str]:
    """A careless annotator: a uniformly random button on a pair (A, B, tie, both bad), uniformly
    random ranks 1..K (ties allowed) otherwise. Returns (ranks, vote)."""
    if k == 2:
        vote = ["a_better", "b_better", "tie", "both_bad"][rng.integers(4)]
        return list({"a_better": (1, 2), "b_better": (2, 1)}.get(vote, (1, 1))), vote
    return [int(r) for r in rng.integers(1, k + 1, size=k)], "ranking"


def pair_vote(ranks: list[int]) -> str:
    """The button an honest annotator presses for a ranking (pairs), else "ranking"."""
    if len(ranks) != 2:
        return "ranking"
    return "tie" if ranks[0] == ranks[1] else ("a_better" if ranks[0] < ranks[1] else "b_better")


def label_with_qc(store: LabelStore, name: str, rewards: dict[str, list[float]], qc, overlap: int,
                  max_labels: int, rng: np.random.Generator, careless: bool = False,
                  flip_rate: float = 0.25, temperature: float = 0.05) -> dict[str, Any]:
    """One simulated annotator working through the app's assignment (``quality.choose_item``) with
    the quality-control hook after every label, until paused, done or ``max_labels``.
    Returns {"labels": n, "paused_at": label count when paused or None}."""
    from rlhf.preferences import quality

    for n in range(1, max_labels + 1):
        item = quality.choose_item(store, name, overlap, qc)
        if item is None:
            return {"labels": n - 1, "paused_at": None}
        if careless:
            ranks, vote = random_clicks(len(item.candidate_ids), rng)
        else:
            ranks, _ = noisy_ranks(rewards[item.item_id], temperature, flip_rate, 0.0, rng)
            vote = pair_vote(ranks)
        store.submit(name, item.item_id, dict(zip(item.candidate_ids, ranks)), meta={"vote": vote, "simulated": True})
        if quality.after_label(store, name, qc):
            return {"labels": n, "paused_at": n}
    return {"labels": max_labels, "paused_at": None}
