"""The reward-KL frontier sweep over seeds (issue 12): many policies per method, evaluated identically.

From a finished run's SFT policy and reward model (``base_run``), per seed:

* ``ppo``: one PPO run (the ``ppo`` section, tuned for the KL budget); the policy is evaluated every
  ``snapshot_every`` steps from the stage's ``on_step_end`` hook (no weights are kept);
* ``ppo_long``: PPO run long with a small KL coefficient (``ppo`` plus ``long_run``), for the
  over-optimization curves (Gao et al. 2022 study it that way);
* ``ppo_ensemble``: ``ppo_long`` with an ensemble reward model (trained once by the reward stage with
  ``reward.ensemble_size`` members) combined by ``ensemble_objective`` (Coste et al. 2024);
* ``dpo``: one DPO run per beta in ``dpo_betas``, the live policy scored at ``dpo_snapshots`` steps;
* ``best_of_n``: n samples of the SFT policy, the reward model's best, for every n in ``best_of_n``;
* ``best_of_n_ensemble``: the same samples, the best by the ensemble reward model of ``ppo_ensemble``;
* any of rloo, grpo, online_dpo, rejection_sampling listed in ``methods``: one point each.

Every point is scored the same way (``rlhf.evaluation.rollouts.sample_and_score``): the same held-out
prompts, one sampling setting, the eval sampling seed of its run seed, exact KL to the SFT policy,
gold reward, the base run's reward model as the proxy score, well-formedness, repeated 3-grams, length.

Each (method, seed, setting) point is saved as its own JSON file in the work dir the moment it is
measured; a re-run skips every finished point (and training runs whose points are all there), so a
killed sweep resumes. The ``frontier`` artifact (points, per-setting aggregates across seeds, plots,
report.md) is written atomically at the end.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch

from rlhf.artifacts import Artifact, ArtifactError, open_artifact, write_artifact
from rlhf.best_of_n import sample_pool
from rlhf.config import ConfigError, DataConfig, config_hash, option
from rlhf.data import held_out_prompts
from rlhf.evaluation.metrics import repeated_ngram_rate, t_interval
from rlhf.evaluation.rollouts import PolicySamples, sample_and_score
from rlhf.logprobs import best_of_n_kl_bound, best_of_n_kl_estimate
from rlhf.models import load_causal_lm, load_tokenizer
from rlhf.pipeline import load_sectioned_config
from rlhf.reward_model import EnsembleObjective, RewardModel
from rlhf.sampling import SamplingConfig, join
from rlhf.stage import run_stage
from rlhf.stages import dpo, grpo, online_dpo, ppo, rejection_sampling, reward, rloo
from rlhf.tasks.reviews import is_well_formed

KIND = "frontier"
BASE_RUN_COMMAND = "python -m pipelines.run --config configs/tiny/pipeline.yaml"
SWEPT = ("ppo", "ppo_long", "ppo_ensemble", "dpo", "best_of_n", "best_of_n_ensemble")
SNAPSHOT_RUNS = ("ppo", "ppo_long", "ppo_ensemble", "dpo")  # scored along one training run per seed
SINGLE_POINT = {"rloo": rloo, "grpo": grpo, "online_dpo": online_dpo, "rejection_sampling": rejection_sampling}
SECTIONS = {"ppo": ppo, "dpo": dpo, "reward": reward, **SINGLE_POINT}
BON_KL_NOTE = ("best-of-n KL: the analytic log n - (n-1)/n, an UPPER bound on KL(best-of-n || SFT) (Beirami et al. "
               "2024); kl_estimate is the exact best-of-n KL over each prompt's pool of max(n) samples (plug-in, "
               "<= log max(n), biased low as n nears the pool size)")


@dataclass
class EvalSettings:
    data: DataConfig = option(DataConfig(), "the task; its held-out split gives the prompts")
    num_prompts: int = option(64, "held-out prompts every point is evaluated on (one sample each; best-of-n: n)")
    sampling: SamplingConfig = option(SamplingConfig(temperature=1.0, max_new_tokens=32),
                                      "the one sampling setting of every point (plain temperature sampling)")
    seed: int = option(0, "run seed s samples its points under seed + 1000 s (batch b: + b), the same for every method")


@dataclass
class FrontierConfig:
    base_run: str = option("runs/tiny", "a finished run (" + BASE_RUN_COMMAND + "): its sft, reward and "
                           "preferences artifacts are the inputs", hashed=False)
    run_dir: str = option("${base_run}", "the base run again, as the stage sections' ${run_dir}", hashed=False)
    output_dir: str = option("${base_run}/frontier", "where the frontier artifact is written; finished points live in "
                             "<base_run>/.work/<its name>/points until then", hashed=False)
    seeds: list[int] = option([0, 1, 2], "run seeds: training seed of every method and offset of its eval sampling seed")
    methods: list[str] = option(["ppo", "dpo", "best_of_n"], f"any of {', '.join([*SWEPT, *SINGLE_POINT])}")
    recipes: dict[str, str] = option({}, "section -> stage YAML recipe loaded into that section before this file")
    eval: EvalSettings = option(EvalSettings(), "how every point is evaluated")
    snapshot_every: int = option(5, "PPO: evaluate the policy every this many steps (and at the last)")
    long_run: dict[str, Any] = option(
        {"kl_coef": 0.02, "total_episodes": 2560}, "ppo_long and ppo_ensemble: PPO fields that differ from the ppo "
        "section (a small KL coefficient, more steps: the over-optimization run)")
    dpo_betas: list[float] = option([0.03, 0.1, 0.3, 1.0], "DPO: one run per beta (train.beta)")
    dpo_snapshots: int = option(3, "DPO: the policy is scored at this many evenly spaced steps of each run (the "
                                "last one the trained policy)")
    best_of_n: list[int] = option([1, 2, 4, 8, 16, 32, 64], "best-of-n: the n values (one pool of max(n) samples per prompt)")
    ensemble_objective: str = option("worst_case", "ppo_ensemble, best_of_n_ensemble: reward_ensemble.objective (mean, "
                                     "worst_case, uncertainty_weighted) over the reward section's ensemble_size members")
    kl_budget: float = option(3.0, "the report's table: per method the best setting whose seed-mean KL is within this (nats)")
    min_well_formed: float = option(0.0, "the report's table counts a setting only if its seed-mean well-formed "
                                    "fraction is at least this (0 = no floor): a gain bought with broken text does not")
    confidence: float = option(0.95, "confidence level of the t-intervals across seeds")
    ppo: ppo.Config = option(ppo.Config(), "PPO section (policy/reward_model default to the base run's)")
    dpo: dpo.Config = option(dpo.Config(), "DPO section; train.beta is swept over dpo_betas")
    reward: reward.Config = option(reward.Config(ensemble_size=3), "reward section: the ensemble reward model for ppo_ensemble")
    rloo: rloo.Config = option(rloo.Config(), "RLOO section (methods: rloo)")
    grpo: grpo.Config = option(grpo.Config(), "GRPO section (methods: grpo)")
    online_dpo: online_dpo.Config = option(online_dpo.Config(), "online DPO section (methods: online_dpo)")
    rejection_sampling: rejection_sampling.Config = option(
        rejection_sampling.Config(), "rejection-sampling section (methods: rejection_sampling)")


def load_frontier_config(config_file: str | None, overrides: list[str]) -> FrontierConfig:
    config = load_sectioned_config(FrontierConfig, SECTIONS, config_file, overrides)
    unknown = [m for m in config.methods if m not in (*SWEPT, *SINGLE_POINT)]
    if unknown:
        raise ConfigError(f"unknown method(s) in 'methods': {', '.join(unknown)}. Valid: {', '.join([*SWEPT, *SINGLE_POINT])}")
    if not config.seeds:
        raise ConfigError("seeds is empty: give at least one, e.g. seeds=[0,1,2]")
    if config.eval.sampling.top_p != 1.0 or config.eval.sampling.top_k != 0:
        raise ConfigError("exact KL needs plain temperature sampling: set eval.sampling.top_p=1.0 eval.sampling.top_k=0")
    if min(config.best_of_n, default=1) < 1:
        raise ConfigError(f"best_of_n={config.best_of_n}: every n must be >= 1")
    if not 0.0 <= config.min_well_formed <= 1.0:
        raise ConfigError(f"min_well_formed={config.min_well_formed}: a fraction, e.g. 0.7 for 70 % well-formed samples")
    if config.dpo_snapshots < 1 or config.snapshot_every < 1:
        raise ConfigError(f"dpo_snapshots={config.dpo_snapshots}, snapshot_every={config.snapshot_every}: "
                          "both must be >= 1")
    return config


# ------------------------------------------------------------------------------------------------
# Finished points: one small JSON file each, written atomically.


class PointStore:
    """``<dir>/<method>-<version>/seed<seed>/<setting>.json`` per point; a point on disk is never recomputed.

    ``versions`` (``point_versions``) names each method's folder after a hash of everything its points
    depend on, so after a recipe or base-run change the old points are simply not read.
    """

    def __init__(self, root: str | Path, versions: dict[str, str] | None = None):
        self.root = Path(root)
        self.versions = versions or {}

    def folder(self, method: str) -> Path:
        version = self.versions.get(method)
        return self.root / (f"{method}-{version}" if version else method)

    def path(self, method: str, seed: int, setting: str) -> Path:
        return self.folder(method) / f"seed{seed}" / f"{setting}.json"

    def has(self, method: str, seed: int, setting: str) -> bool:
        return self.path(method, seed, setting).is_file()

    def put(self, point: dict[str, Any]) -> None:
        path = self.path(point["method"], point["seed"], point["setting"])
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(point))
        os.replace(tmp, path)  # a kill mid-write leaves no half point

    def get_or_compute(self, method: str, seed: int, setting: str, compute: Callable[[], dict[str, Any]]) -> dict:
        if not self.has(method, seed, setting):
            self.put({"method": method, "seed": seed, "setting": setting, **compute()})
        return json.loads(self.path(method, seed, setting).read_text())

    def all(self, methods: Iterable[str] | None = None) -> list[dict[str, Any]]:
        folders = [self.folder(m) for m in methods] if methods is not None else sorted(self.root.glob("*"))
        return [json.loads(p.read_text()) for folder in folders for p in sorted(folder.glob("seed*/*.json"))]


def point_versions(config: "FrontierConfig", inputs: dict[str, Artifact]) -> dict[str, str]:
    """Per method, a hash of what its points depend on: the base run's artifacts, the eval settings, its section."""
    common = {"inputs": {name: art.fingerprint for name, art in inputs.items()}, "eval": config.eval}
    sections: dict[str, dict] = {
        "sft": {}, "best_of_n": {}, "ppo": {"ppo": config.ppo}, "dpo": {"dpo": config.dpo},
        "ppo_long": {"ppo": long_run(config)},
        "ppo_ensemble": {"ppo": long_run(config), "reward": config.reward, "objective": config.ensemble_objective},
        "best_of_n_ensemble": {"reward": config.reward, "objective": config.ensemble_objective},
        **{m: {m: getattr(config, m)} for m in SINGLE_POINT}}
    return {method: config_hash({**common, **part})[:8] for method, part in sections.items()}


