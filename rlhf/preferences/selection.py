"""What to label: pick candidate pairs from a candidates artifact's items within a label budget.

One interface, ``select_pairs(items, budget, config, reward_model, seed)``; each strategy is a small
function in ``STRATEGIES``. Every strategy except "all" returns items of exactly two candidates (one
pair, the original candidate ids, a new item id from ``pair_item_id``), so the annotation app and the
preferences stage consume the result unchanged and every label traces back to its candidates.

Strategies that score pairs use the reward model's members: anything with
``member_scores(texts) -> Tensor[members, texts]`` (``rlhf.reward_model.RewardModel``; an ensemble is
the reward stage's ``ensemble_size`` > 1). Each member's predicted preference is the Bradley-Terry
P(a > b) = sigmoid(r_a - r_b) on its normalized scores.

Random selection is the baseline and the default to ship until an active strategy is measured better
(issue 14; ``benchmarks/label_efficiency.py`` and docs/active_labeling.md hold the measurements).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Callable, Literal, Protocol

import numpy as np
import torch

from rlhf.candidates import pair_item_id
from rlhf.config import ConfigError, option
from rlhf.preferences.store import Item
from rlhf.sampling import join

Strategy = Literal["all", "random", "ensemble_disagreement", "entropy", "diversity", "double_thompson"]
NEEDS_ENSEMBLE = {"ensemble_disagreement", "double_thompson"}
NEEDS_REWARD_MODEL = {"entropy"} | NEEDS_ENSEMBLE


class Scorer(Protocol):
    def member_scores(self, texts: list[str]) -> torch.Tensor: ...


@dataclass
class SelectionConfig:
    strategy: Strategy = option(
        "all", "what to label: all (every item, all K candidates: no selection); random (uniform pairs, the "
        "baseline); ensemble_disagreement (pairs whose predicted preference the reward-model ensemble members "
        "disagree on most: std over members of sigmoid(r_a - r_b)); entropy (pairs whose predicted preference is "
        "closest to a coin flip); diversity (cover the prompt space: farthest-point order over TF-IDF prompt "
        "vectors, one pair per prompt before any second); double_thompson (per prompt two ensemble members each "
        "pick their best candidate, Dwaracherla et al. 2024, https://arxiv.org/abs/2402.00396). Active learning "
        "anchor: BAL-PM, Melo et al. 2024, https://arxiv.org/abs/2406.10023")
    budget: int | None = option(None, "most pairs to select (all: most items); null = no limit")
    max_draws: int = option(
        8, "double_thompson: member pairs drawn per prompt until their best candidates differ (else the prompt is skipped)")

    def validate(self, reward_model: Any = None) -> None:
        if self.budget is not None and self.budget < 1:
            raise ConfigError(f"selection.budget must be >= 1 or null (no limit), got {self.budget}")
        if self.max_draws < 1:
            raise ConfigError(f"selection.max_draws must be >= 1, got {self.max_draws}")
        if self.strategy in NEEDS_REWARD_MODEL and reward_model is None:
            raise ConfigError(f"selection.strategy={self.strategy} scores pairs with a reward model: set reward_model="
                              "<reward artifact> (python -m pipelines.reward), or use strategy random or diversity")
        if self.strategy in NEEDS_ENSEMBLE and ensemble_size(reward_model) < 2:
            raise ConfigError(f"selection.strategy={self.strategy} needs a reward-model ensemble, got a single model: "
                              "train one with the reward stage's ensemble_size=4 (or use strategy entropy)")


def ensemble_size(reward_model: Any) -> int:
    return getattr(reward_model, "ensemble_size", 1) if reward_model is not None else 0


@dataclass(frozen=True)
class Pair:
    item: Item
    a: int  # candidate indices, a < b
    b: int

    @property
    def item_id(self) -> str:
        return pair_item_id(self.item.item_id, self.item.candidate_ids[self.a], self.item.candidate_ids[self.b])

    def as_item(self) -> Item:
        i = self.item
        return Item(self.item_id, i.prompt, [i.candidate_ids[self.a], i.candidate_ids[self.b]],
                    [i.candidates[self.a], i.candidates[self.b]])


def all_pairs(items: list[Item], exclude: set[str]) -> list[Pair]:
    pairs = [Pair(it, a, b) for it in items for a, b in combinations(range(len(it.candidates)), 2)]
    return [p for p in pairs if p.item_id not in exclude]


def member_scores(reward_model: Scorer, items: list[Item]) -> dict[str, np.ndarray]:
    """item_id -> [members, K] normalized scores of its candidates (one batched scoring call)."""
    texts = [join(it.prompt, c) for it in items for c in it.candidates]
    scores = np.asarray(reward_model.member_scores(texts), dtype=float)
    out, start = {}, 0
    for it in items:
        out[it.item_id] = scores[:, start : start + len(it.candidates)]
        start += len(it.candidates)
    return out


def preference(scores: dict[str, np.ndarray], pairs: list[Pair]) -> np.ndarray:
    """[members, pairs] each member's Bradley-Terry P(a > b) = sigmoid(r_a - r_b)."""
    diff = np.stack([scores[p.item.item_id][:, p.a] - scores[p.item.item_id][:, p.b] for p in pairs], axis=1)
    return 1 / (1 + np.exp(-diff))


def top(pairs: list[Pair], value: np.ndarray, budget: int | None, rng: np.random.Generator) -> list[Pair]:
    """The ``budget`` pairs of highest ``value`` (ties broken at random)."""
    order = np.lexsort((rng.random(len(pairs)), -value))
    return [pairs[i] for i in order[:budget]]


# --------------------------------------------------------------------------------------------
# Strategies: (pairs, budget, config, reward_model, rng, items) -> chosen pairs, best first.


