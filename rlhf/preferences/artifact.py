"""The "preferences" artifact: TRL prompt/chosen/rejected pairs with our metadata, split train/test by prompt.

Its one home: the kind, the columns, the train/test split, the reader (``load_pairs``, used by the
reward and DPO stages) and the writer (``write_preferences``, used by the preferences stage and
``python -m annotation_ui.export``).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, Features, List, Value, concatenate_datasets, load_from_disk

from rlhf.artifacts import Artifact, ArtifactError, open_artifact, write_artifact
from rlhf.config import ConfigError

KIND = "preferences"
PAIR_COLUMNS = ["prompt", "chosen", "rejected"]  # TRL's explicit-prompt preference format
FEATURES = Features({
    "prompt": Value("string"), "chosen": Value("string"), "rejected": Value("string"),
    "prompt_id": Value("string"), "annotators": List(Value("string")), "agreement": Value("float64"),
})


def split_by_prompt(rows: list[dict[str, Any]], test_fraction: float, seed: int) -> DatasetDict:
    """Train/test by prompt_id, so a prompt's pairs never straddle the split."""
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}")
    prompt_ids = sorted({r["prompt_id"] for r in rows})
    random.Random(seed).shuffle(prompt_ids)
    n_test = round(test_fraction * len(prompt_ids))
    if test_fraction > 0 and len(prompt_ids) >= 2:
        n_test = min(max(n_test, 1), len(prompt_ids) - 1)  # both splits non-empty when possible
    test_ids = set(prompt_ids[:n_test])
    split = {"train": [r for r in rows if r["prompt_id"] not in test_ids],
             "test": [r for r in rows if r["prompt_id"] in test_ids]}
    return DatasetDict({name: Dataset.from_list(part, features=FEATURES) if part
                        else Dataset.from_dict({k: [] for k in FEATURES}, features=FEATURES)
                        for name, part in split.items()})


def load_pairs(preferences: Artifact) -> DatasetDict:
    """The train/test pairs of a preferences artifact, checked: both splits there, non-empty, with PAIR_COLUMNS."""
    try:
        data = load_from_disk(str(preferences / "data"))
    except IndexError as exc:  # datasets 5.2 cannot read back a saved split with no rows
        raise ArtifactError(
            f"preferences artifact {preferences.path} has an empty 'test' or 'train' split (every pair tied or too "
            "few prompts); re-export it with more labelled prompts or a larger test_fraction"
        ) from exc
    for split in ("train", "test"):
        if split not in data:
            raise ArtifactError(f"preferences artifact {preferences.path} has no '{split}' split; re-export it")
        if len(data[split]) == 0:
            raise ArtifactError(
                f"preferences artifact {preferences.path} has an empty '{split}' split (every pair tied or too few "
                "prompts); re-export it with more labelled prompts or a larger test_fraction"
            )
        missing = set(PAIR_COLUMNS) - set(data[split].column_names)
        if missing:
            raise ArtifactError(
                f"preferences artifact {preferences.path} lacks columns {sorted(missing)}; re-export it"
            )
    return data


def preference_inputs(preferences: str, extra: list[str]) -> dict[str, tuple[str, str]]:
    """``preferences`` and each of ``extra`` as inputs ``preferences``, ``preferences/1``, ...: every artifact
    whose pairs are used is an input, so the manifest records the union by path and fingerprint."""
    return {"preferences": (preferences, KIND), **{f"preferences/{i}": (path, KIND) for i, path in enumerate(extra, 1)}}


def load_pair_union(inputs: dict[str, Artifact]) -> DatasetDict:
    """The pairs of every ``preference_inputs`` artifact, concatenated split by split (train with train,
    test with test), so a prompt held out in its own artifact stays held out."""
    parts = [load_pairs(art) for name, art in inputs.items() if name == "preferences" or name.startswith("preferences/")]
    if len(parts) == 1:
        return parts[0]
    return DatasetDict({split: concatenate_datasets([part[split].cast(FEATURES) for part in parts])
                        for split in ("train", "test")})


def write_preferences(
    output_dir: str | Path, config: Any, inputs: dict[str, Artifact], data: DatasetDict | None,
    metrics: dict[str, Any], extra: dict[str, Any],
) -> Artifact:
    """Write the "preferences" artifact: data/ via save_to_disk; metrics and ``extra`` (the label DB's
    state, or the source dataset) in the manifest; ``inputs`` the candidates it came from, if any.

    Under several processes every rank calls this; ranks other than the main one pass ``data=None``.
    """
    with write_artifact(output_dir, KIND, config, inputs) as out:
        if data is not None:
            data.save_to_disk(str(out.path / "data"))
            out.metrics.update(metrics)
            out.extra.update(extra)
    return open_artifact(output_dir, KIND)
