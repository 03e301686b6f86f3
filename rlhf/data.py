"""Dataset loading: one path for the embedded task, hub names, save_to_disk dirs and local files.

Train and test are split by prompt (a group split): every example of a prompt lands on the same side,
so "held-out prompts" are prompts no training stage has seen. Which side a prompt lands on depends
only on the prompt and the seed, so a smaller ``num_examples`` gives a subset of the same split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from rlhf.config import ConfigError, DataConfig
from rlhf.tasks.reviews import generate_reviews

EMBEDDED_REVIEWS = "embedded:reviews"
FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
TEST_FRACTION = 0.1  # share of the distinct prompts held out when the dataset has no test split


def load_any(name_or_path: str) -> DatasetDict:
    """``load_dataset`` on a hub name, ``load_from_disk`` on a saved dir, the right builder for files."""
    path = Path(name_or_path)
    if path.is_dir() and ((path / "dataset_dict.json").exists() or (path / "dataset_info.json").exists()):
        data = load_from_disk(str(path))
    elif path.suffix in FILE_FORMATS:
        if not path.is_file():
            raise ConfigError(f"dataset file not found: {path} (data.dataset must be a hub name or an existing path)")
        data = load_dataset(FILE_FORMATS[path.suffix], data_files=str(path))
    else:
        try:
            data = load_dataset(name_or_path)
        except (ConnectionError, FileNotFoundError, ValueError, OSError) as exc:
            raise ConfigError(
                f"could not load dataset '{name_or_path}': {str(exc).splitlines()[0]} (no hub access? point the "
                "dataset at a save_to_disk directory or a .jsonl/.parquet file)"
            ) from exc
    return data if isinstance(data, DatasetDict) else DatasetDict({"train": data})


# --------------------------------------------------------------------------------------------
# Group split by prompt.


def _bucket(key: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by (seed, key)."""
    return int(hashlib.sha1(f"{seed}\x1f{key}".encode()).hexdigest()[:15], 16) / 16**15


def held_out_groups(keys: Iterable[str], test_fraction: float, seed: int) -> set[str]:
    """The keys (prompts or prompt ids) that go to the test side of a group split.

    A key is held out when its seeded hash falls below ``test_fraction``: its side never depends on
    which other keys are present. With two or more keys and ``test_fraction > 0`` both sides are
    non-empty. Shared by every split by prompt (tasks here; preference pairs should call it too).
    """
    if not 0 <= test_fraction < 1:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction}")
    ranked = sorted(set(keys), key=lambda k: _bucket(k, seed))
    test = {k for k in ranked if _bucket(k, seed) < test_fraction}
    if test_fraction > 0 and len(ranked) >= 2:
        if not test:
            test = {ranked[0]}
        elif len(test) == len(ranked):
            test.discard(ranked[-1])
    return test


def group_split(ds: Dataset, test_fraction: float, seed: int, key: str = "prompt") -> DatasetDict:
    """Train/test such that no value of ``key`` occurs on both sides."""
    held_out = held_out_groups(ds[key], test_fraction, seed)
    sides = [value in held_out for value in ds[key]]
    return DatasetDict(train=ds.select([i for i, t in enumerate(sides) if not t]),
                       test=ds.select([i for i, t in enumerate(sides) if t]))


def check_disjoint(train_prompts: Iterable[str], test_prompts: Iterable[str], fix: str) -> None:
    """Refuse a test set that shares prompts with the training prompts; ``fix`` says what to change."""
    train = set(train_prompts)
    test = list(dict.fromkeys(test_prompts))
    shared = [p for p in test if p in train]
    if shared:
        example = shared[0] if len(shared[0]) <= 60 else shared[0][:57] + "..."
        raise ConfigError(f"{len(shared)} of {len(test)} held-out prompts are also training prompts "
                          f"(e.g. {example!r}); {fix}")


# --------------------------------------------------------------------------------------------
# Tasks.


def _with_prompts(ds: Dataset, cfg: DataConfig) -> Dataset:
    """Hub text datasets have no prompts: take the first few words of each text (as TRL's IMDb example)."""
    if cfg.text_field not in ds.column_names:
        raise ConfigError(
            f"dataset {cfg.dataset} has no column '{cfg.text_field}' (data.text_field); columns: {', '.join(ds.column_names)}"
        )
    rng = random.Random(cfg.seed)

    def add_prompt(example):
        text = example[cfg.text_field]
        # Dialogues: everything up to the last assistant turn is the prompt (as in the preference pairs).
        cut = text.rfind(cfg.prompt_until) if cfg.prompt_until else -1
        if cut != -1:
            return {"text": text, "prompt": text[: cut + len(cfg.prompt_until)]}
        words = text.split()
        return {"text": text, "prompt": " ".join(words[: rng.randint(cfg.prompt_min_words, cfg.prompt_max_words)])}

    ds = ds.map(add_prompt, remove_columns=[c for c in ds.column_names if c in ("text", "prompt")])
    if cfg.max_prompt_chars is not None:
        ds = ds.filter(lambda example: len(example["prompt"]) <= cfg.max_prompt_chars)
    return ds


