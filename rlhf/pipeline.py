"""The whole chain: SFT -> generate -> preferences -> reward -> PPO and DPO (or other optimizers) -> eval.

Each stage keeps its own typed config as a section of one pipeline config; all sections share the
pipeline's ``run_dir``, so every stage finds its inputs where the previous stage wrote them.
Stages whose artifacts are up to date are skipped, so a killed run resumes where it stopped.
With ``rounds: N`` the chain runs N times, each round on the previous round's policy and fresh
prompts, in ``<run_dir>/round-<k>/`` (rlhf/rounds.py), and ends with ``<run_dir>/rounds.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Literal

from rlhf.artifacts import ROUND, Artifact
from omegaconf import OmegaConf

from rlhf.config import ConfigError, load_config, load_yaml, option
from rlhf.evaluation.rounds import rounds_rows, rounds_table, write_rounds_report
from rlhf.rounds import round_config, validate_rounds
from rlhf.stage import run_stage
from rlhf.stages import (arena, best_of_n, dpo, eval as eval_stage, generate, grpo, online_dpo, ppo, preferences,
                         rejection_sampling, reward, rloo, select, sft)

STAGES: dict[str, ModuleType] = {
    "sft": sft,
    "generate": generate,
    "select": select,
    "preferences": preferences,
    "reward": reward,
    "ppo": ppo,
    "dpo": dpo,
    "rloo": rloo,
    "grpo": grpo,
    "online_dpo": online_dpo,
    "best_of_n": best_of_n,
    "rejection_sampling": rejection_sampling,
    "eval": eval_stage,
    "arena": arena,
}
# Optional stages: run only when listed in ``stages:`` (and their policy in eval.policies / arena.policies).
OPTIONAL = ("select", "rloo", "grpo", "online_dpo", "best_of_n", "rejection_sampling", "arena")
DEFAULT_STAGES = [name for name in STAGES if name not in OPTIONAL]


@dataclass
class PipelineConfig:
    run_dir: str = option("runs/tiny", "directory for every stage's artifact (shared by all sections)")
    stages: list[str] = option(list(DEFAULT_STAGES), f"stages to run, in order; any of {', '.join(STAGES)}")
    recipes: dict[str, str] = option({}, "stage -> YAML recipe loaded into that section before this file")
    rounds: int = option(
        1, "iterative RLHF: run the chain this many times, each round labelling fresh prompts sampled from the "
        "previous round's policy, in <run_dir>/round-<k>/ (SFT once, in <run_dir>/sft); 1 = one chain, no round dirs")
    round_policy: str = option(
        "ppo", "rounds > 1: the optimizer whose previous-round policy generates the next round's candidates")
    round_reference: Literal["sft", "previous"] = option(
        "sft", "rounds > 1: KL reference of PPO and DPO, which start each round from their previous-round policy: "
        "'sft' keeps the SFT policy; 'previous' moves it to the policy the round starts from")
    labels_per_round: int | None = option(
        None, "items labelled per round (each a ranking of one prompt's candidates): sets generate.num_prompts, or "
        "the select stage's selection.budget when it runs; null = leave those as configured")
    sft: sft.Config = option(sft.Config(), "supervised fine-tuning (pipelines.sft)")
    generate: generate.Config = option(generate.Config(), "candidate generation (pipelines.generate)")
    select: select.Config = option(
        select.Config(), "which candidate pairs to label (pipelines.select; optional: add it to stages after generate)")
    preferences: preferences.Config = option(preferences.Config(), "annotation -> preference pairs")
    reward: reward.Config = option(reward.Config(), "reward model (pipelines.reward)")
    ppo: ppo.Config = option(ppo.Config(), "PPO (pipelines.ppo)")
    dpo: dpo.Config = option(dpo.Config(), "DPO (pipelines.dpo)")
    rloo: rloo.Config = option(rloo.Config(), "RLOO on the reward model (pipelines.rloo)")
    grpo: grpo.Config = option(grpo.Config(), "GRPO on the reward model (pipelines.grpo)")
    online_dpo: online_dpo.Config = option(online_dpo.Config(), "online DPO, the reward model as judge (pipelines.online_dpo)")
    best_of_n: best_of_n.Config = option(best_of_n.Config(), "best-of-n policy (pipelines.best_of_n)")
    rejection_sampling: rejection_sampling.Config = option(
        rejection_sampling.Config(), "rejection-sampling fine-tuning (pipelines.rejection_sampling)")
    eval: eval_stage.Config = option(eval_stage.Config(), "evaluation report (pipelines.eval)")
    arena: arena.Config = option(arena.Config(), "policy arena: blind pairwise votes, Bradley-Terry ratings (pipelines.arena)")


def load_sectioned_config(config_cls: type, sections: dict[str, ModuleType], config_file: str | None,
                          overrides: list[str], run_dir: str = "${run_dir}"):
    """Defaults, then each section's stage recipe (``recipes: {stage: file}``), then this file, then overrides.

    Reusing the per-stage recipes keeps one source of truth for each stage's settings. Every section's
    run_dir follows ``run_dir`` (an interpolation of the top-level config), so one override moves the whole run.
    """
    recipe_layers = []
    if config_file is not None:
        recipes = load_yaml(config_file).get("recipes") or {}
        for name, recipe in recipes.items():
            if name not in sections:
                raise ConfigError(f"unknown stage '{name}' in 'recipes'. Valid stages: {', '.join(sections)}")
            recipe_layers.append(OmegaConf.create({name: load_yaml(recipe)}))
    shared = [f"{name}.run_dir={run_dir}" for name in sections]
    return load_config(config_cls, config_file, [*shared, *overrides], base_layers=recipe_layers)


def load_pipeline_config(config_file: str | None, overrides: list[str]) -> PipelineConfig:
    """The pipeline's config: ``load_sectioned_config`` over every stage."""
    config = load_sectioned_config(PipelineConfig, STAGES, config_file, overrides)
    unknown = [s for s in config.stages if s not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) in 'stages': {', '.join(unknown)}. Valid stages: {', '.join(STAGES)}")
    validate_rounds(config)
    wire_selection(config)
    return config


