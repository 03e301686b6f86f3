"""pipelines.run --rounds: each round's config, a two-round miniature run killed in round 2 and resumed."""

from __future__ import annotations

from pathlib import Path

import pytest
from datasets import load_from_disk

from rlhf.artifacts import open_artifact
from rlhf.config import ConfigError
from rlhf.pipeline import load_pipeline_config, run_pipeline
from rlhf.rounds import round_config
from test_pipeline import MINIATURE

# The chain without DPO: rounds are about labelling the PPO policy's samples.
ROUND_STAGES = ["stages=[sft,generate,preferences,reward,ppo,eval]", "eval.policies.dpo=null"]


def rounds_config(run_dir, *extra):
    return load_pipeline_config("configs/tiny/pipeline.yaml",
                                [f"run_dir={run_dir}", *MINIATURE, *ROUND_STAGES, *extra])


def test_each_round_links_to_the_previous_one(tmp_path):
    config = rounds_config(tmp_path, "rounds=3", "labels_per_round=5")
    rounds = [round_config(config, k) for k in (1, 2, 3)]
    sft = f"{tmp_path}/sft"
    assert [r.stages[0] for r in rounds] == ["sft", "generate", "generate"]  # SFT once, shared
    assert all(r.ppo.output_dir == f"{tmp_path}/round-{k}/ppo" for k, r in enumerate(rounds, 1))
    assert [r.generate.policy for r in rounds] == [sft, f"{tmp_path}/round-1/ppo", f"{tmp_path}/round-2/ppo"]
    # fresh prompts: round k starts after the 5 prompts of each earlier round
    assert [(r.generate.prompt_offset or 0, r.generate.num_prompts) for r in rounds] == [(0, 5), (5, 5), (10, 5)]
    assert rounds[2].reward.preferences == f"{tmp_path}/round-3/preferences"
    assert rounds[2].reward.extra_preferences == [f"{tmp_path}/round-1/preferences", f"{tmp_path}/round-2/preferences"]
    assert (rounds[2].ppo.policy, rounds[2].ppo.reference) == (f"{tmp_path}/round-2/ppo", sft)
    assert rounds[2].eval.policies["sft"] == sft and rounds[2].eval.reference == sft
    assert rounds[1].preferences.db == f"{tmp_path}/round-2/labels.sqlite"  # people label each round apart
    moving = round_config(rounds_config(tmp_path, "rounds=2", "round_reference=previous"), 2)
    assert moving.ppo.reference is None  # the reference is the policy the round starts from


def test_selection_in_rounds_labels_the_selected_pairs_scored_by_the_previous_reward_model(tmp_path):
    config = rounds_config(tmp_path, "rounds=2", "labels_per_round=7",
                           "stages=[sft,generate,select,preferences,reward,ppo,eval]",
                           "select.selection.strategy=entropy", "select.reward_model=${run_dir}/reward")
    first, second = round_config(config, 1), round_config(config, 2)
    assert [r.preferences.candidates for r in (first, second)] == [f"{tmp_path}/round-{k}/selected" for k in (1, 2)]
    assert [r.select.candidates for r in (first, second)] == [f"{tmp_path}/round-{k}/candidates" for k in (1, 2)]
    assert first.select.selection.budget == second.select.selection.budget == 7  # the label budget
    # no reward model before round 1's: its pairs are random; round 2 scores with round 1's reward model
    assert (first.select.reward_model, first.select.selection.strategy) == (None, "random")
    assert (second.select.reward_model, second.select.selection.strategy) == (f"{tmp_path}/round-1/reward", "entropy")


def test_annotate_serves_exactly_each_rounds_selected_pairs(tmp_path, monkeypatch):
    """``--annotate`` with a select stage: the app of round k gets round k's selected pairs and label DB."""
    from annotation_ui import launch
    from rlhf.preferences.store import Item, LabelStore

    config = rounds_config(tmp_path, "rounds=2", "stages=[sft,generate,select,preferences,reward,ppo,eval]")
    served = []

    class App:  # stands in for the app process; every item already has its label
        def __init__(self, cmd):
            served.append(cmd)

        def poll(self):
            return None

        def terminate(self):
            pass

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(launch.subprocess, "Popen", App)
    for k in (1, 2):
        cfg = round_config(config, k)
        store = LabelStore(cfg.preferences.db)
        store.add_items([Item("p", "Prompt.", ["a", "b"], [" Good.", " Bad."])])
        store.submit("alice", "p", {"a": 1, "b": 2})
        launch.annotate_until_done("preferences", cfg, poll_s=0.01)
    assert [(cmd[cmd.index("--candidates") + 1], cmd[cmd.index("--db") + 1]) for cmd in served] == [
        (f"{tmp_path}/round-{k}/selected", f"{tmp_path}/round-{k}/labels.sqlite") for k in (1, 2)]


def test_one_round_is_the_plain_layout(tmp_path):
    config = rounds_config(tmp_path)
    assert round_config(config, 1) is config and config.ppo.output_dir == f"{tmp_path}/ppo"


