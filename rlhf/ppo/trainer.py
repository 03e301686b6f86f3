"""The PPO loop for language models, CleanRL-style: rollout -> rewards -> GAE -> epochs x minibatches.

One PPO step:
  1. rollout   sample responses to a batch of prompts (KV cache), keep log-probs and values
  2. score     reward model on prompt + response (normalized), reference log-probs, per-token
               rewards = -kl_coef * KL + score at the last token, GAE advantages (whitened)
  3. train     num_ppo_epochs x minibatches x micro-batches (gradient accumulation) of
               loss = clipped policy loss + vf_coef * clipped value loss
The same code runs on 1 CPU, N CPU processes (gloo), 1 or N GPUs (DDP) under ``accelerate``:
whitening, metrics and early stopping use statistics over all processes, so the algorithm does
not depend on how the batch is split.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import PreTrainedModel, PreTrainedTokenizerBase, get_scheduler

from rlhf.config import ConfigError
from rlhf.hardware import autocast_dtype
from rlhf.logprobs import masked_mean, masked_sum, response_logprobs
from rlhf.ppo import core
from rlhf.ppo.checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from rlhf.ppo.config import PPOConfig, PPOSizes
from rlhf.ppo.modeling import PolicyAndValue, response_outputs, sampled_outputs
from rlhf.ppo.rollout import Rollout
from rlhf.ppo.tracking import Tracker
from rlhf.reward_model import RewardModel
from rlhf.sampling import SamplingConfig, concat, join, sample_batches
from rlhf.tasks.gold import gold_reward

# Options that change what is logged or saved, not the training itself: a resumed run may change them.
BOOKKEEPING = ("log_every", "sample_table_every", "num_sample_rows", "checkpoint_every", "report_to")
# Learning-rate schedules whose values do not depend on the number of PPO steps: only under these may a
# resumed run change total_episodes (train longer or shorter) without changing the learning rates so far.
LENGTH_FREE_SCHEDULES = ("constant", "constant_with_warmup")


class PPODivergedError(ConfigError):
    """Loss or reward became NaN/inf; the message names the last good checkpoint and what to change."""


def prompt_indices(step: int, batch_size: int, num_prompts: int, seed: int) -> list[int]:
    """Dataset indices of the global batch of PPO step ``step`` (1-based).

    Episode e uses prompt perm_k[e % N] of the k = e // N'th seeded shuffle: a pure function of the
    step, so a resumed run draws exactly the prompts the uninterrupted run would have.
    """
    out, perms = [], {}
    for episode in range((step - 1) * batch_size, step * batch_size):
        epoch = episode // num_prompts
        if epoch not in perms:
            perms[epoch] = torch.randperm(num_prompts, generator=torch.Generator().manual_seed(seed + epoch)).tolist()
        out.append(perms[epoch][episode % num_prompts])
    return out


def rollout_seed(seed: int, step: int, rank: int) -> int:
    """Sampling seed of step ``step`` on process ``rank`` (batch b adds b, b < 101): a pure function of
    the step, so a resumed run samples exactly what the uninterrupted run would have, and ranks differ."""
    return seed * 1_000_003 + step * 10_007 + rank * 101


def mixed_precision() -> str:
    dtype = autocast_dtype()
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "no")


class PPOTrainer:
    """Owns the models, optimizer and loop; ``train()`` runs (or resumes) to the configured episodes."""

    def __init__(self, cfg: PPOConfig, policy: PreTrainedModel, ref_policy: PreTrainedModel | None,
                 reward_model: RewardModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str],
                 work_dir: str | Path, critic: PreTrainedModel | None = None):
        """``ref_policy=None`` means ``policy`` is a LoRA model whose disabled adapter is the reference."""
        from accelerate import PartialState

        self.cfg = cfg
        # cpu=True on CPU-only hosts, or accelerate ignores torchrun's WORLD_SIZE there (every rank alone).
        cpu = not torch.cuda.is_available()
        self.sizes = PPOSizes.from_config(cfg, PartialState(cpu=cpu).num_processes)
        self.accelerator = Accelerator(cpu=cpu, gradient_accumulation_steps=self.sizes.grad_accum,
                                       mixed_precision=mixed_precision())
        set_seed(cfg.seed, device_specific=True)  # seed + rank; rollouts seed themselves (rollout_seed)
        device = self.accelerator.device
        self.tokenizer, self.prompts, self.work_dir = tokenizer, prompts, Path(work_dir)
        self.stop_token_id = tokenizer.eos_token_id if cfg.stop_token == "eos" else None
        if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
            raise ConfigError("the tokenizer needs a pad token distinct from EOS (load it with rlhf.models.load_tokenizer)")

        model = PolicyAndValue(policy, critic)
        params = [p for p in model.parameters() if p.requires_grad]
        # Multi-tensor kernels instead of a loop over parameters (torch picks foreach on CUDA only). On CPU
        # the fused kernel: foreach there is itself a loop of per-tensor ops; fused took ~2-8x less per step
        # of the tiny policy, equal to float rounding (3.7e-9 apart after 10 steps).
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, eps=cfg.adam_eps, weight_decay=cfg.weight_decay,
                                      **({"fused": True} if cpu else {"foreach": True}))
        # Stepped once per PPO step, by us: accelerate's wrapper would step it once per process.
        self.scheduler = get_scheduler(cfg.lr_scheduler_type, optimizer, num_warmup_steps=cfg.warmup_steps,
                                       num_training_steps=self.sizes.num_steps)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.ref_policy = ref_policy.to(device).eval().requires_grad_(False) if ref_policy is not None else None
        self.reward_model = reward_model
        self.reward_model.to(device)  # every ensemble member
        self.kl_ctl = (core.AdaptiveKLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon) if cfg.adaptive_kl
                       else core.FixedKLController(cfg.kl_coef))
        self.step = 0
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------------------------------
    # Collectives: statistics over all processes.

    def _sum(self, x: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(x.detach().clone(), reduction="sum")

    def _mean(self, x: torch.Tensor) -> float:
        """Mean over all processes of a per-process scalar or vector (all processes hold equal shares)."""
        return (self._sum(x.float().mean()) / self.accelerator.num_processes).item()

    def _masked_stats(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global masked mean and unbiased variance, so whitening does not depend on the split."""
        n = self._sum(mask.sum())
        mean = self._sum(masked_sum(x, mask)) / n
        var = self._sum(masked_sum((x - mean) ** 2, mask)) / (n - 1).clamp(min=1)
        return mean, var

    # ------------------------------------------------------------------------------------------
    # 1-2. Rollout and scoring.

    def _forward(self, model: torch.nn.Module, query_responses, attention_mask, context_length, entropy=True):
        with self.accelerator.autocast():
            return response_outputs(model, query_responses, attention_mask, context_length, self.cfg.temperature,
                                    entropy)

    def _ref_logprobs(self, unwrapped: PolicyAndValue, query_responses, attention_mask, context_length):
        def ref_forward(model):
            with self.accelerator.autocast():
                return response_logprobs(model, query_responses, attention_mask, context_length, self.cfg.temperature)

        if self.ref_policy is not None:
            return ref_forward(self.ref_policy)
        with unwrapped.policy.disable_adapter():  # LoRA: the base model is the reference
            return ref_forward(unwrapped.policy)

    @torch.no_grad()
    def rollout(self, step: int) -> tuple[Rollout, dict[str, float], list[dict[str, Any]], dict[str, float]]:
        cfg, sizes, acc = self.cfg, self.sizes, self.accelerator
        timings = {}
        start = time.perf_counter()
        unwrapped: PolicyAndValue = acc.unwrap_model(self.model)
        unwrapped.eval()
        indices = prompt_indices(step, cfg.rollout_batch_size, len(self.prompts), cfg.seed)
        rank = acc.process_index
        prompts = [self.prompts[i] for i in indices[rank * sizes.local_rollout_batch : (rank + 1) * sizes.local_rollout_batch]]
        sampling = SamplingConfig(temperature=cfg.temperature, max_new_tokens=cfg.response_length,
                                  batch_size=cfg.forward_batch_size)
        # The rollout log-probs and values come from the hidden states the sampler computed anyway, not
        # a second forward pass - in full precision only: under autocast the KV-cached low-precision
        # numbers would differ from the training forward's enough to bias the first PPO ratios.
        reuse = unwrapped.critic is None and acc.mixed_precision == "no"
        with acc.autocast():
            sampled = concat(sample_batches(unwrapped.policy, self.tokenizer, prompts, sampling,
                                            seed=rollout_seed(cfg.seed, step, rank), stop_at_eos=self.stop_token_id is not None,
                                            do_sample=cfg.do_sample, keep_hidden=reuse), self.tokenizer.pad_token_id)
        context_length = sampled.context_length
        timings["time/rollout"] = time.perf_counter() - start

        start = time.perf_counter()
        parts: dict[str, list[torch.Tensor]] = {k: [] for k in ("lp", "val", "ref", "score")}
        for lo in range(0, len(prompts), cfg.forward_batch_size):
            chunk = slice(lo, lo + cfg.forward_batch_size)
            query_responses, attention_mask = sampled.query_responses[chunk], sampled.attention_mask[chunk]
            if reuse:
                logprobs, values = sampled_outputs(unwrapped, sampled.hidden[chunk], sampled.responses[chunk],
                                                   sampled.mask[chunk], cfg.temperature)
            else:
                logprobs, _, values = self._forward(unwrapped, query_responses, attention_mask, context_length,
                                                    entropy=False)
            ref_logprobs = self._ref_logprobs(unwrapped, query_responses, attention_mask, context_length)
            scores = self.reward_model.score([join(p, r) for p, r in zip(sampled.prompts[chunk], sampled.texts[chunk])],
                                             batch_size=cfg.forward_batch_size)
            for key, value in zip(parts, (logprobs, values, ref_logprobs, scores.to(acc.device))):
                parts[key].append(value)
        logprobs, values, ref_logprobs, scores = (torch.cat(v) for v in parts.values())
        qr, am, responses, mask, texts = (sampled.query_responses, sampled.attention_mask, sampled.responses,
                                          sampled.mask, sampled.texts)
        mask = mask.float()
        has_eos = (responses == self.tokenizer.eos_token_id).any(1)
        scores = core.missing_eos_penalty(scores, responses, self.tokenizer.eos_token_id, cfg.missing_eos_penalty)
        self._check_finite(self._sum(scores.sum()), "reward-model score", step)

        rewards, non_score_reward, kl = core.per_token_rewards(scores, logprobs, ref_logprobs, mask, self.kl_ctl.value,
                                                               cfg.kl_estimator)
        if cfg.whiten_rewards:
            rewards = core.whiten(rewards, mask, shift_mean=False, stats=self._masked_stats(rewards, mask))
        advantages, returns = core.gae(rewards, values, mask, cfg.gamma, cfg.lam)
        advantages = core.whiten(advantages, mask, stats=self._masked_stats(advantages, mask))
        timings["time/score"] = time.perf_counter() - start

        seq_kl = kl.sum(1)
        stats = {
            "objective/kl": self._mean(seq_kl),
            "objective/entropy": self._mean((-logprobs * mask).sum(1)),
            "objective/non_score_reward": self._mean(non_score_reward.sum(1)),
            "objective/rlhf_reward": self._mean(scores + non_score_reward.sum(1)),
            "objective/scores": self._mean(scores),
            "objective/gold_reward": self._mean(torch.tensor(gold_reward(join(p, r) for p, r in zip(prompts, texts)), device=acc.device)),
            "objective/kl_coef": self.kl_ctl.value,
            "val/num_eos_tokens": self._sum(has_eos.sum()).item(),
            "val/response_length": self._mean(mask.sum(1)),
        }
        rows = [{"prompt": p, "response": r, "score": round(s, 4)}
                for p, r, s in zip(prompts, texts, scores.tolist())][: cfg.num_sample_rows]
        batch = Rollout(qr, am, responses, mask, logprobs, values, advantages, returns, context_length)
        return batch, stats, rows, timings

    # ------------------------------------------------------------------------------------------
    # 3. PPO update.

    def update(self, batch: Rollout, step: int) -> dict[str, float]:
        cfg, sizes, acc = self.cfg, self.sizes, self.accelerator
        self.model.train()  # dropout is off (p = 0) in every model; train() only matters for custom modules
        records: dict[str, list[torch.Tensor]] = {k: [] for k in ("pg", "vf", "pg_clip", "vf_clip", "approxkl", "entropy", "ratio")}
        for epoch in range(cfg.num_ppo_epochs):
            # Seeded by step and epoch, not the RNG stream: the shuffle is the same after a resume.
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step * 1_009 + epoch)
            order = torch.randperm(sizes.local_rollout_batch, generator=generator).to(acc.device)
            epoch_approxkl = []
            for mb_start in range(0, sizes.local_rollout_batch, sizes.local_mini_batch):
                # The loss is the minibatch's token mean over all processes: each micro-batch adds its
                # masked sum / the minibatch's global token count (core.token_mean), so the gradient does
                # not depend on the micro-batch split. accelerate divides the loss by grad_accum and DDP
                # averages over processes; scaling by both makes the accumulated gradient that of the sum.
                num_tokens = self._sum(batch.mask[order[mb_start : mb_start + sizes.local_mini_batch]].sum())
                scale = acc.gradient_accumulation_steps * acc.num_processes
                minibatch_losses = torch.zeros(2, device=acc.device)
                for micro_start in range(mb_start, mb_start + sizes.local_mini_batch, sizes.micro_batch):
                    mb = batch[order[micro_start : micro_start + sizes.micro_batch]].trimmed()
                    with acc.accumulate(self.model):
                        logprobs, entropy, values = self._forward(self.model, mb.query_responses, mb.attention_mask,
                                                                  mb.context_length)
                        pg = core.policy_loss(logprobs, mb.logprobs, mb.advantages, mb.mask, cfg.cliprange, num_tokens)
                        vf = core.value_loss(values, mb.values, mb.returns, mb.mask, cfg.cliprange_value, num_tokens)
                        loss = pg.loss + cfg.vf_coef * vf.loss
                        acc.backward(loss * scale)
                        if acc.sync_gradients:
                            grad_norm = acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                            # Gradients are already averaged over processes: every rank sees the same norm.
                            # Under fp16 the loss scaler skips overflowing steps itself, so no guard there.
                            if acc.mixed_precision != "fp16":
                                self._check_finite(torch.as_tensor(grad_norm), "loss/gradient", step)
                        self.optimizer.step()
                        self.optimizer.zero_grad()
                    minibatch_losses += torch.stack([pg.loss.detach().float(), vf.loss.detach().float()])
                    for key, value in zip(("pg_clip", "vf_clip", "approxkl", "entropy", "ratio"),
                                          (pg.clipfrac, vf.clipfrac, pg.approxkl, masked_mean(entropy, mb.mask), pg.ratio)):
                        records[key].append(value.detach().float())
                    epoch_approxkl.append(pg.approxkl.detach())
                # This process's share of the minibatch losses; summed over processes when logged.
                records["pg"].append(minibatch_losses[0])
                records["vf"].append(minibatch_losses[1])
            if cfg.target_kl is not None and self._mean(torch.stack(epoch_approxkl)) > cfg.target_kl:
                break  # CleanRL's early stop, decided on the all-process mean so every rank stops together
        ratios = torch.stack(records["ratio"])
        return {
            "policy/approxkl_avg": self._mean(torch.stack(records["approxkl"])),
            "policy/clipfrac_avg": self._mean(torch.stack(records["pg_clip"])),
            "loss/policy_avg": self._sum(torch.stack(records["pg"])).mean().item(),
            "loss/value_avg": self._sum(torch.stack(records["vf"])).mean().item(),
            "val/clipfrac_avg": self._mean(torch.stack(records["vf_clip"])),
            "policy/entropy_avg": self._mean(torch.stack(records["entropy"])),
            "val/ratio": self._mean(ratios),
            "val/ratio_var": self._mean(ratios.var(unbiased=False) if len(ratios) > 1 else torch.zeros(())),
            "policy/epochs": epoch + 1,
        }

    def _check_finite(self, value: torch.Tensor, what: str, step: int) -> None:
        """Stop on NaN/inf (``value`` must already agree across processes so all ranks stop together)."""
        if torch.isfinite(value).all():
            return
        from rlhf.ppo.checkpoint import checkpoint_step

        last = checkpoint_step(self.work_dir)
        where = (f"the last good checkpoint (step {last}) is kept in {self.work_dir}; resume from it with resume=true"
                 if last is not None else "there is no checkpoint yet")
        raise PPODivergedError(
            f"non-finite {what} at PPO step {step}: training stopped; {where} after lowering ppo.learning_rate "
            "or raising ppo.kl_coef (or check the reward model)"
        )

    # ------------------------------------------------------------------------------------------
    # Checkpoints.

    def _state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.accelerator.unwrap_model(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "kl_ctl": self.kl_ctl.state_dict(),
            # fp16 only: the loss scale and its growth tracker (a fresh scaler restarts at 2**16 and
            # would skip steps on overflow until it has backed off again).
            "scaler": self.accelerator.scaler.state_dict() if self.accelerator.scaler is not None else None,
            "config": {k: v for k, v in vars(self.cfg).items() if k not in BOOKKEEPING},
        }

    def save(self) -> None:
        save_checkpoint(self.work_dir, self._state(), self.accelerator)

    def resume(self) -> bool:
        """Load the last checkpoint (model, optimizer, scheduler, KL controller, fp16 loss scaler, RNG);
        False if none."""
        loaded = load_checkpoint(self.work_dir, self.accelerator.process_index, self.accelerator.num_processes)
        if loaded is None:
            return False
        state, rng = loaded
        ours = {k: v for k, v in vars(self.cfg).items() if k not in BOOKKEEPING}
        changed = sorted(k for k in ours if state["config"].get(k) != ours[k])
        if changed == ["total_episodes"] and self.cfg.lr_scheduler_type not in LENGTH_FREE_SCHEDULES:
            raise ConfigError(
                f"checkpoint in {self.work_dir} was made with ppo.total_episodes={state['config']['total_episodes']}, "
                f"which sets the length of the {self.cfg.lr_scheduler_type} learning-rate schedule; restore it to "
                "resume (or use lr_scheduler_type=constant to change the length), or set resume=false to start over"
            )
        changed = [k for k in changed if k != "total_episodes" or self.cfg.lr_scheduler_type not in LENGTH_FREE_SCHEDULES]
        if changed:
            raise ConfigError(
                f"checkpoint in {self.work_dir} was made with different ppo options ({', '.join('ppo.' + k for k in changed)}); "
                "restore them to resume, or set resume=false to start over"
            )
        self.accelerator.unwrap_model(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.kl_ctl.load_state_dict(state["kl_ctl"])
        if self.accelerator.scaler is not None and state.get("scaler"):
            self.accelerator.scaler.load_state_dict(state["scaler"])
        self.step = state["step"]
        set_rng_state(rng)
        return True

    # ------------------------------------------------------------------------------------------
    # The loop.

    def train(self, resume: bool = False, on_step_end: Callable[[int, "PPOTrainer"], None] | None = None) -> list[dict]:
        """Run PPO steps until ``total_episodes``; ``on_step_end(step, trainer)`` runs after each
        step's checkpoint (tests use it to simulate a kill). Returns the metric history."""
        cfg, sizes, acc = self.cfg, self.sizes, self.accelerator
        if resume and self.resume():
            acc.print(f"[ppo] resumed from the checkpoint at step {self.step}")
        tracker = Tracker(self.work_dir, cfg.report_to, vars(cfg), sizes.num_steps, self.step, acc.is_main_process)
        started, first_step = time.perf_counter(), self.step
        try:
            while self.step < sizes.num_steps:
                step = self.step + 1
                batch, stats, rows, timings = self.rollout(step)
                start = time.perf_counter()
                stats.update(self.update(batch, step))
                timings["time/train"] = time.perf_counter() - start
                self.kl_ctl.update(stats["objective/kl"], cfg.rollout_batch_size)
                self.scheduler.step()
                self.step = step
                stats.update(timings, lr=self.scheduler.get_last_lr()[0], episode=step * cfg.rollout_batch_size,
                             eps=(step - first_step) * cfg.rollout_batch_size / (time.perf_counter() - started))
                self.history.append({"step": step, **stats})
                if step % cfg.log_every == 0 or step == sizes.num_steps:
                    tracker.log(step, stats)
                if cfg.sample_table_every and step % cfg.sample_table_every == 0:
                    tracker.samples(step, rows)
                if cfg.checkpoint_every and step % cfg.checkpoint_every == 0:
                    self.save()
                tracker.advance()
                if on_step_end is not None:
                    on_step_end(step, self)
        finally:
            tracker.close()
        return self.history

    def policy(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model).policy
