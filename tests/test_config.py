"""Config system: YAML + dotted overrides, one-line errors naming the key, typed trainer sections, the hash."""

import dataclasses
import subprocess
import sys

import pytest
from trl import DPOConfig, SFTConfig

from rlhf.config import ConfigError, config_hash, load_config
from rlhf.stages import ppo, reward, sft


def run_cli(*args, stage="sft"):
    return subprocess.run([sys.executable, "-m", f"pipelines.{stage}", *args], capture_output=True, text=True,
                          timeout=120)


def test_yaml_then_overrides_win():
    cfg = load_config(sft.Config, "configs/tiny/sft.yaml", ["train.learning_rate=3e-4", "model.tiny.n_layer=3"])
    assert cfg.train.learning_rate == pytest.approx(3e-4)
    assert cfg.model.tiny.n_layer == 3
    assert cfg.output_dir == "runs/tiny/sft"  # interpolated from run_dir


def test_unknown_key_names_key_and_suggestion():
    with pytest.raises(ConfigError, match=r"model\.tiny\.n_lyer.*Did you mean 'n_layer'"):
        load_config(sft.Config, None, ["model.tiny.n_lyer=3"])


def test_wrong_type_names_key():
    with pytest.raises(ConfigError, match=r"model\.tiny\.n_layer"):
        load_config(sft.Config, None, ["model.tiny.n_layer=three"])


def test_missing_file():
    with pytest.raises(ConfigError, match="config file not found: nope.yaml"):
        load_config(sft.Config, "nope.yaml")


def test_unknown_trainer_option_fails_at_load_with_closest_name():
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.learnig_rate'.*Did you mean 'learning_rate'"):
        load_config(sft.Config, "configs/tiny/sft.yaml", ["train.learnig_rate=0.01"])


def test_trainer_section_keeps_our_defaults_and_builds_the_trl_config():
    cfg = load_config(sft.Config, None, ["train.max_length=32"])
    args = cfg.train.build(output_dir="/tmp/x", bf16=False)
    assert isinstance(args, SFTConfig)
    assert args.learning_rate == pytest.approx(1e-3) and args.lr_scheduler_type == "cosine"  # our stage defaults
    assert args.max_length == 32 and args.output_dir == "/tmp/x"


def test_null_removes_a_stage_default_so_trl_default_applies():
    cfg = load_config(sft.Config, None, ["train.lr_scheduler_type=null"])
    trl_default = SFTConfig.__dataclass_fields__["lr_scheduler_type"].default
    assert cfg.train.build(output_dir="/tmp/x", bf16=False).lr_scheduler_type == trl_default != "cosine"


def test_bad_choice_of_a_trainer_enum_names_key_and_choices():
    with pytest.raises(ConfigError, match=r"train\.eval_strategy.*'sometimes'.*no, steps, epoch"):
        load_config(sft.Config, None, ["train.eval_strategy=sometimes"])


@pytest.mark.parametrize("override, key", [("kl_estimator=k2", "kl_estimator"), ("value_model=both", "value_model"),
                                           ("stop_token=eot", "stop_token")])
def test_choices_are_checked_at_load(override, key):
    with pytest.raises(ConfigError, match=rf"bad value for '{key}'.*expected one of"):
        load_config(ppo.Config, None, [override])


def test_yaml_no_means_the_string_no_for_strategy_options():
    cfg = load_config(sft.Config, "configs/tiny/sft.yaml", ["train.eval_strategy=no", "train.save_strategy=no"])
    assert cfg.train.eval_strategy == "no"
    args = cfg.train.build(output_dir="/tmp/x", bf16=False)
    assert args.eval_strategy == "no" and args.save_strategy == "no"


def test_user_checkpointing_choice_beats_hardware_default():
    cfg = load_config(sft.Config, None, ["train.gradient_checkpointing=true"])
    args = cfg.train.build(output_dir="/tmp/x", report_to=[], bf16=False, activation_checkpointing=False)
    assert args.activation_checkpointing is True


@pytest.mark.parametrize(
    "args, key",
    [
        (["--config", "configs/tiny/sft.yaml", "trian.learning_rate=1"], "trian"),
        (["--config", "configs/tiny/sft.yaml", "seed=abc"], "seed"),
        (["--config", "configs/tiny/missing.yaml"], "configs/tiny/missing.yaml"),
        (["--config", "configs/tiny/sft.yaml", "train.not_an_option=1", "--print-config"], "train.not_an_option"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(args, key):
    result = run_cli(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and key in lines[0]


def test_cli_help_and_print_config():
    help_text = run_cli("--help").stdout
    assert "model.tiny.n_layer" in help_text and "default" in help_text
    printed = run_cli("--config", "configs/tiny/sft.yaml", "seed=7", "--print-config").stdout
    assert "seed: 7" in printed and "output_dir: runs/tiny/sft" in printed


def test_dpo_help_lists_dpo_config_fields_with_trl_help():
    help_text = run_cli("--help", stage="dpo").stdout
    for name in ("beta", "loss_type", "learning_rate", "gradient_accumulation_steps"):
        trl_help = " ".join(DPOConfig.__dataclass_fields__[name].metadata["help"].split())
        assert f"train.{name} (" in help_text and trl_help[:60] in help_text


def _hash(cls, *overrides):
    return config_hash(load_config(cls, None, list(overrides)))


@pytest.mark.parametrize("overrides", [
    ["run_dir=/elsewhere/run"],  # moves output_dir and every ${run_dir}/... input path with it
    ["output_dir=/elsewhere/sft"], ["resume=false"], ["train.logging_steps=1"], ["train.report_to=[wandb]"],
])
def test_bookkeeping_does_not_change_the_hash(overrides):
    assert _hash(sft.Config, *overrides) == _hash(sft.Config)


def test_what_changes_the_result_changes_the_hash():
    assert _hash(sft.Config, "train.learning_rate=0.5") != _hash(sft.Config)
    assert _hash(ppo.Config, "kl_coef=0.5") != _hash(ppo.Config)
    # reward.base may be a hub model (not an artifact with a fingerprint): then its name counts
    assert _hash(reward.Config, "base=gpt2") != _hash(reward.Config, "base=distilgpt2")
    assert _hash(reward.Config, "run_dir=/a", "preferences=/b/prefs") == _hash(reward.Config)


def test_ppo_hyperparameters_are_top_level_in_the_stage_config():
    cfg = load_config(ppo.Config, "configs/tiny/ppo.yaml", ["kl_coef=0.3"])
    assert cfg.kl_coef == pytest.approx(0.3) and cfg.rollout_batch_size == 64
    assert "ppo" not in {f.name for f in dataclasses.fields(ppo.Config)}
