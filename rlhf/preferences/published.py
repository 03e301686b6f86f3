"""Preference pairs from a published dataset, in the format of our "preferences" artifact.

Accepts TRL's two standard (text) preference formats:

* explicit prompt: ``prompt``, ``chosen``, ``rejected`` (chosen/rejected are the responses only);
* implicit prompt: ``chosen``, ``rejected`` full texts sharing their prompt as a prefix, as
  Anthropic/hh-rlhf ("\\n\\nHuman: ... \\n\\nAssistant: ..." dialogues). The prompt is split off with
  ``trl.data_utils.maybe_extract_prompt`` and then moved back to the last "\\n\\nAssistant:" turn, so a
  response that happens to start like the other one keeps its first words.

and adds the metadata columns our stages expect (``prompt_id``, ``annotators``, ``agreement``); a
dataset's labels count as one annotator named "dataset" whose every pair has agreement 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass

from datasets import Dataset, DatasetDict
from trl.data_utils import is_conversational, maybe_extract_prompt

from rlhf.candidates import prompt_id
from rlhf.config import ConfigError, option
from rlhf.data import load_any
from rlhf.preferences.artifact import FEATURES, split_by_prompt

ASSISTANT_TURN = "\n\nAssistant:"  # Anthropic HH turn marker; a prompt ends right after the last one
ANNOTATOR = "dataset"


@dataclass
class PreferenceDatasetConfig:
    """Where the pairs come from (``annotators: dataset`` in the preferences stage)."""

    name: str = option(
        "Anthropic/hh-rlhf",
        "hub dataset name, save_to_disk directory, or .jsonl/.json/.parquet/.csv file with chosen/rejected "
        "columns (plus prompt, unless the prompt is the shared prefix of chosen and rejected)",
    )
    train_split: str = option("train", "split of pairs to train on")
    test_split: str = option("test", "held-out split; taken from train_split by prompt (test_fraction) if missing")
    max_train_examples: int | None = option(None, "cap the training pairs (None = all)")
    max_test_examples: int | None = option(None, "cap the held-out pairs (None = all)")


def load_preference_dataset(
    name_or_path: str, train_split: str = "train", test_split: str = "test", test_fraction: float = 0.1,
    max_train_examples: int | None = None, max_test_examples: int | None = None, seed: int = 0,
    annotator: str = ANNOTATOR,
) -> DatasetDict:
    """``DatasetDict(train, test)`` with prompt/chosen/rejected (responses only) and our metadata columns."""
    raw = load_any(name_or_path)  # an unreachable hub name is already a one-line ConfigError
    splits = {}
    for split in (train_split, test_split):
        if split in raw:
            splits[split] = to_pairs(raw[split], name_or_path, annotator)
    if train_split not in splits:
        raise ConfigError(
            f"preference dataset '{name_or_path}' has no split '{train_split}'; it has: {', '.join(raw)} "
            "(set the train split option to one of them)"
        )
    if test_split in splits:
        data = DatasetDict(train=splits[train_split], test=splits[test_split])
    else:
        # The same split by prompt as exported annotations, so no prompt is in both splits.
        data = split_by_prompt(splits[train_split].to_list(), test_fraction, seed)
    for split, cap in (("train", max_train_examples), ("test", max_test_examples)):
        if cap is not None and len(data[split]) > cap:
            data[split] = data[split].select(range(cap))
    return data


def to_pairs(ds: Dataset, name: str, annotator: str = ANNOTATOR) -> Dataset:
    """One split in our pair format; pairs whose responses are identical carry no preference and are dropped."""
    missing = [c for c in ("chosen", "rejected") if c not in ds.column_names]
    if missing:
        raise ConfigError(
            f"preference dataset '{name}' lacks column(s) {', '.join(missing)} (columns: {', '.join(ds.column_names)}); "
            "it needs chosen and rejected, plus prompt when the prompt is not a shared prefix of both "
            "(rename the columns or convert the file first)"
        )
    if len(ds) and is_conversational(ds[0]):
        raise ConfigError(
            f"preference dataset '{name}' is conversational (lists of role/content messages); these GPT-2 "
            "policies have no chat template, so convert it to plain text (e.g. HH-style '\\n\\nHuman: ...' turns) first"
        )
    implicit = "prompt" not in ds.column_names
    if implicit:
        ds = ds.map(maybe_extract_prompt).map(_prompt_ends_at_turn)
    ds = ds.filter(lambda ex: ex["chosen"] != ex["rejected"])
    extra = {}
    if "prompt_id" not in ds.column_names:
        extra["prompt_id"] = lambda ex: prompt_id(ex["prompt"])
    if "annotators" not in ds.column_names:
        extra["annotators"] = lambda ex: [annotator]
    if "agreement" not in ds.column_names:
        extra["agreement"] = lambda ex: 1.0
    if extra:
        ds = ds.map(lambda ex: {key: make(ex) for key, make in extra.items()})
    return ds.select_columns(list(FEATURES)).cast(FEATURES)


def _prompt_ends_at_turn(example: dict) -> dict:
    """Cut the shared prefix after its last assistant marker: the words after it belong to the responses.

    ``extract_prompt`` takes the longest common character prefix, so "Assistant: I think" vs
    "Assistant: I don't" would leave "I" in the prompt.
    """
    prompt = example["prompt"]
    cut = prompt.rfind(ASSISTANT_TURN)
    if cut == -1:
        return example
    end = cut + len(ASSISTANT_TURN)
    tail = prompt[end:]
    return {"prompt": prompt[:end], "chosen": tail + example["chosen"], "rejected": tail + example["rejected"]}
