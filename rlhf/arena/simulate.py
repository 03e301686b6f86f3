"""Simulated arena voters who judge by the gold reward, and how well the arena recovers the gold ranking.

For demos, tests and the pairing study (benchmarks/arena_votes.py): with a known gold reward per
response, a voter prefers the response with the higher gold reward and is wrong with some noise.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from rlhf.arena.pairing import choose_pair, open_voters, order_overlap
from rlhf.arena.ratings import bootstrap_strengths, outcome_scores

NOISE_MODELS = ("flip", "bradley_terry")


@dataclass
class SimulatedVoter:
    """How a simulated voter turns two gold rewards into a vote."""

    noise: float = 0.25  # flip: probability of voting against the gold order
    noise_model: str = "flip"  # or "bradley_terry": P(left) = sigmoid((gold_left - gold_right) / temperature)
    temperature: float = 0.1  # bradley_terry only: gold-reward difference that gives odds of e:1

    def __post_init__(self) -> None:
        if self.noise_model not in NOISE_MODELS:
            raise ValueError(f"noise_model='{self.noise_model}' is not one of: {', '.join(NOISE_MODELS)}")
        if not 0.0 <= self.noise <= 1.0:
            raise ValueError(f"noise={self.noise} must be a probability in [0, 1], e.g. 0.25")
        if self.temperature <= 0:
            raise ValueError(f"temperature={self.temperature} must be > 0")

    def vote(self, gold_left: float, gold_right: float, rng: np.random.Generator) -> str:
        if self.noise_model == "bradley_terry":
            p_left = 1.0 / (1.0 + np.exp(-(gold_left - gold_right) / self.temperature))
            return "A" if rng.random() < p_left else "B"
        if gold_left == gold_right:
            return "tie"
        better = "A" if gold_left > gold_right else "B"
        return better if rng.random() >= self.noise else ("B" if better == "A" else "A")


def spearman(ratings, gold) -> float:
    """Rank agreement of the arena ratings with the policies' mean gold reward (1 = same order);
    NaN when either side gives every policy the same value (no order to compare)."""
    if np.ptp(ratings) == 0 or np.ptp(gold) == 0:
        return float("nan")
    return float(stats.spearmanr(ratings, gold).statistic)


@dataclass
class SimulatedVotes:
    """Votes as parallel lists of policy indices, prompt indices, outcomes and voter ids."""

    left: list[int] = field(default_factory=list)
    right: list[int] = field(default_factory=list)
    prompt: list[int] = field(default_factory=list)
    outcome: list[str] = field(default_factory=list)
    voter: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.outcome)


def simulate_arena(gold: np.ndarray, num_votes: int, voter: SimulatedVoter, pairing: str = "active", seed: int = 0,
                   num_voters: int = 1, votes_per_voter: int | None = None, refit_every: int = 5,
                   pairing_rounds: int = 100) -> SimulatedVotes:
    """Collect ``num_votes`` simulated votes over ``gold`` ([policies, prompts] gold rewards).

    Each vote: a pair chosen by ``pairing`` (active pairing refits the bootstrap every ``refit_every``
    votes, with ``pairing_rounds`` rounds: enough to rank the overlaps), a random prompt,
    and the next voter still under ``votes_per_voter``. Stops early when every voter is capped.
    """
    rng = np.random.default_rng(seed)
    n, num_prompts = gold.shape
    if n < 2:
        raise ValueError(f"an arena needs at least 2 policies, got {n}")
    voters = [f"sim-{k}" for k in range(num_voters)]
    votes, given = SimulatedVotes(), Counter()
    overlap = None
    for k in range(num_votes):
        allowed = open_voters(given, voters, votes_per_voter)
        if not allowed:
            break
        if pairing == "active" and k >= refit_every and k % refit_every == 0:
            overlap = order_overlap(bootstrap_strengths(
                np.array(votes.left), np.array(votes.right), outcome_scores(votes.outcome), n, pairing_rounds, seed + k))
        i, j = choose_pair(n, rng, pairing, overlap)
        p = int(rng.integers(num_prompts))
        votes.left.append(i)
        votes.right.append(j)
        votes.prompt.append(p)
        votes.outcome.append(voter.vote(gold[i, p], gold[j, p], rng))
        votes.voter.append(allowed[k % len(allowed)])
        given[votes.voter[-1]] += 1
    return votes
