"""Policy arena (issue #15): Bradley-Terry ratings, pairing, outlier voters, blind items, the stage."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from pipelines.arena import translate
from rlhf.arena.format import Arena, Vote, read_votes, vote_arrays, votes_dataset
from rlhf.arena.pairing import all_pairs, choose_pair, open_voters, order_overlap, outlier_voters
from rlhf.arena.ratings import SCALE, fit_bradley_terry, leaderboard, outcome_scores, win_matrices
from rlhf.arena.simulate import SimulatedVoter, simulate_arena, spearman


def bt_votes(theta: np.ndarray, num_votes: int, rng: np.random.Generator):
    """Votes drawn from the Bradley-Terry model with log-strengths ``theta`` on uniform random pairs."""
    n = len(theta)
    left = rng.integers(n, size=num_votes)
    right = (left + rng.integers(1, n, size=num_votes)) % n
    p_left = 1.0 / (1.0 + np.exp(-(theta[left] - theta[right])))
    return left, right, np.where(rng.random(num_votes) < p_left, "A", "B")


def test_fit_recovers_known_strengths():
    theta = np.array([0.0, 0.6, -0.8, 1.5, 0.3])
    left, right, outcomes = bt_votes(theta, 4000, np.random.default_rng(0))
    fitted = fit_bradley_terry(win_matrices(left, right, outcome_scores(outcomes), len(theta)))
    np.testing.assert_allclose(fitted, theta - theta.mean(), atol=0.15)


def test_ties_count_half_a_win():
    # One win and two ties for policy 0 = 2 wins out of 3 games: theta_0 - theta_1 = log 2.
    for tie in ("tie", "both_bad"):
        fitted = fit_bradley_terry(win_matrices(np.array([0, 0, 1]), np.array([1, 1, 0]),
                                                outcome_scores(["A", tie, tie]), 2), l2=1e-6)
        assert fitted[0] - fitted[1] == pytest.approx(np.log(2.0), abs=1e-3)
    with pytest.raises(ValueError, match="unknown vote outcome 'left'"):
        outcome_scores(["left"])


def test_leaderboard_is_anchored_and_sorted():
    theta = np.array([0.0, 1.0, -1.0])
    left, right, outcomes = bt_votes(theta, 1500, np.random.default_rng(1))
    rows = leaderboard(["sft", "ppo", "base"], left, right, outcomes, anchor="sft", rounds=200)
    assert [r.policy for r in rows] == ["ppo", "sft", "base"]
    sft = next(r for r in rows if r.policy == "sft")
    assert sft.rating == 1000 and sft.low == sft.high == 1000
    assert rows[0].rating - 1000 == pytest.approx(SCALE, rel=0.2)  # one nat of strength = 174 points
    assert [r.rank for r in rows] == [1, 2, 3]  # the intervals are disjoint here
    assert sum(r.votes for r in rows) == 2 * 1500


def test_bootstrap_intervals_cover_the_truth_at_about_the_nominal_rate():
    theta = np.array([0.0, 0.4, -0.3, 0.9])
    truth = SCALE * (theta - theta[0]) + 1000
    rng = np.random.default_rng(2)
    covered = []
    for rep in range(40):
        left, right, outcomes = bt_votes(theta, 300, rng)
        rows = leaderboard(["a", "b", "c", "d"], left, right, outcomes, anchor="a", rounds=400, seed=rep)
        covered += [r.low <= truth[ord(r.policy) - ord("a")] <= r.high for r in rows if r.policy != "a"]
    assert 0.85 <= np.mean(covered) <= 1.0


def test_active_pairing_serves_the_most_overlapping_pair():
    rng = np.random.default_rng(0)
    # Bootstrap rounds by hand: 0 is far above everyone, 1 and 2 are a coin flip, 3 is clearly last.
    samples = np.stack([10 + rng.normal(0, 0.1, 500), rng.normal(0, 1, 500), rng.normal(0, 1, 500),
                        -10 + rng.normal(0, 0.1, 500)], axis=1)
    overlap = order_overlap(samples)
    assert overlap[1, 2] == pytest.approx(0.5, abs=0.1) and overlap[0, 3] == 0
    served = {tuple(sorted(choose_pair(4, rng, "active", overlap))) for _ in range(20)}
    assert served == {(1, 2)}  # the only pair whose order is not settled
    assert {choose_pair(4, rng, "active", overlap) for _ in range(50)} == {(1, 2), (2, 1)}  # sides randomised
    uniform = {tuple(sorted(choose_pair(4, rng, "uniform", overlap))) for _ in range(300)}
    assert uniform == set(all_pairs(4))
    # Two open pairs: served in proportion to their overlap (0.4 vs 0.1 -> 80 % vs 20 %).
    overlap = np.zeros((4, 4))
    overlap[1, 2] = overlap[2, 1] = 0.4
    overlap[0, 3] = overlap[3, 0] = 0.1
    served = [tuple(sorted(choose_pair(4, rng, "active", overlap))) for _ in range(1000)]
    assert set(served) == {(1, 2), (0, 3)} and 0.75 < served.count((1, 2)) / 1000 < 0.85


def test_votes_per_voter_cap():
    gold = np.array([[0.0] * 4, [1.0] * 4, [2.0] * 4])
    votes = simulate_arena(gold, 100, SimulatedVoter(noise=0.0), "uniform", num_voters=2, votes_per_voter=5)
    assert len(votes) == 10 and sorted(votes.voter) == ["sim-0"] * 5 + ["sim-1"] * 5
    assert all((o == "A") == (l > r) for l, r, o in zip(votes.left, votes.right, votes.outcome))  # noise 0
    assert open_voters({"ann": 3, "bob": 2}, ["ann", "bob", "cy"], cap=3) == ["bob", "cy"]


def test_outlier_check_flags_adversarial_and_random_voters():
    rng = np.random.default_rng(3)
    theta = np.array([0.0, 1.0, 2.0, 3.0])
    left, right, outcomes, voters = [], [], [], []
    for voter in ["honest-1", "honest-2", "honest-3", "honest-4", "adversary", "coin"]:
        l, r, o = bt_votes(theta, 60, rng)
        if voter == "adversary":  # always picks the weaker policy
            o = np.where(theta[l] > theta[r], "B", "A")
        if voter == "coin":
            o = rng.choice(["A", "B"], size=len(l))
        left += l.tolist(); right += r.tolist(); outcomes += o.tolist(); voters += [voter] * len(l)  # noqa: E702
    flagged = {c.voter for c in outlier_voters(4, left, right, outcomes, voters) if c.outlier}
    assert flagged == {"adversary", "coin"}


def test_simulated_arena_recovers_the_gold_ranking():
    gold = np.array([[0.1 * k] * 16 for k in range(4)]) + np.random.default_rng(0).normal(0, 0.01, (4, 16))
    votes = simulate_arena(gold, 300, SimulatedVoter(noise=0.25), "active", seed=1)
    rows = leaderboard(["p0", "p1", "p2", "p3"], votes.left, votes.right, votes.outcome, "p0", rounds=0)
    rating = {r.policy: r.rating for r in rows}
    assert spearman([rating[f"p{k}"] for k in range(4)], gold.mean(1)) == pytest.approx(1.0)


def make_arena() -> Arena:
    policies = {name: {"path": f"runs/x/{name}", "kind": kind, "fingerprint": f"fp-{name}"}
                for name, kind in [("sft", "sft"), ("ppo_secret", "ppo")]}
    responses = {"sft": ["plain one", "plain two"], "ppo_secret": ["great one", "great two"]}
    gold = {"sft": [0.1, 0.2], "ppo_secret": [0.8, 0.9]}
    return Arena.build(["Prompt one:", "Prompt two:"], responses, gold, policies, salt="s")


def test_a_served_pair_never_names_the_policies(tmp_path):
    arena = make_arena()
    item = next(iter(arena.items))
    shown, pending = arena.serve(item, "ppo_secret", "sft")
    assert set(shown) == {"request_id", "prompt", "response_a", "response_b"}
    assert (shown["response_a"], shown["response_b"]) == ("great one", "plain one")
    served_text = json.dumps(shown)
    arena.save(tmp_path)
    voter_file = (tmp_path / "items.jsonl").read_text()  # what an app may send to browsers
    for secret in ("ppo_secret", "sft", "runs/x", "fp-"):
        assert secret not in served_text and secret not in voter_file
    vote = pending.vote("alice", "A")
    assert (vote.left, vote.right, vote.request_id) == ("ppo_secret", "sft", shown["request_id"])
    loaded = Arena.load(tmp_path)
    assert loaded.response(item, "ppo_secret") == "great one" and loaded.gold(item, "sft") == pytest.approx(0.1)


def test_votes_export_as_a_dataset():
    arena = make_arena()
    item = next(iter(arena.items))
    votes = [Vote("bob", item, "sft", "ppo_secret", "B", 1.0, "r1"), Vote("bob", item, "ppo_secret", "sft", "tie", 2.0, "r2")]
    ds = votes_dataset(arena, votes)
    assert ds[0]["response_b"] == "great one" and ds[0]["winner"] == "B" and ds[1]["winner"] == "tie"
    assert {"prompt", "response_a", "response_b", "winner", "voter", "timestamp"} <= set(ds.column_names)
    assert vote_arrays(arena.policy_names, votes)[:2] == ([0, 1], [1, 0])
    with pytest.raises(ValueError, match="outcome 'C'"):
        Vote("bob", item, "sft", "ppo_secret", "C", 1.0, "r3")


def test_policies_flag_becomes_a_list_override():
    assert translate(["--policies", "a/sft", "b/ppo", "num_votes=9", "--force"]) == [
        "num_votes=9", "--force", "policies=[a/sft,b/ppo]"]
    assert translate(["num_votes=9"]) == ["num_votes=9"]


# ---------------------------------------------------------------------------------------------
# The stage on tiny stand-in policies.

ARENA_OVERRIDES = ["data.num_examples=2000", "data.max_test_examples=64", "num_prompts=8",
                   "sampling.max_new_tokens=8", "sampling.batch_size=8", "num_votes=60", "num_voters=3",
                   "bootstrap_rounds=100"]


@dataclass
class _Made:
    """Config recorded in the hand-made policy's manifest."""

    weight_noise: float = 0.2