def wire_selection(config: PipelineConfig) -> None:
    """Derived settings: the label budget, and with a select stage, preferences label what it selected."""
    selecting = "select" in config.stages
    if selecting and config.preferences.candidates == config.generate.output_dir:
        config.preferences.candidates = config.select.output_dir
    if config.labels_per_round is not None:
        if selecting:
            config.select.selection.budget = config.labels_per_round
        else:
            config.generate.num_prompts = config.labels_per_round


def run_pipeline(
    config: PipelineConfig, from_stage: str | None = None, force: bool = False,
    log: Callable[[str], None] = print, before_stage: Callable[[str, PipelineConfig], None] | None = None,
) -> dict[str, Artifact]:
    """Run the configured stages in order; stages from ``from_stage`` on are re-run even if up to date.

    With ``rounds > 1``, the chain of each round in turn (``from_stage`` on in every round), then
    ``<run_dir>/rounds.md``; returns the last round's artifacts. ``before_stage`` gets the round's config.
    """
    if from_stage is not None and from_stage not in config.stages:
        raise ConfigError(f"--from {from_stage}: not one of the configured stages ({', '.join(config.stages)})")
    if config.rounds == 1:
        return run_chain(config, from_stage, force, log, before_stage)
    per_round = []
    for k in range(1, config.rounds + 1):
        log(f"##### round {k}/{config.rounds} #####")
        token = ROUND.set(k)  # recorded in every manifest the round writes
        try:
            per_round.append(run_chain(round_config(config, k), from_stage, force, log, before_stage))
        finally:
            ROUND.reset(token)
    evals = [artifacts["eval"] for artifacts in per_round if "eval" in artifacts]
    if evals:
        report = write_rounds_report(config.run_dir, evals)
        log(f"rounds: {report}\n{rounds_table(rounds_rows(evals))}")
    return per_round[-1]


def run_chain(
    config: PipelineConfig, from_stage: str | None, force: bool, log: Callable[[str], None],
    before_stage: Callable[[str, PipelineConfig], None] | None,
) -> dict[str, Artifact]:
    """One pass over ``config.stages``."""
    rerun = False
    artifacts = {}
    for index, name in enumerate(config.stages, start=1):
        rerun = rerun or name == from_stage
        log(f"=== [{index}/{len(config.stages)}] {name} ===")
        if before_stage is not None:
            before_stage(name, config)
        artifacts[name] = run_stage(STAGES[name], getattr(config, name), force=force or rerun, log=log)
    return artifacts
