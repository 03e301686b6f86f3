"""Policy arena: sample each policy on the same held-out prompts, collect blind pairwise votes, rate them.

Every policy is sampled with the same settings and seed. Votes come from simulated voters who judge
by the gold reward (``simulate=true``) or, with ``simulate=false``, are left to people (the artifact
then holds the blind items only). The "arena" artifact holds the items, the server-side key, the
votes, a Bradley-Terry leaderboard with bootstrap intervals (report.md, ratings.png) and metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from rlhf.arena.format import KIND, VOTES, Arena, Vote, votes_dataset, write_votes
from rlhf.arena.pairing import PAIRINGS
from rlhf.arena.report import write_leaderboard as leaderboard_files
from rlhf.arena.simulate import NOISE_MODELS, SimulatedVoter, simulate_arena
from rlhf.artifacts import PRODUCERS, Artifact, open_artifact, write_artifact
from rlhf.config import ConfigError, DataConfig, option
from rlhf.data import held_out_prompts
from rlhf.models import load_causal_lm, load_tokenizer
from rlhf.policies import POLICY_KINDS
from rlhf.sampling import SamplingConfig, join, sample
from rlhf.tasks.gold import gold_reward


@dataclass
class Config:
    run_dir: str = option("runs/tiny", "directory holding every stage's artifact for this run", hashed=False)
    output_dir: str = option("${run_dir}/arena", "where the arena artifact is written", hashed=False)
    policies: list[str] = option(
        ["${run_dir}/sft", "${run_dir}/ppo", "${run_dir}/dpo"],
        "policy artifacts (any trained policy kind: sft, ppo, dpo, rloo, grpo, ...) to compare, at least 2; each is named by its directory name "
        "(e.g. policies=[runs/tiny/sft,runs/tiny/ppo], or --policies A B C with pipelines.arena)",
        hashed=False,  # the inputs' fingerprints are in the manifest
    )
    anchor: str | None = option(None, "policy name rated 1000; null = the first sft artifact listed, else the first")
    data: DataConfig = option(DataConfig(), "the task; its held-out split gives the prompts")
    num_prompts: int = option(64, "held-out prompts; each policy answers every one once")
    seed: int = option(0, "sampling seed (the same for every policy), voter and bootstrap seed")
    sampling: SamplingConfig = option(SamplingConfig(), "sampling settings, the same for every policy")
    simulate: bool = option(True, "simulated voters judge by the gold reward; false leaves the votes to people "
                            "(the artifact then holds the blind items and no leaderboard)")
    num_votes: int = option(300, "simulated votes")
    num_voters: int = option(5, "simulated voters (votes are dealt to them in turn)")
    votes_per_voter: int | None = option(None, "cap on votes per voter (null = no cap)")
    noise: float = option(0.25, "simulated voter: probability of voting against the gold order (noise_model=flip)")
    noise_model: str = option("flip", f"simulated voter noise, one of {', '.join(NOISE_MODELS)}; bradley_terry "
                              "votes A with probability sigmoid((gold_A - gold_B) / temperature)")
    temperature: float = option(0.1, "noise_model=bradley_terry: gold-reward difference giving odds of e:1")
    pairing: str = option("active", f"one of {', '.join(PAIRINGS)}: active serves the pair whose bootstrap "
                          "ratings overlap most (issue #15), uniform any pair with equal chance")
    bootstrap_rounds: int = option(1000, "bootstrap rounds for the rating intervals")
    confidence: float = option(0.95, "confidence level of the rating intervals")
    outlier_threshold: float = option(3.0, "flag a voter whose vote log-likelihood z-score is below minus this")


def policy_names(config: Config) -> dict[str, str]:
    """name -> path; the name is the directory name (the whole path when two directory names clash)."""
    paths = [str(p) for p in config.policies]
    short = [Path(p).name for p in paths]
    names = short if len(set(short)) == len(short) else paths
    return dict(zip(names, paths))


def validate(config: Config) -> None:
    policies = policy_names(config)
    if len(policies) < 2:
        raise ConfigError(f"an arena needs at least 2 distinct policies, got {len(policies)}: "
                          "list them with policies=[runs/tiny/sft,runs/tiny/ppo]")
    if config.anchor is not None and config.anchor not in policies:
        raise ConfigError(f"anchor={config.anchor} is not one of the policies: {', '.join(policies)}")
    if config.pairing not in PAIRINGS:
        raise ConfigError(f"pairing={config.pairing} must be one of: {', '.join(PAIRINGS)}")
    if config.noise_model not in NOISE_MODELS:
        raise ConfigError(f"noise_model={config.noise_model} must be one of: {', '.join(NOISE_MODELS)}")
    if not 0 <= config.noise <= 1:
        raise ConfigError(f"noise={config.noise} must be a probability, e.g. noise=0.25")
    if config.num_prompts < 1:
        raise ConfigError(f"num_prompts={config.num_prompts}: the arena needs at least one held-out prompt")
    if config.simulate and (config.num_votes < 1 or config.num_voters < 1):
        raise ConfigError(f"num_votes={config.num_votes}, num_voters={config.num_voters}: simulate at least one "
                          "vote by one voter, or set simulate=false")
    if not 0 < config.confidence < 1:
        raise ConfigError(f"confidence={config.confidence} must be between 0 and 1, e.g. confidence=0.95")


def inputs(config: Config) -> dict[str, tuple[str, tuple[str, ...]]]:
    validate(config)
    specs = {}
    for name, path in policy_names(config).items():
        if not Path(path).exists():
            raise ConfigError(f"policy '{name}': no artifact at {path}. Train it first "
                              f"({PRODUCERS['sft']}, {PRODUCERS['ppo']} or {PRODUCERS['dpo']}) or drop it from policies")
        specs[f"policy/{name}"] = (path, POLICY_KINDS)
    return specs


def sample_policy(artifact: Artifact, prompts: list[str], config: Config) -> list[str]:
    """One response per prompt. The only call into rlhf.sampling, kept here so an API change is one edit."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = load_causal_lm(artifact.path).to(device).eval()
    samples = sample(model, load_tokenizer(artifact.path), prompts, config.sampling, seed=config.seed, progress=False)
    return [s[0] for s in samples]