@pytest.fixture(scope="module")
def perturbed_ppo(sft_artifact, tmp_path_factory):
    """The SFT policy with seeded noise on every weight, written as a 'ppo' artifact."""
    from rlhf.artifacts import write_artifact
    from rlhf.models import load_causal_lm, load_tokenizer

    path = tmp_path_factory.mktemp("arena_policies") / "ppo"
    model, tokenizer = load_causal_lm(sft_artifact.path), load_tokenizer(sft_artifact.path)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * 0.2)
    with write_artifact(path, "ppo", _Made(), {"policy": sft_artifact}) as out:
        model.save_pretrained(out.path)
        tokenizer.save_pretrained(out.path)
    return path


@pytest.mark.slow
def test_stage_writes_an_arena_with_a_leaderboard(sft_artifact, perturbed_ppo, tmp_path, capsys):
    from pipelines.arena import main as cli_main  # rlhf.cli.main, as `python -m pipelines.arena` runs it
    from rlhf.artifacts import open_artifact
    from rlhf.stages import arena as arena_stage

    out = tmp_path / "arena"
    cli_main(arena_stage, translate(["--policies", str(sft_artifact.path), str(perturbed_ppo),
                                     f"output_dir={out}", *ARENA_OVERRIDES]))
    assert f"report: {out / 'report.md'}" in capsys.readouterr().out
    art = open_artifact(out, "arena")
    report = (out / "report.md").read_text()
    assert "| rank | policy | rating |" in report and "ratings.png" in report and (out / "ratings.png").stat().st_size
    assert art.metrics["arena/sft/rating"] == 1000 and art.metrics["arena/votes"] == 60
    assert art.metrics["arena/ppo/rating_low"] <= art.metrics["arena/ppo/rating"] <= art.metrics["arena/ppo/rating_high"]
    votes = read_votes(out / "votes.jsonl")
    assert len(votes) == 60 and {v.voter for v in votes} == {"sim-0", "sim-1", "sim-2"}
    arena = Arena.load(out)
    assert len(arena.items) == 8 and all(len(item["responses"]) == 2 for item in arena.items.values())
    people = tmp_path / "people"
    cli_main(arena_stage, [f"policies=[{sft_artifact.path},{perturbed_ppo}]", f"output_dir={people}",
                           "simulate=false", *ARENA_OVERRIDES])
    assert not (people / "votes.jsonl").exists() and not (people / "report.md").exists()
    assert Arena.load(people).items == arena.items  # same prompts, seed and settings: same blind items


def test_stage_rejects_bad_configs(tmp_path):
    from rlhf.config import ConfigError, load_config
    from rlhf.stages import arena as arena_stage

    def config(*overrides):
        return load_config(arena_stage.Config, None, [f"run_dir={tmp_path}", *overrides])

    with pytest.raises(ConfigError, match="at least 2 distinct policies"):
        arena_stage.inputs(config(f"policies=[{tmp_path}/sft]"))
    with pytest.raises(ConfigError, match="policy 'ppo': no artifact at"):
        (tmp_path / "sft").mkdir()
        arena_stage.inputs(config(f"policies=[{tmp_path}/sft,{tmp_path}/ppo]"))
    with pytest.raises(ConfigError, match="pairing=best must be one of: active, uniform"):
        arena_stage.inputs(config("pairing=best"))
