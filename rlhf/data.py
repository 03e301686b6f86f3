"""Dataset loading: one path for the embedded task, hub names, save_to_disk dirs and local files."""

from __future__ import annotations

import random
from pathlib import Path

from datasets import Dataset, DatasetDict, load_dataset, load_from_disk

from rlhf.config import ConfigError, DataConfig
from rlhf.tasks.reviews import generate_reviews

EMBEDDED_REVIEWS = "embedded:reviews"
FILE_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


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


def _split(data: DatasetDict, cfg: DataConfig) -> DatasetDict:
    if cfg.test_split not in data:
        if cfg.train_split not in data:
            raise ConfigError(
                f"dataset {cfg.dataset} has no split '{cfg.train_split}' (data.train_split); it has: {', '.join(data)}"
            )
        data = data[cfg.train_split].train_test_split(test_size=0.1, seed=cfg.seed)
        data = DatasetDict({cfg.train_split: data["train"], cfg.test_split: data["test"]})
    return DatasetDict(train=data[cfg.train_split], test=data[cfg.test_split])


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


def load_task(cfg: DataConfig) -> DatasetDict:
    """Train/test splits with ``text`` (full example) and ``prompt`` (its opening) columns."""
    if cfg.dataset == EMBEDDED_REVIEWS:
        data = Dataset.from_list(generate_reviews(cfg.num_examples, seed=cfg.seed))
        data = data.train_test_split(test_size=0.1, seed=cfg.seed)
    else:
        data = _split(load_any(cfg.dataset), cfg)
        data = DatasetDict({k: _with_prompts(v, cfg) for k, v in data.items()})
    for split, cap in (("train", cfg.max_train_examples), ("test", cfg.max_test_examples)):
        if cfg.shuffle:
            data[split] = data[split].shuffle(seed=cfg.seed)
        if cap is not None and len(data[split]) > cap:
            data[split] = data[split].select(range(cap))
    return data


def held_out_prompts(cfg: DataConfig, n: int | None = None) -> list[str]:
    """The held-out prompts, in a fixed order, for generation and evaluation."""
    prompts = load_task(cfg)["test"]["prompt"]
    return prompts if n is None else prompts[:n]
