"""PPO hyperparameters: one typed dataclass, every field with its meaning and a reference.

Batch sizes are GLOBAL (summed over processes) except ``micro_batch_size``, so the algorithm does
not change with the number of processes: 1 CPU and 8 GPUs run the same PPO, only the number of
gradient-accumulation steps differs. Derived values are computed once, in ``PPOSizes``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

from transformers import SchedulerType

from rlhf.config import ConfigError, option

REFS = "Huang et al. 2023, 'The N Implementation Details of RLHF with PPO'"


@dataclass
class PPOConfig:
    # --- batch sizes (global unless stated) --------------------------------------------------
    rollout_batch_size: int = option(
        64, "episodes (prompts) sampled per PPO step, over all processes (TRL: batch_size)")
    mini_batch_size: int = option(
        32, "episodes per optimizer step, over all processes; rollout_batch_size / mini_batch_size "
        "optimizer steps per epoch (CleanRL: minibatch_size)")
    micro_batch_size: int | None = option(
        None, "episodes per forward/backward on ONE process; gradients are accumulated over "
        "mini_batch_size / (micro_batch_size * processes) micro-batches (TRL: per_device_train_batch_size). "
        "null = the process's whole share of a minibatch, no accumulation: the fastest while it fits in memory")
    forward_batch_size: int = option(
        64, "episodes per no-grad forward (generation, reference, reward) on one process; memory only")
    num_ppo_epochs: int = option(4, "passes over each rollout batch (CleanRL update_epochs; TRL num_ppo_epochs)")
    total_episodes: int = option(
        6400, "episodes to train on; PPO steps = total_episodes // rollout_batch_size (TRL total_episodes)")
    # --- optimisation -------------------------------------------------------------------------
    learning_rate: float = option(3e-6, "AdamW learning rate (TRL PPOv2 default 3e-6 for 1B models)")
    lr_scheduler_type: Literal[tuple(s.value for s in SchedulerType)] = option(  # type: ignore[valid-type]
        "linear", "transformers scheduler name over the PPO steps: linear (anneal to 0, CleanRL "
        "anneal_lr), constant, cosine")
    warmup_steps: int = option(
        0, "learning-rate warmup, counted in PPO steps (rollouts), not optimizer steps or episodes: the "
        "schedule advances once per PPO step, after its update")
    weight_decay: float = option(0.0, "AdamW weight decay")
    adam_eps: float = option(1e-5, "AdamW epsilon (CleanRL/OpenAI baselines use 1e-5)")
    max_grad_norm: float = option(1.0, "clip the global gradient norm (CleanRL 0.5, TRL 1.0)")
    # --- sampling -----------------------------------------------------------------------------
    response_length: int = option(
        32, "tokens sampled per response; rows that stop early are padded (TRL response_length)")
    temperature: float = option(
        0.7, "sampling temperature; log-probs are computed from logits / temperature so they are "
        "those of the sampling distribution (" + REFS + ", detail 'temperature')")
    do_sample: bool = option(
        True, "False = greedy decoding: deterministic rollouts for debugging and equivalence tests, "
        "not for training")
    stop_token: Literal["eos"] | None = option(
        "eos", "'eos': a response ends at the first EOS and is padded after it; null: always "
        "response_length tokens (TRL stop_token)")
    missing_eos_penalty: float | None = option(
        None, "subtract this from the score of responses with no EOS (truncated at response_length). "
        "The reward model appends EOS to every text, so a truncated response is scored as if finished; "
        "this is the only thing that discourages truncation (OpenAI's lm-human-preferences set such scores to -1; "
        "Huang et al. 2023 'EOS trick'; TRL missing_eos_penalty); null = off")
    # --- reward shaping and KL ----------------------------------------------------------------
    kl_coef: float = option(0.05, "beta: per-token reward -= beta * KL(policy || reference) (Ziegler et al. 2019)")
    kl_estimator: Literal["k1", "k3"] = option(
        "k1", "k1 = log p/q (unbiased, TRL's default) or k3 = (q/p - 1) - log q/p (unbiased, >= 0, lower "
        "variance; Schulman 2020 'Approximating KL Divergence')")
    adaptive_kl: bool = option(False, "adapt kl_coef to hit kl_target (Ziegler et al. 2019 sec. 2.2)")
    kl_target: float = option(6.0, "adaptive KL: target sequence KL in nats (Ziegler et al.: 6)")
    kl_horizon: int = option(10000, "adaptive KL: horizon in episodes (Ziegler et al.: 10000)")
    whiten_rewards: bool = option(
        False, "before GAE, scale the per-token rewards' deviations from their batch mean to unit variance, "
        "keeping the mean: (r - mean) / std + mean (TRL whiten_rewards)")
    # --- PPO ----------------------------------------------------------------------------------
    gamma: float = option(1.0, "discount; 1.0 because the score arrives only at the last token (TRL gamma)")
    lam: float = option(0.95, "GAE lambda (Schulman et al. 2016; TRL lam)")
    cliprange: float = option(0.2, "policy ratio clip epsilon (Schulman et al. 2017)")
    cliprange_value: float = option(0.2, "value clip around the rollout values (TRL cliprange_value)")
    vf_coef: float = option(0.1, "value loss weight in loss = pg_loss + vf_coef * vf_loss (TRL vf_coef)")
    target_kl: float | None = option(
        None, "stop this step's epochs early once an epoch's mean policy/approxkl (k2 = 0.5 * (log new/old)^2, "
        "a biased estimate of KL(rollout || current policy)) exceeds it (CleanRL target_kl); null = never")
    value_model: Literal["shared", "separate"] = option(
        "shared", "'shared': a zero-initialised value head on the policy trunk (one forward gives "
        "logits and values; the value loss trains the trunk too, weighted by vf_coef); 'separate': a "
        "critic initialised from the reward model with its score normalisation folded into the head, so "
        "its first values are on the reward's normalised scale (TRL's default, " + REFS + ")")
    # --- bookkeeping --------------------------------------------------------------------------
    seed: int = option(0, "seed; rollout sampling at step s on process r is seeded from (seed, s, r): ranks differ, resumes repeat")
    # Logging and checkpointing do not change the trained policy: outside the config hash.
    log_every: int = option(1, "log metrics every N PPO steps", hashed=False)
    sample_table_every: int = option(10, "write a table of samples every N PPO steps (0 = never)", hashed=False)
    num_sample_rows: int = option(8, "rows in each sample table", hashed=False)
    checkpoint_every: int = option(50, "save a resumable checkpoint every N PPO steps (0 = never)", hashed=False)
    report_to: list[str] = option(["tensorboard"], "trackers: tensorboard, wandb (if installed); [] or [none] = console only",
                                  hashed=False)

    @classmethod
    def of(cls, config: "PPOConfig") -> "PPOConfig":
        """Only the PPO hyperparameters of a config that extends this one (the PPO stage's paths and
        data stay out of the trainer and its checkpoints, so a moved run still resumes)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(cls)})