def test_round_settings_are_checked(tmp_path):
    with pytest.raises(ConfigError, match="round_policy=dpo.*configured stages"):
        rounds_config(tmp_path, "rounds=2", "round_policy=dpo")
    with pytest.raises(ConfigError, match="rounds=0 must be >= 1"):
        rounds_config(tmp_path, "rounds=0")


def prompt_ids(candidates: Path) -> set[str]:
    return set(load_from_disk(str(candidates / "data"))["prompt_id"])


@pytest.mark.slow
def test_killed_round_resumes_and_rounds_never_mix(tmp_path):
    config = rounds_config(tmp_path, "rounds=2", "labels_per_round=8")

    def kill_in_round_2(stage, round_cfg):
        if stage == "reward" and "round-2" in round_cfg.reward.output_dir:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_pipeline(config, log=lambda _: None, before_stage=kill_in_round_2)
    assert not (tmp_path / "round-2" / "reward").exists() and not (tmp_path / "rounds.md").exists()

    logs, served = [], []

    def annotate(stage, round_cfg):  # where --annotate's hook (annotation_ui.launch) serves each round's items
        if stage == "preferences":
            served.append(round_cfg.preferences.candidates)

    last = run_pipeline(config, log=logs.append, before_stage=annotate)
    ran = [line.split("]")[0].strip("[") for line in logs if "running ->" in line]
    assert ran == ["reward", "ppo", "eval"]  # round 1 and round 2's generate/preferences were up to date
    assert all(art.path.parent == tmp_path / "round-2" for art in last.values())

    r1, r2 = tmp_path / "round-1", tmp_path / "round-2"
    assert served == [str(r1 / "candidates"), str(r2 / "candidates")]
    candidates = open_artifact(r2 / "candidates", "candidates")
    assert candidates.manifest["round"] == 2
    policy = candidates.manifest["inputs"]["policy"]
    assert policy["path"] == str(r1 / "ppo")
    assert policy["fingerprint"] == open_artifact(r1 / "ppo", "ppo").fingerprint
    assert len(prompt_ids(r2 / "candidates")) == 8 and not prompt_ids(r1 / "candidates") & prompt_ids(r2 / "candidates")
    # the round-2 reward model saw exactly rounds 1 and 2's labels, each an input by fingerprint
    reward_inputs = open_artifact(r2 / "reward", "reward").manifest["inputs"]
    labels = {spec["path"] for name, spec in reward_inputs.items() if spec["kind"] == "preferences"}
    assert labels == {str(r1 / "preferences"), str(r2 / "preferences")}
    round_1_inputs = open_artifact(r1 / "reward", "reward").manifest["inputs"]
    assert [s["path"] for s in round_1_inputs.values() if s["kind"] == "preferences"] == [str(r1 / "preferences")]
    ppo = open_artifact(r2 / "ppo", "ppo").manifest["inputs"]
    assert (ppo["policy"]["path"], ppo["reference"]["path"]) == (str(r1 / "ppo"), str(tmp_path / "sft"))
    report = (tmp_path / "rounds.md").read_text()
    assert "| 2 | ppo |" in report and (tmp_path / "rounds.png").stat().st_size > 0


def test_reward_pairs_are_the_union_of_its_preference_inputs(tmp_path):
    """Round k's reward model trains on every round's pairs: train with train, test with test, none lost."""
    from dataclasses import dataclass

    from rlhf.preferences.artifact import load_pair_union, preference_inputs, split_by_prompt, write_preferences

    @dataclass
    class Made:
        round: int

    def labels(k):
        rows = [{"prompt": f"p{k}-{i}", "chosen": "good", "rejected": "bad", "prompt_id": f"{k}-{i}",
                 "annotators": ["sim"], "agreement": 1.0} for i in range(4)]
        return write_preferences(tmp_path / f"round-{k}", Made(k), {}, split_by_prompt(rows, 0.5, 0), {}, {}).path

    specs = preference_inputs(str(labels(3)), [str(labels(1)), str(labels(2))])
    assert list(specs) == ["preferences", "preferences/1", "preferences/2"]
    union = load_pair_union({name: open_artifact(path, kind) for name, (path, kind) in specs.items()})
    assert len(union["train"]) == len(union["test"]) == 6
    assert {pid.split("-")[0] for pid in union["test"]["prompt_id"]} == {"1", "2", "3"}
    assert not set(union["train"]["prompt_id"]) & set(union["test"]["prompt_id"])


def test_a_separate_kl_reference_is_an_input_and_refused_with_lora(tmp_path):
    from rlhf.stages import dpo, ppo

    config = round_config(rounds_config(tmp_path, "rounds=2"), 2)
    assert ppo.inputs(config.ppo)["reference"][0] == f"{tmp_path}/sft"  # fingerprinted like any input
    config.dpo.reference = config.ppo.reference
    assert dpo.inputs(config.dpo)["reference"][0] == f"{tmp_path}/sft"
    config.ppo.lora.enabled = True
    with pytest.raises(ConfigError, match="reference= needs full fine-tuning"):
        ppo.inputs(config.ppo)
