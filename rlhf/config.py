"""Typed stage configs: dataclasses loaded from YAML with dotted command-line overrides.

OmegaConf structured configs do the parsing, merging and type checking; this module turns their
exceptions into one-line messages that name the key and the valid choices, and passes trainer
options through to the TRL/transformers config classes (validated against *their* fields, so we
never re-declare them).
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import json
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

T = TypeVar("T")


class ConfigError(ValueError):
    """A config problem, phrased as one line that names the key and the fix."""


def option(default: Any = dataclasses.MISSING, help: str = "", **kwargs: Any) -> Any:
    """A dataclass field with help text (shown by ``--help``)."""
    if isinstance(default, (dict, list)) or dataclasses.is_dataclass(default):
        value = default
        return field(default_factory=lambda: _copy(value), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


def _copy(value: Any) -> Any:
    import copy

    return copy.deepcopy(value)


# --------------------------------------------------------------------------------------------
# Shared config sections used by several stages.


@dataclass
class TinyModelConfig:
    """Shape of the embedded tiny GPT-2, built from a config (no hub download)."""

    n_layer: int = option(2, "transformer blocks")
    n_head: int = option(4, "attention heads")
    n_embd: int = option(128, "hidden width")
    n_positions: int = option(128, "maximum sequence length")
    vocab_size: int = option(2048, "BPE vocabulary size of the tokenizer trained on the task corpus")


@dataclass
class ModelConfig:
    name_or_path: str = option(
        "embedded",
        "'embedded' builds a tiny GPT-2 and trains a tokenizer on the task corpus; otherwise a hub "
        "name (e.g. 'gpt2') or a local directory, loaded with from_pretrained",
    )
    tiny: TinyModelConfig = option(TinyModelConfig(), "used only when name_or_path is 'embedded'")
    dropout: float | None = option(None, "override the model's dropout (None keeps the model's own)")


@dataclass
class LoraConfig:
    enabled: bool = option(False, "train LoRA adapters (peft) instead of all weights")
    r: int = option(16, "LoRA rank")
    alpha: int = option(32, "LoRA alpha")
    dropout: float = option(0.05, "LoRA dropout")
    target_modules: list[str] = option(["c_attn", "c_proj", "c_fc"], "modules to adapt (GPT-2 names)")
    merge: bool = option(True, "merge adapters into the weights when saving (else save the adapter)")


@dataclass
class DataConfig:
    dataset: str = option(
        "embedded:reviews",
        "'embedded:reviews' generates the offline synthetic review task; otherwise a hub dataset "
        "name (e.g. 'imdb'), a save_to_disk directory, or a .jsonl/.json/.parquet/.csv file",
    )
    text_field: str = option("text", "column holding the full text")
    train_split: str = option("train", "split used for training")
    test_split: str = option("test", "split used for held-out evaluation")
    num_examples: int = option(4000, "embedded task: number of synthetic reviews to generate")
    max_train_examples: int | None = option(None, "cap the training set (None = all)")
    max_test_examples: int | None = option(200, "cap the held-out set (None = all)")
    shuffle: bool = option(
        False, "shuffle each split (seeded by data.seed) before the caps: hub datasets sorted by label (imdb: "
        "all negative reviews first) would otherwise give one-sided prompts")
    prompt_min_words: int = option(4, "hub text datasets: prompt = first N..M words of a text")
    prompt_max_words: int = option(8, "hub text datasets: prompt = first N..M words of a text")
    prompt_until: str | None = option(
        None, "hub dialogue datasets: prompt = the text up to and including the LAST occurrence of this marker "
        "(e.g. '\\n\\nAssistant:' for Anthropic/hh-rlhf), instead of its first words")
    max_prompt_chars: int | None = option(
        None, "drop examples whose prompt is longer (long dialogues would overflow GPT-2's 1024 positions when sampled)")
    seed: int = option(0, "seed for generation, shuffling and prompt truncation")


# --------------------------------------------------------------------------------------------
# Loading and validation.


def load_yaml(config_file: str | Path) -> Any:
    path = Path(config_file)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path} (pass an existing YAML file to --config)")
    try:
        return OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError and friends
        raise ConfigError(f"config file {path} is not valid YAML: {str(exc).splitlines()[0]}") from exc


def load_config(
    cls: type[T], config_file: str | Path | None = None, overrides: list[str] = (), base_layers: list[Any] = (),
) -> T:
    """Build ``cls`` from its defaults, ``base_layers``, a YAML file, then ``key=value`` overrides."""
    schema = OmegaConf.structured(cls)
    layers = list(base_layers)
    if config_file is not None:
        layers.append(load_yaml(config_file))
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value (e.g. train.learning_rate=3e-4)")
    if overrides:
        layers.append(OmegaConf.from_dotlist(list(overrides)))
    try:
        merged = OmegaConf.merge(schema, *layers)
        return OmegaConf.to_object(merged)
    except ConfigKeyError as exc:
        raise ConfigError(_unknown_key_message(cls, exc)) from exc
    except ValidationError as exc:
        key = exc.full_key or "?"
        raise ConfigError(f"bad value for '{key}': {str(exc).splitlines()[0]}") from exc
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config error at '{exc.full_key}': {str(exc).splitlines()[0]}") from exc


def _unknown_key_message(cls: type, exc: ConfigKeyError) -> str:
    full_key = exc.full_key or ""
    parent, _, leaf = full_key.rpartition(".")
    section = _section_type(cls, parent)
    choices = [f.name for f in dataclasses.fields(section)] if section else []
    close = difflib.get_close_matches(leaf, choices, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    return f"unknown config key '{full_key}'.{hint} Valid keys{' in ' + parent if parent else ''}: {', '.join(choices)}"


def _section_type(cls: type, dotted: str) -> type | None:
    section = cls
    for part in [p for p in dotted.split(".") if p]:
        hints = typing.get_type_hints(section)
        section = hints.get(part)
        if not dataclasses.is_dataclass(section):
            return None
    return section


def to_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)


def to_yaml(config: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(config))


def config_hash(config: Any, ignore: tuple[str, ...] = ()) -> str:
    """Stable hash of the resolved config; ``ignore`` drops keys that do not change the result."""
    data = {k: v for k, v in to_dict(config).items() if k not in ignore}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


RENAMED = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}


def trainer_args(config_cls: type[T], options: dict[str, Any], section: str = "train", **fixed: Any) -> T:
    """Build a TRL/transformers config class from pass-through ``options``.

    Unknown keys are rejected with the closest valid name, so a typo never silently does nothing.
    ``fixed`` are values the stage sets itself (output_dir and friends) unless the user overrode them.
    """
    valid = {f.name: f for f in dataclasses.fields(config_cls) if f.init}
    # transformers 5 renamed gradient_checkpointing*; the old name must still win over our default.
    options = {RENAMED.get(k, k) if RENAMED.get(k) in valid else k: v for k, v in options.items()}
    for key in options:
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=3)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"unknown config key '{section}.{key}': not an option of {config_cls.__name__}.{hint} "
                f"(see the {config_cls.__name__} docs for all options)"
            )
    # YAML 1.1 reads a bare `no` as False; for string/enum options (eval_strategy: no) it meant "no".
    options = {k: "no" if v is False and isinstance(valid[k].default, (str, enum.Enum)) else v
               for k, v in options.items()}
    kwargs = {**fixed, **options}
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value in '{section}': {str(exc).splitlines()[0]}") from exc


def describe(cls: type, prefix: str = "") -> list[str]:
    """Lines for ``--help``: every field with its type, default and help text."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            lines.append(f"  {name}.*  {f.metadata.get('help', '')}".rstrip())
            lines.extend(describe(tp, prefix=f"{name}."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        type_name = getattr(tp, "__name__", str(tp)).replace("typing.", "")
        lines.append(f"  {name} ({type_name}, default {default!r})  {f.metadata.get('help', '')}".rstrip())
    return lines