def long_run(config: "FrontierConfig") -> ppo.Config:
    """The PPO section of ppo_long / ppo_ensemble: ``ppo`` with the ``long_run`` fields."""
    unknown = sorted(set(config.long_run) - {f for f in ppo.Config.__dataclass_fields__})
    if unknown:
        raise ConfigError(f"long_run: unknown PPO field(s) {', '.join(unknown)}; use fields of the ppo section, "
                          "e.g. long_run.kl_coef=0.02")
    return replace(config.ppo, **config.long_run)


# ------------------------------------------------------------------------------------------------
# Scoring one policy the common way.


def sample_summary(samples: PolicySamples) -> dict[str, float]:
    """Per-seed means over the eval prompts (the unit the across-seed intervals are taken over)."""
    mean = lambda xs: float(np.mean(xs))  # noqa: E731
    return {
        "gold": mean(samples.gold), "rm": mean(samples.rm), "kl": mean(samples.kl),
        "well_formed": mean([float(is_well_formed(r)) for r in samples.responses]),
        "repeated_3grams": mean([repeated_ngram_rate(r, 3) for r in samples.responses]),
        "length": mean(samples.lengths),
    }


@dataclass
class Evaluator:
    """The shared instruments: prompts, tokenizer, the SFT reference and the proxy reward model."""

    prompts: list[str]
    tokenizer: Any
    reference: Any
    reward_model: RewardModel
    sampling: SamplingConfig
    eval_seed: int

    def seed_of(self, seed: int) -> int:
        return self.eval_seed + 1000 * seed

    def policy(self, model, seed: int) -> dict[str, float]:
        """Score a live or loaded policy (it is moved to the reference's device)."""
        model = model.to(next(self.reference.parameters()).device)
        was_training = model.training
        samples = sample_and_score(model, self.tokenizer, self.prompts, self.sampling, self.seed_of(seed),
                                   reference=self.reference, reward_model=self.reward_model)
        model.train(was_training)
        return sample_summary(samples)