def select_random(pairs, budget, config, reward_model, rng, items) -> list[Pair]:
    return [pairs[i] for i in rng.permutation(len(pairs))[:budget]]


def select_entropy(pairs, budget, config, reward_model, rng, items) -> list[Pair]:
    """Highest binary entropy of the (members') mean predicted preference: the near coin flips."""
    p = preference(member_scores(reward_model, items), pairs).mean(0).clip(1e-12, 1 - 1e-12)
    return top(pairs, -(p * np.log(p) + (1 - p) * np.log(1 - p)), budget, rng)


def select_disagreement(pairs, budget, config, reward_model, rng, items) -> list[Pair]:
    """Largest std over ensemble members of the predicted preference (epistemic uncertainty)."""
    return top(pairs, preference(member_scores(reward_model, items), pairs).std(0), budget, rng)


def select_diversity(pairs, budget, config, reward_model, rng, items) -> list[Pair]:
    """Prompts in farthest-point order (greedy k-center on TF-IDF vectors); one random pair per prompt
    per pass, so every prompt gets a pair before any gets a second."""
    by_item: dict[str, list[Pair]] = {}
    for p in pairs:
        by_item.setdefault(p.item.item_id, []).append(p)
    prompts = [it for it in items if it.item_id in by_item]
    order = farthest_point_order(tfidf([it.prompt for it in prompts]), rng)
    queues = [[by_item[prompts[i].item_id][j] for j in rng.permutation(len(by_item[prompts[i].item_id]))]
              for i in order]
    chosen: list[Pair] = []
    while any(queues) and (budget is None or len(chosen) < budget):
        for q in queues:
            if q and (budget is None or len(chosen) < budget):
                chosen.append(q.pop(0))
    return chosen


def select_double_thompson(pairs, budget, config, reward_model, rng, items) -> list[Pair]:
    """Per prompt (in random order): draw two distinct ensemble members (a Thompson sample each of the
    reward); each picks its best candidate; label that pair if they differ (Dwaracherla et al. 2024,
    "Efficient Exploration for LLMs", double Thompson sampling). Further passes add one more pair per prompt."""
    scores = member_scores(reward_model, items)
    open_pairs = {(p.item.item_id, p.a, p.b): p for p in pairs}
    members = next(iter(scores.values())).shape[0] if scores else 0
    chosen: list[Pair] = []
    progress = True
    while progress and (budget is None or len(chosen) < budget):
        progress = False
        for idx in rng.permutation(len(items)):
            if budget is not None and len(chosen) >= budget:
                break
            it = items[idx]
            for _ in range(config.max_draws):
                i, j = rng.choice(members, size=2, replace=False)
                a, b = sorted((int(np.argmax(scores[it.item_id][i])), int(np.argmax(scores[it.item_id][j]))))
                if a != b and (it.item_id, a, b) in open_pairs:
                    chosen.append(open_pairs.pop((it.item_id, a, b)))
                    progress = True
                    break
    return chosen


STRATEGIES: dict[str, Callable[..., list[Pair]]] = {
    "random": select_random,
    "ensemble_disagreement": select_disagreement,
    "entropy": select_entropy,
    "diversity": select_diversity,
    "double_thompson": select_double_thompson,
}


def select_pairs(items: list[Item], budget: int | None, config: SelectionConfig, reward_model: Scorer | None = None,
                 seed: int = 0, exclude: set[str] | frozenset[str] = frozenset()) -> list[Item]:
    """At most ``budget`` two-candidate items chosen by ``config.strategy``, best first.

    ``exclude`` holds pair item ids already labelled (an active-learning loop over one pool).
    "all" returns the items unchanged (K candidates each; at most ``budget`` of them, in order).
    """
    config.validate(reward_model)
    if budget is not None and budget < 1:
        raise ConfigError(f"label budget must be >= 1 or None (no limit), got {budget}")
    if config.strategy == "all":
        return list(items[:budget])
    if config.strategy not in STRATEGIES:
        raise ConfigError(f"unknown selection.strategy {config.strategy!r}; choose one of all, {', '.join(STRATEGIES)}")
    pairs = all_pairs(items, set(exclude))
    if not pairs:
        return []
    rng = np.random.default_rng(seed)
    chosen = STRATEGIES[config.strategy](pairs, budget, config, reward_model, rng, items)
    return [p.as_item() for p in chosen[:budget]]


# --------------------------------------------------------------------------------------------
# A cheap prompt embedding for diversity: TF-IDF over lower-cased words, rows L2-normalized.


def tfidf(texts: list[str]) -> np.ndarray:
    docs = [re.findall(r"[a-z0-9']+", t.lower()) for t in texts]
    vocab = {w: i for i, w in enumerate(sorted({w for d in docs for w in d}))}
    df = Counter(w for d in docs for w in set(d))
    idf = np.array([math.log((1 + len(docs)) / (1 + df[w])) + 1 for w in vocab])
    x = np.zeros((len(docs), max(len(vocab), 1)))
    for r, d in enumerate(docs):
        for w, n in Counter(d).items():
            x[r, vocab[w]] = n * idf[vocab[w]]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def farthest_point_order(x: np.ndarray, rng: np.random.Generator) -> list[int]:
    """Greedy k-center (Gonzalez 1985): a random first point, then always the point farthest from those
    chosen so far. Every prompt gets a place; near-duplicates come last."""
    if len(x) == 0:
        return []
    order = [int(rng.integers(len(x)))]
    dist = np.linalg.norm(x - x[order[0]], axis=1)
    for _ in range(len(x) - 1):
        dist[order] = -1
        nxt = int(np.argmax(dist))
        order.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(x - x[nxt], axis=1))
    return order
