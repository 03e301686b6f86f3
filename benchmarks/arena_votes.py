"""Votes needed for the arena ranking to match the gold ranking: active vs uniform pairing.

python benchmarks/arena_votes.py [--seeds 5] [--noise 0.25] [--max-votes 2000]

Six synthetic policies with clearly different mean gold reward (VADER compound, as SFT/PPO/DPO
snapshots along training would score) and per-prompt spread; one simulated voter who votes against
the gold order with probability --noise. For each seed and pairing, the votes needed is the
first checkpoint (every --step votes) from which the Bradley-Terry ranking keeps Spearman >= 0.95
with the gold ranking up to --max-votes. With 6 policies Spearman >= 0.95 means the exact order
(one adjacent swap gives 0.943).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from rlhf.arena.ratings import fit_bradley_terry, outcome_scores, win_matrices
from rlhf.arena.simulate import SimulatedVoter, simulate_arena, spearman

# Mean gold reward of six policies (e.g. SFT, then PPO/DPO snapshots) and the per-prompt spread.
POLICY_MEANS = (-0.30, -0.05, 0.15, 0.35, 0.55, 0.75)
PROMPT_SPREAD = 0.35


def synthetic_gold(num_prompts: int, seed: int, spread: float = PROMPT_SPREAD) -> np.ndarray:
    """[policies, prompts] gold rewards: policy mean + per-prompt effect + response noise, clipped to [-1, 1]."""
    rng = np.random.default_rng(seed)
    prompt_effect = rng.normal(0.0, spread / 2, size=num_prompts)
    noise = rng.normal(0.0, spread, size=(len(POLICY_MEANS), num_prompts))
    return np.clip(np.array(POLICY_MEANS)[:, None] + prompt_effect[None] + noise, -1.0, 1.0)


def votes_needed(gold: np.ndarray, pairing: str, args: argparse.Namespace, seed: int) -> int | None:
    votes = simulate_arena(gold, args.max_votes, SimulatedVoter(noise=args.noise), pairing, seed=seed,
                           refit_every=args.refit_every)
    target = gold.mean(1)
    left, right, score = np.array(votes.left), np.array(votes.right), outcome_scores(votes.outcome)
    needed = None
    for k in range(args.step, len(votes) + 1, args.step):
        theta = fit_bradley_terry(win_matrices(left[:k], right[:k], score[:k], len(target)))
        ok = spearman(theta, target) >= args.target
        needed = (needed or k) if ok else None
    return needed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--noise", type=float, default=0.25)
    parser.add_argument("--max-votes", type=int, default=2000)
    parser.add_argument("--step", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--refit-every", type=int, default=5, help="active pairing: refit the bootstrap every N votes")
    parser.add_argument("--spread", type=float, default=PROMPT_SPREAD, help="per-response gold-reward noise (sd)")
    args = parser.parse_args()

    start = time.time()
    results: dict[str, list[int | None]] = {"active": [], "uniform": []}
    for seed in range(args.seeds):
        gold = synthetic_gold(args.prompts, seed, args.spread)
        for pairing in results:
            results[pairing].append(votes_needed(gold, pairing, args, seed))
    never = args.max_votes + args.step  # counted as this when the target is not held by max_votes

    print(f"votes until Spearman >= {args.target} holds (noise {args.noise}, {len(POLICY_MEANS)} policies, "
          f"checked every {args.step} votes up to {args.max_votes})")
    print("| seed | " + " | ".join(results) + " |")
    print("|---:|" + "---:|" * len(results))
    for seed in range(args.seeds):
        print(f"| {seed} | " + " | ".join(str(results[p][seed] or f">{args.max_votes}") for p in results) + " |")
    medians = {p: float(np.median([v or never for v in vs])) for p, vs in results.items()}
    means = {p: float(np.mean([v or never for v in vs])) for p, vs in results.items()}
    print("| median | " + " | ".join(f"{medians[p]:.0f}" for p in results) + " |")
    print("| mean | " + " | ".join(f"{means[p]:.0f}" for p in results) + " |")
    print(f"uniform / active: {means['uniform'] / means['active']:.2f}x (means), "
          f"{medians['uniform'] / medians['active']:.2f}x (medians)")
    print(f"{platform.processor() or platform.machine()}, {time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