@dataclass
class BestOfNPool:
    """max(n) SFT samples per prompt (consecutive rows) with gold and proxy scores, and the time they took."""

    samples: PolicySamples
    size: int
    seconds: float


def best_of_n_pool(ev: Evaluator, sft, seed: int, size: int) -> BestOfNPool:
    start = time.perf_counter()
    # No reference pass: the pool IS the SFT policy's samples (per-sample KL 0); the chosen sample's own
    # per-token KL would not be the KL of the best-of-n policy either.
    samples = sample_pool(sft, ev.tokenizer, ev.prompts, ev.sampling, ev.seed_of(seed), size, ev.reward_model)
    return BestOfNPool(samples, size, time.perf_counter() - start)


def best_of_n_points(pool: BestOfNPool, ns: list[int], chooser: RewardModel | None = None) -> Iterable[dict[str, Any]]:
    """Best-of-n for every n: the best of each prompt's first n pool samples by ``chooser`` (default: the
    proxy reward model). The points' ``rm`` is always the proxy's score."""
    samples, seconds = pool.samples, pool.seconds
    if chooser is None:
        choice = samples.rm
    else:
        start = time.perf_counter()
        choice = chooser.score([join(p, r) for p, r in zip(samples.prompts, samples.responses)]).tolist()
        seconds += time.perf_counter() - start
    for n in ns:
        rows = [range(i, i + n) for i in range(0, len(samples.prompts), pool.size)]
        best = [max(r, key=choice.__getitem__) for r in rows]
        chosen = samples.select(best)
        chosen.kl = [best_of_n_kl_bound(n)] * len(best)
        estimate = float(np.mean([best_of_n_kl_estimate([choice[i] for i in r], [samples.responses[i] for i in r], n)
                                  for r in rows]))
        yield {"x": n, **sample_summary(chosen), "kl_estimate": estimate, "wall_time_s": seconds * n / pool.size,
               "tokens_generated": samples.num_tokens(i for r in rows for i in r)}