@dataclass(frozen=True)
class PPOSizes:
    """Batch arithmetic derived from a PPOConfig and the number of processes, checked once."""

    world_size: int
    local_rollout_batch: int  # episodes sampled by each process per step
    local_mini_batch: int  # each process's share of one optimizer step
    micro_batch: int  # episodes per forward/backward on each process
    grad_accum: int  # micro-batches per optimizer step on each process
    num_mini_batches: int
    num_steps: int

    @classmethod
    def from_config(cls, cfg: PPOConfig, world_size: int) -> "PPOSizes":
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        need(cfg.rollout_batch_size % world_size == 0,
             f"ppo.rollout_batch_size={cfg.rollout_batch_size} must be divisible by the {world_size} processes")
        need(cfg.rollout_batch_size % cfg.mini_batch_size == 0,
             f"ppo.rollout_batch_size={cfg.rollout_batch_size} must be a multiple of ppo.mini_batch_size={cfg.mini_batch_size}")
        need(cfg.mini_batch_size % world_size == 0,
             f"ppo.mini_batch_size={cfg.mini_batch_size} must be divisible by the {world_size} processes")
        micro = cfg.mini_batch_size // world_size if cfg.micro_batch_size is None else cfg.micro_batch_size
        need(micro >= 1, f"ppo.micro_batch_size={cfg.micro_batch_size} must be >= 1 (or null: no accumulation)")
        need(cfg.mini_batch_size % (micro * world_size) == 0,
             f"ppo.mini_batch_size={cfg.mini_batch_size} must be a multiple of ppo.micro_batch_size * processes "
             f"= {micro} * {world_size}; lower ppo.micro_batch_size")
        need(cfg.total_episodes >= cfg.rollout_batch_size,
             f"ppo.total_episodes={cfg.total_episodes} is less than one rollout batch ({cfg.rollout_batch_size})")
        need(cfg.temperature > 0, "ppo.temperature must be > 0 (use ppo.do_sample=false for greedy decoding)")
        local_mini = cfg.mini_batch_size // world_size
        return cls(
            world_size=world_size,
            local_rollout_batch=cfg.rollout_batch_size // world_size,
            local_mini_batch=local_mini,
            micro_batch=micro,
            grad_accum=local_mini // micro,
            num_mini_batches=cfg.rollout_batch_size // cfg.mini_batch_size,
            num_steps=cfg.total_episodes // cfg.rollout_batch_size,
        )