def _split(cfg: DataConfig) -> tuple[DatasetDict, int]:
    """Prompt-disjoint train/test, and how many test rows were dropped for sharing a train prompt."""
    if cfg.dataset == EMBEDDED_REVIEWS:
        return group_split(Dataset.from_list(generate_reviews(cfg.num_examples, seed=cfg.seed)), TEST_FRACTION,
                           cfg.seed), 0
    data = load_any(cfg.dataset)
    if cfg.train_split not in data:
        raise ConfigError(
            f"dataset {cfg.dataset} has no split '{cfg.train_split}' (data.train_split); it has: {', '.join(data)}"
        )
    train = _with_prompts(data[cfg.train_split], cfg)
    if cfg.test_split not in data:
        return group_split(train, TEST_FRACTION, cfg.seed), 0
    # A ready-made test split may repeat training prompts (HH dialogues, IMDb's common openings):
    # those rows are not held out, so they are dropped (and counted in the manifest).
    test = _with_prompts(data[cfg.test_split], cfg)
    seen = set(train["prompt"])
    kept = [i for i, p in enumerate(test["prompt"]) if p not in seen]
    return DatasetDict(train=train, test=test.select(kept)), len(test) - len(kept)


@lru_cache(maxsize=4)
def _load(key: str) -> tuple[DatasetDict, int]:
    cfg = DataConfig(**json.loads(key)[0])
    data, dropped = _split(cfg)
    data = DatasetDict(data)
    for split, cap in (("train", cfg.max_train_examples), ("test", cfg.max_test_examples)):
        if cfg.shuffle:
            data[split] = data[split].shuffle(seed=cfg.seed)
        if cap is not None and len(data[split]) > cap:
            data[split] = data[split].select(range(cap))
    return data, dropped


def _key(cfg: DataConfig) -> str:
    path = Path(cfg.dataset)
    changed = path.stat().st_mtime_ns if path.exists() else None  # a rewritten local file is reloaded
    return json.dumps([dataclasses.asdict(cfg), changed], sort_keys=True)


def load_task(cfg: DataConfig) -> DatasetDict:
    """Prompt-disjoint train/test splits with ``text`` (full example) and ``prompt`` (its opening) columns."""
    data, _ = _load(_key(cfg))
    return DatasetDict(data)  # a new dict: callers may replace splits without touching the cache


def train_prompts(cfg: DataConfig, n: int | None = None) -> list[str]:
    """Distinct training prompts, in a fixed order: for rollouts and for every training stage's own eval."""
    prompts = list(dict.fromkeys(load_task(cfg)["train"]["prompt"]))
    return prompts if n is None else prompts[:n]


def held_out_prompts(cfg: DataConfig, n: int | None = None) -> list[str]:
    """Distinct held-out prompts, in a fixed order: for the eval stage only."""
    prompts = list(dict.fromkeys(load_task(cfg)["test"]["prompt"]))
    return prompts if n is None else prompts[:n]


def split_summary(cfg: DataConfig) -> dict[str, Any]:
    """What the manifest records about the split (after the caps)."""
    data, dropped = _load(_key(cfg))
    train, test = set(data["train"]["prompt"]), set(data["test"]["prompt"])
    return {"dataset": cfg.dataset, "split": "by prompt", "train_prompts": len(train), "test_prompts": len(test),
            "train_examples": len(data["train"]), "test_examples": len(data["test"]),
            "disjoint": not (train & test), "test_rows_dropped_as_train_prompts": dropped}


def check_held_out(cfg: DataConfig, prompts: list[str], trained: dict[str, Any]) -> None:
    """Refuse held-out ``prompts`` that an input artifact trained on (per its manifest's data config)."""
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    for name, artifact in trained.items():
        data = artifact.config.get("data")
        if not isinstance(data, dict):
            continue
        their_cfg = DataConfig(**{k: v for k, v in data.items() if k in fields})
        if their_cfg == cfg:
            continue  # the same data config: disjoint by construction
        try:
            trained_on = train_prompts(their_cfg)
        except ConfigError:
            continue  # its data is not reachable from here (moved file, no hub access): nothing to compare
        check_disjoint(trained_on, prompts,
                       f"'{name}' ({artifact.path}) trained on them: use the data.* settings it was trained with")