# ------------------------------------------------------------------------------------------------
# The sweep.


def work_root(config: FrontierConfig) -> Path:
    """Like ``rlhf.artifacts.work_dir``: outside the artifact, under the base run, so a kill loses nothing."""
    return Path(config.base_run) / ".work" / Path(config.output_dir).name


def base_inputs(config: FrontierConfig) -> dict[str, Artifact]:
    """The base run's artifacts; a missing one is one line naming the command that makes it."""
    needed = {"sft": "sft", "reward": "reward"}
    if {"dpo"} & set(config.methods):
        needed["preferences"] = "preferences"
    out = {}
    for name, kind in needed.items():
        try:
            out[name] = open_artifact(Path(config.base_run) / name, kind)
        except ArtifactError as exc:
            raise ArtifactError(f"the frontier sweep needs a finished base run at {config.base_run} ({exc}) "
                                f"Run: {BASE_RUN_COMMAND} run_dir={config.base_run}") from None
    return out


def seeded(section: Any, seed: int, output_dir: Path, run_dir: Path, **fields: Any) -> Any:
    """A stage config for one run seed, writing under the sweep's work dir."""
    cfg = replace(section, run_dir=str(run_dir), output_dir=str(output_dir), **fields)
    if hasattr(cfg, "seed"):
        cfg = replace(cfg, seed=seed)
    if hasattr(cfg, "train") and hasattr(cfg.train, "seed"):
        cfg = replace(cfg, train=replace(cfg.train, seed=seed))
    return cfg


