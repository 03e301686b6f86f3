"""Typed stage configs: dataclasses loaded from YAML with dotted command-line overrides.

OmegaConf structured configs do the parsing, merging and type checking; this module turns their
exceptions into one-line messages that name the key and the valid choices. Choices are ``Literal``
types, so OmegaConf checks them at load time. A stage's trainer section is a dataclass generated
from the TRL/transformers config class it feeds (``trainer_options``), so its keys are checked at
load time and ``--help`` shows TRL's own help text, without re-declaring any TRL field here.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import hashlib
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Optional, TypeVar, Union

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from rlhf.resources import find_recipe

T = TypeVar("T")


class ConfigError(ValueError):
    """A config problem, phrased as one line that names the key and the fix."""


def option(default: Any = dataclasses.MISSING, help: str = "", hashed: bool = True, **kwargs: Any) -> Any:
    """A dataclass field with help text (shown by ``--help``).

    ``hashed=False`` marks bookkeeping (paths, resume, logging) that does not change a stage's
    result, so the config hash and with it the up-to-date check ignore it.
    """
    metadata = {"help": help, "hashed": hashed}
    if isinstance(default, (dict, list)) or dataclasses.is_dataclass(default):
        value = default
        return field(default_factory=lambda: _copy(value), metadata=metadata, **kwargs)
    return field(default=default, metadata=metadata, **kwargs)


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
    """A YAML file, or a packaged recipe by name (``tiny/sft.yaml``, ``configs/tiny/sft.yaml``) from any directory."""
    path = find_recipe(config_file)
    if not path.is_file():
        raise ConfigError(f"config file not found: {config_file} (pass an existing YAML file or a packaged recipe "
                          "such as tiny/sft.yaml to --config)")
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
    if section is not None and issubclass(section, TrainerOptions):  # ~150 options: too many for one line
        return (f"unknown config key '{full_key}': not an option of {section.target.__name__}.{hint} "
                "The stage's --help lists every option (e.g. python -m pipelines.sft --help).")
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
    """Plain data of a config; a trainer section holds only the options set (None = TRL's default)."""
    if isinstance(config, TrainerOptions):
        return config.options()
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, dict):
        return {k: to_dict(v) for k, v in config.items()}
    if isinstance(config, (list, tuple)):
        return [to_dict(v) for v in config]
    return config


def to_yaml(config: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.create(to_dict(config)))


def hashed_view(config: Any) -> Any:
    """What the config hash covers: no bookkeeping fields, and paths under ``run_dir`` made relative.

    Input artifacts are tracked by their fingerprints, outputs by their place, so neither their
    paths nor logging options say anything about the result; a moved run directory stays up to date.
    """
    run_dir = getattr(config, "run_dir", None)

    def walk(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: walk(getattr(value, f.name)) for f in dataclasses.fields(value)
                    if f.metadata.get("hashed", True) and getattr(value, f.name) is not None}
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [walk(v) for v in value]
        if run_dir and isinstance(value, str) and (value == run_dir or value.startswith(run_dir.rstrip("/") + "/")):
            return "${run_dir}" + value[len(run_dir.rstrip("/")):]
        return value

    return walk(config)


def config_hash(config: Any, ignore: tuple[str, ...] = ()) -> str:
    """Stable hash of what determines a stage's result; ``ignore`` drops further top-level keys."""
    data = {k: v for k, v in hashed_view(config).items() if k not in ignore}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Trainer sections typed from the TRL/transformers config classes.

RENAMED = {
    "gradient_checkpointing": "activation_checkpointing",
    "gradient_checkpointing_kwargs": "activation_checkpointing_kwargs",
}
# Trainer options that only change what is logged, not what is trained: outside the config hash.
LOGGING_OPTIONS = {"report_to", "disable_tqdm", "run_name", "project", "logging_dir", "include_num_input_tokens_seen"}
LOGGING_PREFIXES = ("logging_", "log_", "trackio_")
# Set by the stage itself (the trainer's scratch directory), never from the config.
STAGE_OWNED = {"output_dir"}
_SCALARS = (bool, int, float, str)


