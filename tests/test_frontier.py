"""The frontier sweep (rlhf/frontier.py): resumable point by point, seed aggregation, the KL-budget table.

Training and sampling are stubbed (the stages have their own tests): what is tested here is the
sweep's bookkeeping, on hand-made numbers whose right answers are known.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from scipy import stats

from rlhf import frontier
from rlhf.evaluation.rollouts import PolicySamples
from rlhf.artifacts import ArtifactError, write_artifact
from rlhf.logprobs import best_of_n_kl_bound, best_of_n_kl_estimate


def fake_artifact(path: Path, kind: str) -> None:
    with write_artifact(path, kind, {"fake": kind}) as out:
        (out.path / "weights.txt").write_text(kind)


@pytest.fixture
def base_run(tmp_path):
    for kind in ("sft", "reward", "preferences"):
        fake_artifact(tmp_path / "base" / kind, kind)
    return tmp_path / "base"


class CountingEvaluator:
    """Stands in for the real one: a deterministic 'score' per call; fails on call number ``fail_at``."""

    def __init__(self, fail_at: int | None = None):
        self.calls, self.fail_at = [], fail_at
        self.reference = "sft-model"

    def policy(self, model, seed):
        self.calls.append((model, seed))
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise KeyboardInterrupt("killed")
        k = len(self.calls)
        return {"gold": 0.1 * k, "rm": 0.2 * k, "kl": 0.5 * k, "well_formed": 1.0, "repeated_3grams": 0.0,
                "length": 10.0}


def config(base_run, *overrides):
    return frontier.load_frontier_config(None, [f"base_run={base_run}", "seeds=[0,1]", "methods=[dpo]",
                                                "dpo_betas=[0.1,0.3,1.0]", "dpo_snapshots=2", *overrides])


def fake_dpo_run(trained: list[str], steps: int = 6):
    """Stands in for the DPO stage: calls the hook after each of ``steps`` steps, as the trainer does."""
    def run(section, inputs, on_step_end):
        trained.append(re.sub(r"-[0-9a-f]{8}-", "-", Path(section.output_dir).name))  # run dirs carry the point version
        trainer = SimpleNamespace(state=SimpleNamespace(max_steps=steps), model=f"dpo-beta{section.train.beta:g}")
        for step in range(1, steps + 1):
            on_step_end(step, trainer)
    return run


def test_sweep_resumes_without_recomputing_finished_points(base_run, monkeypatch):
    trained = []
    monkeypatch.setattr(frontier.dpo, "run", fake_dpo_run(trained))
    cfg = config(base_run)
    # Seed 0: sft, and both snapshots (steps 3 and 6) of beta 0.1 and 0.3 finish; beta 1.0's first
    # snapshot too; the kill comes while scoring its second.
    with pytest.raises(KeyboardInterrupt):
        frontier.run_frontier(cfg, log=lambda _: None, evaluator=CountingEvaluator(fail_at=7))
    store = frontier.PointStore(frontier.work_root(cfg) / "points")
    done = sorted(p.name for p in store.root.rglob("*.json"))  # (in <method>-<version>/seed<s>/)
    assert done == ["beta0.1-at1of2.json", "beta0.1-at2of2.json", "beta0.3-at1of2.json", "beta0.3-at2of2.json",
                    "beta1-at1of2.json", "sft.json"]
    beta01 = sorted(store.root.rglob("beta0.1-*.json"))
    assert [json.loads(p.read_text())["x"] for p in beta01] == [3, 6]  # x: the step of the snapshot
    mtimes = {p: p.stat().st_mtime_ns for p in store.root.rglob("*.json")}
    assert not Path(cfg.output_dir).exists()  # no half-finished artifact

    trained.clear()
    again = CountingEvaluator()
    artifact = frontier.run_frontier(cfg, log=lambda _: None, evaluator=again)
    # Only unfinished runs trained again: beta 1.0 of seed 0 (only its missing snapshot is scored),
    # then all of seed 1.
    assert trained == ["dpo-seed0-beta1", "dpo-seed1-beta0.1", "dpo-seed1-beta0.3", "dpo-seed1-beta1"]
    assert [seed for _, seed in again.calls] == [0] + [1] * 7
    assert all(p.stat().st_mtime_ns == t for p, t in mtimes.items())
    points = (artifact.path / "points.jsonl").read_text().splitlines()
    assert len(points) == 2 * 7 and (artifact.path / "report.md").is_file()
    report = (artifact.path / "report.md").read_text()
    assert all(f"| dpo (beta {b}) | beta{b}-at2of2 |" in report for b in ("0.1", "0.3", "1"))  # each run's end

    # A third run finds everything done: nothing trained, nothing scored.
    trained.clear()
    third = CountingEvaluator()
    frontier.run_frontier(cfg, log=lambda _: None, evaluator=third)
    assert trained == [] and third.calls == []

    # Another recipe (or eval setting) makes other points: the old ones are not mixed in.
    fourth = CountingEvaluator()
    frontier.run_frontier(config(base_run, "dpo.train.learning_rate=1e-5"), log=lambda _: None, evaluator=fourth)
    assert trained == [f"dpo-seed{s}-beta{b}" for s in (0, 1) for b in ("0.1", "0.3", "1")]
    assert len(fourth.calls) == 12  # the SFT points still hold: their eval settings did not change

    # Fewer betas and snapshots: nothing is trained, and the report holds only the settings asked for,
    # not the points the wider sweep left in the same folder.
    trained.clear()
    fewer = frontier.run_frontier(config(base_run, "dpo_betas=[0.3]", "dpo_snapshots=2"), log=lambda _: None,
                                  evaluator=CountingEvaluator())
    settings = {json.loads(line)["setting"] for line in (fewer.path / "points.jsonl").read_text().splitlines()}
    assert trained == [] and settings == {"sft", "beta0.3-at1of2", "beta0.3-at2of2"}


def test_ppo_snapshots_are_scored_once_across_a_resume(base_run, monkeypatch):
    # The PPO stage is stubbed by a loop that calls the hook like the trainer does, resuming at step 5.
    def fake_ppo_run(section, inputs, on_step_end, start=[0]):
        trainer = SimpleNamespace(history=[{"val/response_length": 10.0}], policy=lambda: "policy")
        for step in range(start[0] + 1, section.total_episodes // section.rollout_batch_size + 1):
            on_step_end(step, trainer)
        start[0] = 5

    monkeypatch.setattr(frontier.ppo, "run", fake_ppo_run)
    cfg = config(base_run, "methods=[ppo]", "seeds=[0]", "snapshot_every=3", "ppo.total_episodes=640",
                 "ppo.rollout_batch_size=64")  # 10 steps: snapshots at 3, 6, 9 and the last, 10
    with pytest.raises(KeyboardInterrupt):  # killed while scoring step 6 (call 1 is the SFT point)
        frontier.run_frontier(cfg, log=lambda _: None, evaluator=CountingEvaluator(fail_at=3))
    again = CountingEvaluator()
    frontier.run_frontier(cfg, log=lambda _: None, evaluator=again)
    points = frontier.PointStore(frontier.work_root(cfg) / "points").all()
    assert sorted(p["x"] for p in points if p["method"] == "ppo") == [3, 6, 9, 10]
    assert len(again.calls) == 3  # steps 6, 9, 10; step 3 and the SFT point were kept
    assert next(p for p in points if p["x"] == 10)["tokens_generated"] == 10 * 64 * 10


def test_ensemble_reward_model_is_trained_once_and_not_touched_when_its_points_are_done(base_run, monkeypatch):
    trained_rms = []

    def fake_run_stage(stage, cfg, log):
        trained_rms.append(cfg.output_dir)
        return SimpleNamespace(path=Path(cfg.output_dir))

    def fake_ppo_run(section, inputs, on_step_end):
        trainer = SimpleNamespace(history=[], policy=lambda: "policy")
        for step in range(1, section.total_episodes // section.rollout_batch_size + 1):
            on_step_end(step, trainer)

    monkeypatch.setattr(frontier, "run_stage", fake_run_stage)
    monkeypatch.setattr(frontier.ppo, "run", fake_ppo_run)
    cfg = config(base_run, "methods=[ppo_ensemble]", "snapshot_every=2", "long_run.total_episodes=256",
                 "ppo.rollout_batch_size=64")  # 4 steps, 2 seeds
    frontier.run_frontier(cfg, log=lambda _: None, evaluator=CountingEvaluator())
    assert len(trained_rms) == 1  # one ensemble for both seeds
    points = [p for p in frontier.PointStore(frontier.work_root(cfg) / "points").all() if p["method"] == "ppo_ensemble"]
    assert sorted((p["seed"], p["x"]) for p in points) == [(0, 2), (0, 4), (1, 2), (1, 4)]
    trained_rms.clear()
    frontier.run_frontier(cfg, log=lambda _: None, evaluator=CountingEvaluator())
    assert trained_rms == []


def test_best_of_n_picks_by_the_chooser_and_reports_the_proxy_score():
    # 2 prompts x a pool of 4: the proxy RM ranks each prompt's samples 0 > 1 > 2 > 3, the chooser 3 > 2 > 1 > 0.
    pool = PolicySamples(prompts=["a"] * 4 + ["b"] * 4, responses=[f"r{i}" for i in range(8)],
                         tokens=[[1, 2]] * 8, lengths=[2] * 8, gold=[0.0, 0.1, 0.2, 0.9] * 2, rm=[3.0, 2.0, 1.0, 0.0] * 2)
    chooser = SimpleNamespace(score=lambda texts: torch.tensor([float(t[-1]) % 4 for t in texts]))
    by_proxy = {p["x"]: p for p in frontier.best_of_n_points(frontier.BestOfNPool(pool, 4, 1.0), [1, 4])}
    by_chooser = {p["x"]: p for p in frontier.best_of_n_points(frontier.BestOfNPool(pool, 4, 1.0), [1, 4], chooser)}
    assert by_proxy[4]["gold"] == pytest.approx(0.0) and by_proxy[4]["rm"] == pytest.approx(3.0)
    assert by_chooser[4]["gold"] == pytest.approx(0.9) and by_chooser[4]["rm"] == pytest.approx(0.0)  # proxy's score
    assert by_proxy[1]["gold"] == by_chooser[1]["gold"] == pytest.approx(0.0)  # n = 1: no choice to make


def test_missing_base_run_names_the_command(tmp_path):
    cfg = frontier.load_frontier_config(None, [f"base_run={tmp_path / 'nothing'}"])
    with pytest.raises(ArtifactError) as exc:
        frontier.run_frontier(cfg, evaluator=CountingEvaluator())
    message = str(exc.value)
    assert "\n" not in message and "python -m pipelines.run --config configs/tiny/pipeline.yaml" in message


@pytest.mark.parametrize("override, named", [("min_well_formed=70", "min_well_formed=70"),
                                             ("dpo_snapshots=0", "dpo_snapshots=0"),
                                             ("snapshot_every=0", "snapshot_every=0"),
                                             ("methods=[ppo,dpoo]", "dpoo")])
def test_bad_sweep_settings_are_refused_at_load(override, named):
    with pytest.raises(frontier.ConfigError, match=re.escape(named)):
        frontier.load_frontier_config("configs/tiny/frontier.yaml", ["base_run=/tmp/x", override])


def test_tiny_recipe_loads():
    cfg = frontier.load_frontier_config("configs/tiny/frontier.yaml", ["base_run=/tmp/x"])
    assert cfg.ppo.policy == "/tmp/x/sft" and cfg.ppo.kl_coef == 0.15  # the sweep's override of ppo.yaml
    assert cfg.eval.sampling.temperature == 1.0 and cfg.dpo.train.beta == 0.15  # dpo.yaml's beta, swept per point


def test_long_run_is_the_ppo_section_with_its_own_fields():
    cfg = frontier.load_frontier_config("configs/tiny/frontier.yaml", ["base_run=/tmp/x", "long_run.kl_coef=0.01"])
    long = frontier.long_run(cfg)
    assert (long.kl_coef, long.total_episodes) == (0.01, 2560) and long.learning_rate == cfg.ppo.learning_rate
    versions = frontier.point_versions(cfg, {})
    assert versions["ppo_long"] != versions["ppo"]  # its points never mix with the tuned run's
    cfg.long_run = {"kl_coeff": 0.01}
    with pytest.raises(frontier.ConfigError, match="kl_coeff"):
        frontier.long_run(cfg)


def point(method, seed, setting, x, gold, kl, **extra):
    return {"method": method, "seed": seed, "setting": setting, "x": x, "gold": gold, "rm": gold, "kl": kl,
            "well_formed": 1.0, "repeated_3grams": 0.0, "length": 10.0, "wall_time_s": 1.0, "tokens_generated": 0,
            **extra}


def test_aggregation_pairs_gains_by_seed_and_takes_t_intervals():
    points = [point("sft", s, "sft", 0, g, 0.0) for s, g in enumerate([0.0, 1.0, 2.0])]
    # Gains over each seed's own SFT: 0.1, 0.2, 0.6 (mean 0.3), although the gold values differ a lot.
    points += [point("ppo", s, "step5", 5, g, kl) for s, g, kl in zip(range(3), [0.1, 1.2, 2.6], [1.0, 2.0, 3.0])]
    row = next(r for r in frontier.aggregate(points, 0.9) if r["method"] == "ppo")
    assert row["gain"]["mean"] == pytest.approx(0.3)
    half = stats.t.ppf(0.95, 2) * stats.tstd([0.1, 0.2, 0.6]) / math.sqrt(3)
    assert row["gain"]["high"] - row["gain"]["mean"] == pytest.approx(half)
    assert row["kl"]["mean"] == pytest.approx(2.0) and row["seeds"] == [0, 1, 2]


def test_table_picks_the_best_setting_within_the_kl_budget():
    points = [point("sft", s, "sft", 0, 0.0, 0.0) for s in range(2)]
    for setting, gain, kl in [("a", 0.2, 1.0), ("b", 0.5, 2.9), ("c", 0.9, 3.5)]:  # c: best gain, over budget
        points += [point("ppo", s, setting, 0, gain, kl) for s in range(2)]
    points += [point("dpo", s, "far", 0, 1.0, 9.0) for s in range(2)]  # no DPO setting within the budget
    best = frontier.best_within_budget(frontier.aggregate(points), 3.0)
    assert best["ppo"]["setting"] == "b" and "dpo" not in best
    # A floor on well-formed samples: "broken" gains most within the budget but with 60 % well-formed text.
    points += [point("ppo", s, "broken", 0, 0.8, 2.5, well_formed=0.6) for s in range(2)]
    assert frontier.best_within_budget(frontier.aggregate(points), 3.0)["ppo"]["setting"] == "broken"
    assert frontier.best_within_budget(frontier.aggregate(points), 3.0, min_well_formed=0.7)["ppo"]["setting"] == "b"


def test_each_dpo_beta_is_its_own_curve():
    rows = [point("dpo", 0, frontier.dpo_setting(b, k, 3), k, 0.5, 1.0) for b in (0.1, 0.3) for k in (1, 2, 3)]
    rows += [point("ppo", 0, "step4", 4, 0.5, 1.0), point("dpo", 0, "beta0.1", 0.1, 0.5, 1.0)]
    assert [frontier.curve_of(r) for r in rows] == ["dpo (beta 0.1)"] * 3 + ["dpo (beta 0.3)"] * 3 + ["ppo", "dpo"]


def test_over_optimization_curve_of_ppo_is_the_long_run_when_there_is_one(tmp_path):
    from rlhf.frontier_report import overoptimization
    points = [point("sft", 0, "sft", 0, 0.0, 0.0)]
    for method, coef in [("ppo", 0.3), ("ppo_long", 0.2)]:
        points += [point(method, 0, f"step{x}", x, coef * x * (1 - 0.05 * x), 0.5 * x) for x in range(1, 9)]
    assert set(overoptimization(points, tmp_path / "both.png")) == {"ppo_long"}
    alone = [p for p in points if p["method"] != "ppo_long"]
    assert set(overoptimization(alone, tmp_path / "alone.png")) == {"ppo"}


def test_run_ends_are_the_last_snapshot_of_each_run():
    points = [point("sft", 0, "sft", 0, 0.0, 0.0), point("best_of_n", 0, "n064", 64, 0.9, 3.2)]
    points += [point("ppo", 0, f"step{x}", x, 0.1 * x, 0.3 * x) for x in (4, 8, 12)]
    points += [point("dpo", 0, frontier.dpo_setting(b, k, 3), 10 * k, 0.5, 2.0) for b in (0.1, 0.3) for k in (1, 2, 3)]
    ends = frontier.run_ends(frontier.aggregate(points))
    assert {name: row["setting"] for name, row in ends.items()} == {
        "ppo": "step12", "dpo (beta 0.1)": "beta0.1-at3of3", "dpo (beta 0.3)": "beta0.3-at3of3"}


def test_drop_from_peak_per_seed_and_within_budget():
    points = [point("sft", 0, "sft", 0, 0.0, 0.0)]
    points += [point("ppo", 0, f"s{x}", x, g, kl) for x, g, kl in [(1, 0.2, 1.0), (2, 0.6, 2.0), (3, 0.5, 2.5),
                                                                   (4, 0.1, 5.0)]]
    assert frontier.drop_from_peak(points, "ppo") == [pytest.approx(0.5)]
    assert frontier.drop_from_peak(points, "ppo", budget=3.0) == [pytest.approx(0.1)]


def test_best_of_n_kl_estimate_tends_to_the_bound_and_is_zero_without_choice():
    distinct = [f"t{i}" for i in range(4000)]
    assert best_of_n_kl_estimate(list(range(4000)), distinct, 8) == pytest.approx(best_of_n_kl_bound(8), abs=0.01)
    assert best_of_n_kl_estimate([1.0] * 64, ["same"] * 64, 8) == 0.0
    assert best_of_n_kl_estimate(list(range(64)), [f"t{i}" for i in range(64)], 1) == pytest.approx(0.0)