def dpo_setting(beta: float, k: int, n: int) -> str:
    return f"beta{beta:g}-at{k}of{n}"


def curve_of(row: dict[str, Any]) -> str:
    """The frontier plot's curve of a point or row: one per method, and one per beta for DPO's snapshot runs."""
    if row["method"] == "dpo" and "-at" in row["setting"]:
        return f"dpo (beta {row['setting'].split('-at')[0].removeprefix('beta')})"
    return row["method"]


def ppo_snapshot_steps(config: FrontierConfig, section: ppo.Config) -> list[int]:
    """The PPO steps scored: every ``snapshot_every`` and the last."""
    steps = section.total_episodes // section.rollout_batch_size
    return sorted({s for s in range(config.snapshot_every, steps + 1, config.snapshot_every)} | {steps})


def wanted_settings(config: FrontierConfig) -> dict[str, set[str]]:
    """Per method the settings this config asks for: the report shows these only, not points an earlier
    config of the same version left (a beta or an n taken out of the lists, a coarser ``snapshot_every``)."""
    ppo_steps = lambda section: {f"step{s:05d}" for s in ppo_snapshot_steps(config, section)}  # noqa: E731
    return {
        "sft": {"sft"}, "ppo": ppo_steps(config.ppo), "ppo_long": ppo_steps(long_run(config)),
        "ppo_ensemble": ppo_steps(long_run(config)), "best_of_n": {f"n{n:03d}" for n in config.best_of_n},
        "best_of_n_ensemble": {f"n{n:03d}" for n in config.best_of_n},
        "dpo": {dpo_setting(b, k, config.dpo_snapshots) for b in config.dpo_betas for k in range(1, config.dpo_snapshots + 1)},
        **{m: {"final"} for m in SINGLE_POINT}}


def dpo_points(config: FrontierConfig, ev: Evaluator, store: PointStore, seed: int, section: dpo.Config,
               inputs: dict[str, Artifact], log: Callable[[str], None]) -> None:
    """One DPO run at ``section.train.beta``; the on_step_end hook scores the live policy at
    ``dpo_snapshots`` evenly spaced steps (the last one the trained policy): a curve from one run.

    DPO has no mid-run checkpoint here, so a killed run trains again; its finished points are kept."""
    beta, n = section.train.beta, config.dpo_snapshots
    if all(store.has("dpo", seed, dpo_setting(beta, k, n)) for k in range(1, n + 1)):
        return
    clock = {"start": time.perf_counter(), "eval": 0.0}

    def on_step_end(step: int, trainer) -> None:
        total = trainer.state.max_steps
        at = {max(1, round(total * k / n)): k for k in range(1, n + 1)}
        if step not in at:
            return
        started = time.perf_counter()
        train_time = started - clock["start"] - clock["eval"]
        store.get_or_compute("dpo", seed, dpo_setting(beta, at[step], n), lambda: {
            "x": step, **ev.policy(trainer.model, seed), "wall_time_s": train_time, "tokens_generated": 0})
        clock["eval"] += time.perf_counter() - started
        log(f"[frontier] dpo seed {seed} beta {beta:g} step {step}/{total} scored")

    dpo.run(section, {"policy": inputs["sft"], "preferences": inputs["preferences"]}, on_step_end=on_step_end)