class TrainerOptions:
    """Base of the generated trainer sections (see ``trainer_options``).

    Every field is one of ``target``'s; None means "TRL's default", so a recipe removes one of our
    defaults by setting it to null.
    """

    target: ClassVar[type]
    section: ClassVar[str]
    _choices: ClassVar[dict[str, list[str]]]
    _no_is_string: ClassVar[frozenset[str]]

    def __post_init__(self) -> None:
        for name in self._no_is_string:
            # YAML 1.1 reads a bare `no` as False; for string/enum options (eval_strategy: no) it meant "no".
            if getattr(self, name) is False:
                setattr(self, name, "no")
        for name, choices in self._choices.items():
            value = getattr(self, name)
            if value is not None and str(getattr(value, "value", value)) not in choices:
                raise ConfigError(f"bad value for '{self.section}.{name}': {value!r}; choose one of {', '.join(choices)}")

    def options(self) -> dict[str, Any]:
        """The options set here (not None), as keyword arguments of ``target``."""
        return {f.name: _copy(getattr(self, f.name)) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def build(self, **fixed: Any) -> Any:
        """The TRL config: ``fixed`` are values the stage sets itself unless the user set them here."""
        return trainer_args(self.target, self.options(), self.section, **fixed)


def _schema_type(tp: Any) -> Any:
    """The closest type OmegaConf can check; Any (TRL checks it when building) for everything else."""
    args = typing.get_args(tp) if typing.get_origin(tp) in (Union, types.UnionType) else (tp,)
    args = [a for a in args if a is not type(None)]
    if len(args) == 1:
        (arg,) = args
        if arg in _SCALARS:
            return Optional[arg]
        if typing.get_origin(arg) is list and typing.get_args(arg) and typing.get_args(arg)[0] in _SCALARS:
            return Optional[arg]
    return Any


def trainer_options(target: type, defaults: dict[str, Any], section: str = "train") -> type:
    """A dataclass with every init field of ``target`` (a TRL config class), None by default, and our
    stage ``defaults`` on top; TRL's field help becomes ``--help`` text."""
    hints = typing.get_type_hints(target)
    valid = {f.name for f in dataclasses.fields(target) if f.init}
    unknown = set(defaults) - valid
    if unknown:
        raise ConfigError(f"stage defaults {sorted(unknown)} are not options of {target.__name__}")
    fields, choices, no_is_string = [], {}, set()
    for f in dataclasses.fields(target):
        if not f.init or f.name in STAGE_OWNED:
            continue
        tp = hints[f.name]
        trl_default = f.default if f.default is not dataclasses.MISSING else None
        enums = [a for a in (typing.get_args(tp) or (tp,)) if isinstance(a, type) and issubclass(a, enum.Enum)]
        if isinstance(trl_default, (str, enum.Enum)):
            schema_tp = Any  # a str node would turn YAML's `no` (False) into 'False'; __post_init__ maps it
            no_is_string.add(f.name)
        else:
            schema_tp = _schema_type(tp)
        if enums:
            choices[f.name] = [str(e.value) for e in enums[0]]
        help_text = " ".join(str(f.metadata.get("help", "")).split())
        if trl_default is not None:
            help_text += f" [TRL default: {getattr(trl_default, 'value', trl_default)!r}]"
        metadata = {"help": help_text, "hashed": f.name not in LOGGING_OPTIONS and not f.name.startswith(LOGGING_PREFIXES)}
        default = defaults.get(f.name)
        spec = (field(default_factory=lambda v=default: _copy(v), metadata=metadata) if isinstance(default, (list, dict))
                else field(default=default, metadata=metadata))
        fields.append((f.name, schema_tp, spec))
    name = f"{target.__name__}Options"
    cls = dataclasses.make_dataclass(name, fields, bases=(TrainerOptions,), namespace={
        "target": target, "section": section, "_choices": choices, "_no_is_string": frozenset(no_is_string),
        "__doc__": f"Options of {target.__module__.split('.')[0]}.{target.__name__} (null = its default).",
    })
    cls.__module__ = __name__
    return cls


def trainer_args(config_cls: type[T], options: dict[str, Any], section: str = "train", **fixed: Any) -> T:
    """Build a TRL/transformers config class from ``options``, rejecting unknown keys with the closest name.

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
    options = {k: "no" if v is False and isinstance(valid[k].default, (str, enum.Enum)) else v
               for k, v in options.items()}
    kwargs = {**fixed, **options}
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad value in '{section}': {str(exc).splitlines()[0]}") from exc


def _type_name(tp: Any) -> str:
    if tp is Any:
        return "any"
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (Union, types.UnionType) and len(args) == 1:
        return _type_name(args[0]) + " | None"
    return getattr(tp, "__name__", None) if not typing.get_args(tp) else str(tp).replace("typing.", "")


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
        lines.append(f"  {name} ({_type_name(tp)}, default {default!r})  {f.metadata.get('help', '')}".rstrip())
    return lines