def default_anchor(config: Config, policies: dict[str, Artifact]) -> str:
    if config.anchor:
        return config.anchor
    return next((name for name, art in policies.items() if art.kind == "sft"), next(iter(policies)))


def simulated_votes(arena: Arena, config: Config) -> list[Vote]:
    names, items = arena.policy_names, list(arena.items)
    gold = np.array([[arena.gold(item, name) for item in items] for name in names])
    voter = SimulatedVoter(config.noise, config.noise_model, config.temperature)
    sim = simulate_arena(gold, config.num_votes, voter, config.pairing, config.seed, config.num_voters,
                         config.votes_per_voter)
    start = time.time()
    return [Vote(sim.voter[k], items[sim.prompt[k]], names[sim.left[k]], names[sim.right[k]], sim.outcome[k],
                 start + k, f"sim-{k:06d}") for k in range(len(sim))]


def run(config: Config, inputs: dict[str, Artifact]) -> Artifact:
    prompts = held_out_prompts(config.data, config.num_prompts)
    if len(prompts) < 1:
        raise ConfigError("the held-out split has no prompts (check data.*)")
    policies = {name: inputs[f"policy/{name}"] for name in policy_names(config)}
    responses = {name: sample_policy(art, prompts, config) for name, art in policies.items()}
    gold = {name: gold_reward([join(p, r) for p, r in zip(prompts, rs)]) for name, rs in responses.items()}
    meta = {name: {"path": str(art.path), "kind": art.kind, "fingerprint": art.fingerprint} for name, art in policies.items()}
    salt = "".join(art.fingerprint for art in policies.values()) + str(config.seed)
    arena = Arena.build(prompts, responses, gold, meta, salt)
    anchor = default_anchor(config, policies)
    mean_gold = {name: float(np.mean(g)) for name, g in gold.items()}

    with write_artifact(config.output_dir, KIND, config, inputs) as out:
        arena.save(out.path)
        for name, value in mean_gold.items():
            out.metrics[f"arena/{name}/gold_reward"] = value
        if config.simulate:
            votes = simulated_votes(arena, config)
            write_votes(out.path / VOTES, votes)
            votes_dataset(arena, votes).to_json(str(out.path / "votes_dataset.jsonl"))
            write_leaderboard(out, arena, votes, anchor, mean_gold, config)
    return open_artifact(config.output_dir, KIND)


def write_leaderboard(out, arena: Arena, votes: list[Vote], anchor: str, mean_gold: dict[str, float],
                      config: Config) -> None:
    """ratings.json, ratings.png, report.md and the manifest metrics from ``votes``."""
    out.metrics.update(leaderboard_files(out.path, arena.policy_names, votes, anchor, mean_gold,
                                         config.bootstrap_rounds, config.confidence, config.seed,
                                         config.outlier_threshold))