def ppo_points(config: FrontierConfig, ev: Evaluator, store: PointStore, method: str, seed: int,
               section: ppo.Config, inputs: dict[str, Artifact], log: Callable[[str], None]) -> None:
    """One PPO run; the on_step_end hook scores the live policy every snapshot_every steps.

    Its run directory carries the point version, so a killed run resumes only under the same settings."""
    steps = section.total_episodes // section.rollout_batch_size
    wanted = ppo_snapshot_steps(config, section)
    if all(store.has(method, seed, f"step{s:05d}") for s in wanted):
        return
    clock = {"start": time.perf_counter(), "eval": 0.0, "offset": None}

    def on_step_end(step: int, trainer) -> None:
        if clock["offset"] is None:  # resumed after a kill: continue the training clock of the last point
            earlier = [p for p in store.all([method]) if p["seed"] == seed and p["x"] < step]
            clock["offset"] = max((p["wall_time_s"] for p in earlier), default=0.0)
        if step not in wanted:
            return
        started = time.perf_counter()
        lengths = [h["val/response_length"] for h in trainer.history if "val/response_length" in h]
        train_time = clock["offset"] + started - clock["start"] - clock["eval"]
        store.get_or_compute(method, seed, f"step{step:05d}", lambda: {
            "x": step, **ev.policy(trainer.policy(), seed), "wall_time_s": train_time,
            "tokens_generated": int(step * section.rollout_batch_size * (np.mean(lengths) if lengths else 0))})
        clock["eval"] += time.perf_counter() - started
        log(f"[frontier] {method} seed {seed} step {step}/{steps} scored")

    ppo.run(section, {"policy": inputs["sft"], "reward_model": inputs["reward_model"]}, on_step_end=on_step_end)


def ensemble_reward_model(config: FrontierConfig, inputs: dict[str, Artifact], runs: Path,
                          log: Callable[[str], None]) -> Artifact:
    """The reward section's ensemble, trained on the base run's preferences; its folder is named after what it
    depends on, so every method and sweep setting that needs it shares one (reused while up to date)."""
    version = config_hash({"reward": config.reward, "inputs": {n: a.fingerprint for n, a in inputs.items()}})[:8]
    output_dir = runs / f"reward-ensemble-{version}"
    cfg = replace(config.reward, run_dir=str(runs), output_dir=str(output_dir),
                  base=str(inputs["sft"].path), reference=str(inputs["sft"].path),
                  preferences=str(Path(config.base_run) / "preferences"))
    return run_stage(reward, cfg, log=log)


def ensemble_objective(config: FrontierConfig) -> EnsembleObjective:
    """The ppo section's reward_ensemble with the sweep's ``ensemble_objective``."""
    return replace(config.ppo.reward_ensemble, objective=config.ensemble_objective)


def load_ensemble(artifact: Artifact, config: FrontierConfig, ev: Evaluator) -> RewardModel:
    """The ensemble reward model combined by ``ensemble_objective``, on the evaluator's device."""
    return RewardModel.load(artifact.path, next(ev.reference.parameters()).device, ensemble_objective(config))


