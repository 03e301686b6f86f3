"""Prompt-disjoint splits: the embedded task, local datasets with repeated prompts, the overlap refusal."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import pytest
from datasets import Dataset, DatasetDict

from rlhf.artifacts import Artifact, open_artifact, write_artifact
from rlhf.config import ConfigError, DataConfig, load_config
from rlhf.data import check_disjoint, check_held_out, held_out_groups, load_task, split_summary
from rlhf.evaluation.generalization import rm_agreement
from rlhf.stages import generate
from rlhf.tasks.gold import gold_reward
from rlhf.tasks.reviews import LABELS, generate_reviews


def _prompts(data: DatasetDict, split: str) -> set[str]:
    return set(data[split]["prompt"])


def test_embedded_task_has_thousands_of_neutral_prompts_split_disjointly():
    reviews = generate_reviews(4000)
    prompts = [r["prompt"] for r in reviews]
    assert len(set(prompts)) > 3500
    assert set(gold_reward(set(prompts))) == {0.0}  # every opening admits any sentiment
    assert {r["label"] for r in reviews} == set(LABELS)
    data = load_task(DataConfig(max_test_examples=None))
    assert _prompts(data, "train").isdisjoint(_prompts(data, "test"))
    assert 0.05 < len(_prompts(data, "test")) / len(set(prompts)) < 0.15
    # A prompt's side depends on the prompt, not on the dataset size: no smaller task leaks into a larger one's test.
    small = load_task(DataConfig(num_examples=600, max_test_examples=None))
    assert _prompts(small, "train").isdisjoint(_prompts(data, "test"))
    assert _prompts(small, "test") <= _prompts(data, "test")


def test_local_dataset_with_repeated_prompts_is_split_by_prompt(tmp_path):
    # Dialogues like HH: 30 prompts, each answered 5 times.
    rows = [{"text": f"\n\nHuman: question {i % 30}?\n\nAssistant: answer {i}"} for i in range(150)]
    path = tmp_path / "dialogues.jsonl"
    Dataset.from_list(rows).to_json(path)
    cfg = DataConfig(dataset=str(path), prompt_until="\n\nAssistant:", max_test_examples=None)
    data = load_task(cfg)
    train, test = _prompts(data, "train"), _prompts(data, "test")
    assert train.isdisjoint(test) and test and len(train | test) == 30
    assert len(data["test"]) == 5 * len(test)  # every answer to a held-out prompt is held out with it
    summary = split_summary(cfg)
    assert summary["disjoint"] and (summary["train_prompts"], summary["test_prompts"]) == (len(train), len(test))


def test_ready_made_test_split_loses_the_rows_whose_prompt_is_trained_on(tmp_path):
    train = Dataset.from_list([{"text": f"\n\nHuman: q{i}\n\nAssistant: a"} for i in range(10)])
    test = Dataset.from_list([{"text": f"\n\nHuman: q{i}\n\nAssistant: b"} for i in range(8, 14)])
    DatasetDict(train=train, test=test).save_to_disk(tmp_path / "ds")
    cfg = DataConfig(dataset=str(tmp_path / "ds"), prompt_until="\n\nAssistant:")
    data = load_task(cfg)
    assert _prompts(data, "train").isdisjoint(_prompts(data, "test")) and len(data["test"]) == 4
    assert split_summary(cfg)["test_rows_dropped_as_train_prompts"] == 2


def test_overlap_check_refuses_a_crafted_overlapping_split():
    check_disjoint(["a", "b"], ["c", "d"], "unused")  # disjoint: accepted
    with pytest.raises(ConfigError) as err:
        check_disjoint(["a", "b", "c"], ["c", "d", "c"], "use the data.* settings it was trained with")
    message = str(err.value)
    assert "\n" not in message and "1 of 2 held-out prompts" in message and "'c'" in message
    assert message.endswith("use the data.* settings it was trained with")


def test_eval_refuses_prompts_a_policy_was_trained_on(tmp_path):
    rows = [{"text": f"Review number {i}. It was fine."} for i in range(200)]
    path = tmp_path / "reviews.jsonl"
    Dataset.from_list(rows).to_json(path)
    eval_cfg = DataConfig(dataset=str(path), prompt_min_words=3, prompt_max_words=3)
    held_out = list(dict.fromkeys(load_task(eval_cfg)["test"]["prompt"]))
    # Same data, same seed: the policy trained on the other side of the same split.
    same = Artifact(tmp_path / "sft", {"config": {"data": asdict(eval_cfg)}})
    check_held_out(eval_cfg, held_out, {"policy/sft": same})
    # Another seed draws another split: its training prompts include some of these held-out ones.
    other = Artifact(tmp_path / "ppo", {"config": {"data": asdict(DataConfig(**{**asdict(eval_cfg), "seed": 1}))}})
    with pytest.raises(ConfigError, match=r"held-out prompts are also training prompts .*'policy/ppo'.*data\.\*"):
        check_held_out(eval_cfg, held_out, {"policy/ppo": other})


def test_held_out_groups_keeps_both_sides_non_empty():
    assert len(held_out_groups(["a", "b"], 0.1, 0)) == 1
    assert len(held_out_groups(["a", "b", "c"], 0.99, 0)) == 2
    assert held_out_groups(["a", "b"], 0.0, 0) == set()


def test_generate_selects_2000_distinct_training_prompts():
    config = load_config(generate.Config, "configs/tiny/generate.yaml", ["num_prompts=2000"])
    prompts = generate.select_prompts(config)
    assert len(prompts) == len(set(prompts)) == 2000
    assert set(prompts) <= _prompts(load_task(config.data), "train")


@dataclass
class _WithData:
    data: DataConfig = field(default_factory=lambda: DataConfig(num_examples=600))


def test_manifest_records_the_split_and_its_prompt_counts(tmp_path):
    with write_artifact(tmp_path / "a", "sft", _WithData()):
        pass
    recorded = json.loads((tmp_path / "a" / "manifest.json").read_text())["data_split"]
    data = load_task(DataConfig(num_examples=600))
    assert recorded["split"] == "by prompt" and recorded["disjoint"] is True
    assert recorded["train_prompts"] == len(_prompts(data, "train"))
    assert recorded["test_prompts"] == len(_prompts(data, "test"))
    assert open_artifact(tmp_path / "a").manifest["data_split"] == recorded


def test_rm_agreement_counts_untied_prompts_where_the_rm_orders_like_gold():
    policy = {"gold": [0.5, 0.1, 0.3, 0.2], "rm": [1.0, 2.0, 0.0, 5.0]}
    reference = {"gold": [0.1, 0.5, 0.3, 0.1], "rm": [0.0, 1.0, 9.0, 1.0]}
    # prompt 0: both prefer policy; 1: gold prefers reference, RM policy; 2: gold tie (skipped); 3: both policy.
    assert rm_agreement(policy, reference) == pytest.approx(2 / 3)
    assert rm_agreement({**policy, "rm": None}, reference) is None
