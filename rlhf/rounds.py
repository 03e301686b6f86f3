"""Iterative RLHF: the pipeline config of each round of ``pipelines.run --rounds N``.

Round k is the usual chain with its artifacts in ``<run_dir>/round-<k>/``: every path under
``run_dir`` moves there, except the SFT policy, which is trained once (``<run_dir>/sft``) and stays
the KL reference and the eval's baseline. From round 2 on the rounds are linked explicitly:

- generate samples from round k-1's ``round_policy`` (PPO by default), on the split's next
  ``generate.num_prompts`` prompts (``prompt_offset``), so every round labels fresh prompts;
- the reward model retrains on the labels of rounds 1..k: round k's preferences plus the earlier
  rounds' as ``reward.extra_preferences`` (each one an input recorded in the manifest);
- PPO and DPO start from their own round k-1 policy, with the SFT policy as the KL reference
  (``round_reference: sft``) or the starting policy itself (``previous``); the other optimizers
  start from SFT each round, on the round's reward model.

Each round's eval compares its policies with SFT on the same held-out prompts, so gold reward and KL
are comparable across rounds (rlhf/evaluation/rounds.py reads them into the report).
"""

from __future__ import annotations

import copy
import dataclasses
from typing import TYPE_CHECKING, Any

from rlhf.config import ConfigError
from rlhf.preferences.selection import NEEDS_REWARD_MODEL

if TYPE_CHECKING:
    from rlhf.pipeline import PipelineConfig

SHARED = ("sft",)  # stages trained once, before the rounds, in <run_dir>/<stage>
CONTINUED = ("ppo", "dpo")  # optimizers that start round k from their round k-1 policy (they take a reference)
ROUND_POLICIES = ("sft", "ppo", "dpo", "rloo", "grpo", "online_dpo", "rejection_sampling")


def round_dir(run_dir: str, k: int) -> str:
    return f"{run_dir.rstrip('/')}/round-{k}"


def validate_rounds(config: PipelineConfig) -> None:
    if config.rounds < 1:
        raise ConfigError(f"rounds={config.rounds} must be >= 1 (1 = a single run, the usual layout)")
    if config.labels_per_round is not None and config.labels_per_round < 1:
        raise ConfigError(f"labels_per_round={config.labels_per_round} must be >= 1, or null for generate.num_prompts")
    if config.rounds > 1:
        if config.round_policy not in ROUND_POLICIES or config.round_policy not in config.stages:
            raise ConfigError(f"round_policy={config.round_policy}: the policy that generates the next round's "
                              f"candidates must be one of the configured stages ({', '.join(config.stages)}) that "
                              f"trains a policy ({', '.join(ROUND_POLICIES)})")
        missing = [s for s in ("generate", "preferences", "reward") if s not in config.stages]
        if missing:
            raise ConfigError(f"rounds={config.rounds} needs the stages {', '.join(missing)} (every round labels "
                              "fresh candidates and retrains the reward model); add them to 'stages' or set rounds=1")


def _rebase(value: Any, old: str, new: str, keep: tuple[str, ...]) -> Any:
    """``value`` with every path under ``old`` (except those under ``keep``) moved under ``new``."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            if f.name != "run_dir":
                setattr(value, f.name, _rebase(getattr(value, f.name), old, new, keep))
        return value
    if isinstance(value, dict):
        return {k: _rebase(v, old, new, keep) for k, v in value.items()}
    if isinstance(value, list):
        return [_rebase(v, old, new, keep) for v in value]
    if isinstance(value, str) and value.startswith(old + "/") and not any(
            value == k or value.startswith(k + "/") for k in keep):
        return new + value[len(old):]
    return value


def round_config(config: PipelineConfig, k: int) -> PipelineConfig:
    """The pipeline config of round ``k`` (1-based) of ``config.rounds`` rounds; ``config`` itself when rounds=1."""
    if config.rounds == 1:
        return config
    base = config.run_dir.rstrip("/")
    shared = tuple(getattr(config, s).output_dir.rstrip("/") for s in SHARED)
    cfg = _rebase(copy.deepcopy(config), base, round_dir(base, k), shared)
    cfg.stages = [s for s in config.stages if k == 1 or s not in SHARED]
    if k > 1:
        cfg.generate.prompt_offset = (config.generate.prompt_offset or 0) + (k - 1) * config.generate.num_prompts
    if "select" in config.stages and cfg.select.reward_model == cfg.reward.output_dir:
        # Selection runs before the round's reward model exists: it scores with the previous round's,
        # and round 1, with no reward model yet, picks its pairs at random (the usual seed set).
        cfg.select.reward_model = round_config(config, k - 1).reward.output_dir if k > 1 else None
        if k == 1 and cfg.select.selection.strategy in NEEDS_REWARD_MODEL:
            cfg.select.selection.strategy = "random"
    if k == 1:
        return cfg
    previous = round_config(config, k - 1)
    cfg.generate.policy = getattr(previous, config.round_policy).output_dir
    for name in CONTINUED:
        if name in config.stages:
            section = getattr(cfg, name)
            section.reference = (section.reference or section.policy) if config.round_reference == "sft" else None
            section.policy = getattr(previous, name).output_dir
    cfg.reward.extra_preferences = [round_config(config, j).preferences.output_dir for j in range(1, k)]
    return cfg