def run_frontier(config: FrontierConfig, log: Callable[[str], None] = print,
                 evaluator: Evaluator | None = None) -> Artifact:
    """Run (or resume) every point, then write the frontier artifact."""
    inputs = base_inputs(config)
    work = work_root(config)
    store = PointStore(work / "points", point_versions(config, inputs))
    runs = work / "runs"
    if evaluator is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # where the stages train, too
        tokenizer = load_tokenizer(inputs["sft"].path)
        evaluator = Evaluator(held_out_prompts(config.eval.data, config.eval.num_prompts), tokenizer,
                              load_causal_lm(inputs["sft"].path).to(device).eval(),
                              RewardModel.load(inputs["reward"].path, device), config.eval.sampling, config.eval.seed)
    ev = evaluator
    ensemble, chooser = None, None  # the ensemble reward artifact and, for best-of-n, the loaded model
    pools: dict[int, BestOfNPool] = {}  # the current seed's best-of-n samples (one seed's at a time)
    for seed in config.seeds:
        log(f"=== [frontier] seed {seed} ===")
        store.get_or_compute("sft", seed, "sft", lambda: {"x": 0, **ev.policy(ev.reference, seed),
                                                           "wall_time_s": 0.0, "tokens_generated": 0})
        for method in config.methods:
            if method == "ppo":
                section = seeded(config.ppo, seed, runs / f"{store.folder('ppo').name}-seed{seed}", runs,
                                 policy=str(inputs["sft"].path), reward_model=str(inputs["reward"].path))
                ppo_points(config, ev, store, "ppo", seed, section, {**inputs, "reward_model": inputs["reward"]}, log)
            elif method == "ppo_long":
                section = seeded(long_run(config), seed, runs / f"{store.folder('ppo_long').name}-seed{seed}", runs,
                                 policy=str(inputs["sft"].path), reward_model=str(inputs["reward"].path))
                ppo_points(config, ev, store, "ppo_long", seed, section, {**inputs, "reward_model": inputs["reward"]},
                           log)
            elif method == "ppo_ensemble":
                if not all(store.has("ppo_ensemble", seed, f"step{s:05d}")
                           for s in ppo_snapshot_steps(config, long_run(config))):
                    # one ensemble reward model serves every seed; not even looked up when the points are there
                    ensemble = ensemble or ensemble_reward_model(config, inputs, runs, log)
                    section = seeded(long_run(config), seed, runs / f"{store.folder('ppo_ensemble').name}-seed{seed}",
                                     runs, policy=str(inputs["sft"].path), reward_model=str(ensemble.path),
                                     reward_ensemble=ensemble_objective(config))
                    ppo_points(config, ev, store, "ppo_ensemble", seed, section, {**inputs, "reward_model": ensemble},
                               log)
            elif method == "dpo":
                for beta in config.dpo_betas:
                    section = seeded(config.dpo, seed, runs / f"{store.folder('dpo').name}-seed{seed}-beta{beta:g}", runs,
                                     policy=str(inputs["sft"].path), preferences=str(inputs["preferences"].path))
                    dpo_points(config, ev, store, seed, replace(section, train=replace(section.train, beta=beta)),
                               inputs, log)
            elif method in ("best_of_n", "best_of_n_ensemble"):
                if not all(store.has(method, seed, f"n{n:03d}") for n in config.best_of_n):
                    if method == "best_of_n_ensemble" and chooser is None:
                        ensemble = ensemble or ensemble_reward_model(config, inputs, runs, log)
                        chooser = load_ensemble(ensemble, config, ev)
                    if pools.get(seed) is None:  # best_of_n and best_of_n_ensemble choose from the same samples
                        pools = {seed: best_of_n_pool(ev, ev.reference, seed, max(config.best_of_n))}
                    for point in best_of_n_points(pools[seed], sorted(config.best_of_n),
                                                  chooser if method == "best_of_n_ensemble" else None):
                        store.get_or_compute(method, seed, f"n{point['x']:03d}", lambda point=point: point)
            else:
                stage = SINGLE_POINT[method]
                def single_point(stage=stage, method=method):
                    section = seeded(getattr(config, method), seed, runs / f"{store.folder(method).name}-seed{seed}", runs,
                                     policy=str(inputs["sft"].path), reward_model=str(inputs["reward"].path))
                    art = run_stage(stage, section, log=log)
                    return {"x": 0, **ev.policy(load_causal_lm(art.path).eval(), seed),
                            "wall_time_s": art.manifest["wall_time_s"],
                            "tokens_generated": art.metrics.get("train/tokens_generated")}
                store.get_or_compute(method, seed, "final", single_point)
            log(f"[frontier] {method} seed {seed}: done")
    wanted = wanted_settings(config)
    points = [p for p in store.all(["sft", *config.methods]) if p["seed"] in config.seeds and p["setting"] in wanted[p["method"]]]
    return write_frontier(config, points, inputs)


