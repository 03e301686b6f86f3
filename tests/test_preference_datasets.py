"""Published preference datasets -> our "preferences" format (rlhf/preferences/published.py)."""

from __future__ import annotations

import json

import pytest
from datasets import Dataset, DatasetDict, load_from_disk

from rlhf.config import ConfigError, load_config
from rlhf.preferences.published import load_preference_dataset
from rlhf.sampling import join

# Anthropic/hh-rlhf rows: implicit prompt, full dialogues that share everything up to the last answer.
HH_ROWS = [
    {"chosen": "\n\nHuman: What is a good movie?\n\nAssistant: I think Casablanca is wonderful.",
     "rejected": "\n\nHuman: What is a good movie?\n\nAssistant: I don't know."},
    {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: Why did the chicken cross?",
     "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant: No."},
    {"chosen": "\n\nHuman: Can you help?\n\nAssistant: Sure, gladly.",
     "rejected": "\n\nHuman: Can you help?\n\nAssistant: Sure, gladly."},  # no preference: dropped
    {"chosen": "\n\nHuman: Name a color\n\nAssistant: Blue.",
     "rejected": "\n\nHuman: Name a color\n\nAssistant: Nope."},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_implicit_prompt_is_split_at_the_last_assistant_turn(tmp_path):
    data = load_preference_dataset(write_jsonl(tmp_path / "hh.jsonl", HH_ROWS), test_fraction=0.3)

    rows = data["train"].to_list() + data["test"].to_list()
    assert len(rows) == 3  # the pair with identical responses carries no preference
    by_prompt = {r["prompt"]: r for r in rows}
    movie = by_prompt["\n\nHuman: What is a good movie?\n\nAssistant:"]
    # TRL's character-level prefix would have kept " I" in the prompt; the turn boundary keeps it in the responses.
    assert movie["chosen"] == " I think Casablanca is wonderful."
    assert movie["rejected"] == " I don't know."
    joke = by_prompt["\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Tell me a joke\n\nAssistant:"]
    assert joke["rejected"] == " No."
    # The artifact contract: the full text is exactly prompt + response, and the metadata columns are there.
    originals = {(r["chosen"], r["rejected"]) for r in HH_ROWS}
    for r in rows:
        assert (join(r["prompt"], r["chosen"]), join(r["prompt"], r["rejected"])) in originals
        assert r["annotators"] == ["dataset"] and r["agreement"] == 1.0
        assert r["prompt_id"].startswith("p") and isinstance(r["prompt_id"], str)


def test_without_a_test_split_prompts_are_held_out_whole(tmp_path):
    rows = [{"prompt": f"Question {i}?", "chosen": f" good {i}{k}", "rejected": f" bad {i}{k}"}
            for i in range(10) for k in range(2)]
    data = load_preference_dataset(write_jsonl(tmp_path / "explicit.jsonl", rows), test_fraction=0.2, seed=1)

    train_ids, test_ids = set(data["train"]["prompt_id"]), set(data["test"]["prompt_id"])
    assert len(test_ids) == 2 and len(train_ids) == 8 and not train_ids & test_ids
    assert len(data["train"]) + len(data["test"]) == 20


def test_explicit_prompt_dataset_from_disk_keeps_its_splits_and_caps(tmp_path):
    extra = {"source": "x"}  # columns outside the format are dropped
    make = lambda n, tag: Dataset.from_list(  # noqa: E731
        [{"prompt": f"{tag} {i}:", "chosen": " yes", "rejected": " no", **extra} for i in range(n)])
    DatasetDict(train=make(6, "train"), validation=make(4, "val")).save_to_disk(str(tmp_path / "ds"))

    data = load_preference_dataset(str(tmp_path / "ds"), test_split="validation", max_train_examples=5)

    assert len(data["train"]) == 5 and len(data["test"]) == 4
    assert data["test"][0]["prompt"] == "val 0:"  # the explicit prompt is used as given
    assert data["train"].column_names == ["prompt", "chosen", "rejected", "prompt_id", "annotators", "agreement"]


def test_parquet_file_loads(tmp_path):
    Dataset.from_list(HH_ROWS).to_parquet(str(tmp_path / "hh.parquet"))
    data = load_preference_dataset(str(tmp_path / "hh.parquet"), test_fraction=0.3)
    assert len(data["train"]) + len(data["test"]) == 3


@pytest.mark.parametrize("rows, message", [
    ([{"prompt": "p", "chosen": " a"}], "lacks column(s) rejected"),
    ([{"question": "p", "answer_a": "x", "answer_b": "y"}], "lacks column(s) chosen, rejected"),
    ([{"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
       "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}]}],
     "conversational"),
])
def test_unusable_datasets_fail_with_the_problem_named(tmp_path, rows, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_preference_dataset(write_jsonl(tmp_path / "bad.jsonl", rows))


def test_missing_split_and_unreachable_hub_name_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no split 'dev'"):
        load_preference_dataset(write_jsonl(tmp_path / "hh.jsonl", HH_ROWS), train_split="dev")
    with pytest.raises(ConfigError, match="could not load dataset"):
        load_preference_dataset("no-such-org/no-such-preference-dataset")


def test_preferences_stage_dataset_mode_writes_an_artifact_without_candidates(tmp_path):
    from rlhf.stage import run_stage
    from rlhf.stages import preferences

    source = write_jsonl(tmp_path / "hh.jsonl", HH_ROWS)
    config = load_config(preferences.Config, "configs/gpt2/hh/preferences.yaml",
                         [f"run_dir={tmp_path / 'run'}", f"dataset.name={source}", "test_fraction=0.3"])
    assert preferences.inputs(config) == {}  # no generate stage in front of it

    artifact = run_stage(preferences, config, log=lambda _: None)

    assert artifact.kind == "preferences"
    data = load_from_disk(str(artifact / "data"))
    assert set(data) == {"train", "test"} and len(data["train"]) + len(data["test"]) == 3
    assert artifact.metrics["pairs/train"] == len(data["train"]) and artifact.metrics["pairs/test"] == len(data["test"])
    assert artifact.manifest["source"] == source