# ------------------------------------------------------------------------------------------------
# Aggregation across seeds (pure functions).

METRICS = ("gold", "gain", "rm", "rm_gain", "kl", "kl_estimate", "well_formed", "repeated_3grams", "length",
           "wall_time_s", "tokens_generated")


def with_gains(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each point's gold and RM gain over the SFT policy of the same seed (same prompts, same sampling seed)."""
    sft = {p["seed"]: p for p in points if p["method"] == "sft"}
    out = []
    for p in points:
        if p["seed"] not in sft:
            raise ValueError(f"no sft point for seed {p['seed']}: the gain over SFT is paired by seed")
        out.append({**p, "gain": p["gold"] - sft[p["seed"]]["gold"], "rm_gain": p["rm"] - sft[p["seed"]]["rm"]})
    return out


def aggregate(points: list[dict[str, Any]], confidence: float = 0.95) -> list[dict[str, Any]]:
    """One row per (method, setting): every metric's mean and t-interval across seeds, sorted by mean KL."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for p in with_gains(points):
        groups.setdefault((p["method"], p["setting"]), []).append(p)
    rows = []
    for (method, setting), group in groups.items():
        row = {"method": method, "setting": setting, "x": group[0]["x"], "seeds": sorted(p["seed"] for p in group)}
        for m in METRICS:
            values = [p[m] for p in group if p.get(m) is not None]
            row[m] = t_interval(values, confidence).as_dict() if values else None
        rows.append(row)
    return sorted(rows, key=lambda r: (r["method"], r["kl"]["mean"], str(r["x"])))


def best_within_budget(rows: list[dict[str, Any]], budget: float,
                       min_well_formed: float = 0.0) -> dict[str, dict[str, Any]]:
    """Per method the setting with the highest mean gold gain among those whose mean KL is <= budget and whose
    mean well-formed fraction is >= min_well_formed."""
    best: dict[str, dict] = {}
    for row in rows:
        if within_budget(row, budget, min_well_formed) and (
                row["method"] not in best or row["gain"]["mean"] > best[row["method"]]["gain"]["mean"]):
            best[row["method"]] = row
    return best


def within_budget(row: dict[str, Any], budget: float, min_well_formed: float = 0.0) -> bool:
    return row["kl"]["mean"] <= budget and row["well_formed"]["mean"] >= min_well_formed


def run_ends(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per snapshot curve (PPO runs, each DPO beta) the row of its last snapshot: the policy the run trained,
    chosen by nobody, beside the budget table's best snapshot, which is chosen on the same samples."""
    ends: dict[str, dict] = {}
    for row in rows:
        if row["method"] in SNAPSHOT_RUNS and (curve_of(row) not in ends or row["x"] > ends[curve_of(row)]["x"]):
            ends[curve_of(row)] = row
    return ends


def drop_from_peak(points: list[dict[str, Any]], method: str, budget: float | None = None) -> list[float]:
    """Per seed: the highest gold gain along the run minus the last one (within ``budget`` KL if given)."""
    drops = []
    for seed in sorted({p["seed"] for p in points if p["method"] == method}):
        run = sorted((p for p in with_gains(points) if p["method"] == method and p["seed"] == seed
                      and (budget is None or p["kl"] <= budget)), key=lambda p: p["x"])
        if run:
            drops.append(max(p["gain"] for p in run) - run[-1]["gain"])
    return drops


# ------------------------------------------------------------------------------------------------
# The artifact: points, aggregates, plots, report.


def write_frontier(config: FrontierConfig, points: list[dict[str, Any]], inputs: dict[str, Artifact]) -> Artifact:
    from rlhf.frontier_report import render  # plotting only at the end

    rows = aggregate(points, config.confidence)
    with write_artifact(config.output_dir, KIND, config, inputs) as out:
        (out.path / "points.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))
        (out.path / "curves.json").write_text(json.dumps(rows, indent=2))
        summary = render(config, points, rows, out.path)
        out.metrics.update(summary)
    return open_artifact(config.output_dir, KIND)
