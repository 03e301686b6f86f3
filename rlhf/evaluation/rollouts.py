"""Sample held-out prompts from a policy and score them: gold reward, optionally RM score and KL.

The one helper behind every stage's end-of-stage metrics (SFT, reward, PPO, DPO) and the eval
stage. KL terms are computed on exactly the token ids the policy sampled (never re-tokenised
text), under the sampling temperature, against ``reference`` (see ``rlhf.logprobs``).
"""

from __future__ import annotations

from collections.abc import Iterable

import contextlib
import statistics
from dataclasses import dataclass, field, fields
from typing import Callable, ContextManager

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf.logprobs import exact_kl, kl_estimate, response_log_softmax, sequence_sum
from rlhf.sampling import SamplingConfig, join, sample_batches
from rlhf.tasks.gold import gold_reward


@dataclass
class PolicySamples:
    """Per-sample results, lists aligned with ``prompts`` (a prompt repeats once per sample)."""

    prompts: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    tokens: list[list[int]] = field(default_factory=list)  # response ids up to and including EOS
    lengths: list[int] = field(default_factory=list)  # response tokens, the final EOS not counted
    gold: list[float] = field(default_factory=list)
    rm: list[float] | None = None  # normalized reward-model score, when a reward model was given
    kl: list[float] | None = None  # exact sum_t KL(pi(.|x,y<t) || ref(.|x,y<t)), when a reference was given
    kl_k1: list[float] | None = None
    kl_k3: list[float] | None = None

    def mean(self, name: str) -> float:
        return statistics.fmean(getattr(self, name))

    def select(self, rows: list[int]) -> "PolicySamples":
        """The samples at ``rows``, every field (a field that is None stays None)."""
        return PolicySamples(**{f.name: None if getattr(self, f.name) is None else [getattr(self, f.name)[i] for i in rows]
                                for f in fields(self)})

    def num_tokens(self, rows: Iterable[int] | None = None) -> int:
        """Tokens generated (EOS included, as a sampler counts them) by all samples or by ``rows``."""
        return sum(len(self.tokens[i]) for i in (range(len(self.tokens)) if rows is None else rows))


def before_after_metrics(before: PolicySamples, after: PolicySamples) -> dict[str, float]:
    """A trained policy's eval/* metrics on the stage's prompts: its samples (with RM score and KL to the
    SFT policy) against the SFT policy's samples taken before training."""
    return {
        "eval/gold_reward": after.mean("gold"),
        "eval/gold_reward_sft": before.mean("gold"),
        "eval/gold_reward_gain": after.mean("gold") - before.mean("gold"),
        "eval/rm_score": after.mean("rm"),
        "eval/rm_score_sft": before.mean("rm"),
        "objective/kl": after.mean("kl"),
    }


@torch.no_grad()
def sample_and_score(
    policy: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompts: list[str], sampling: SamplingConfig,
    seed: int, *, num_samples: int = 1, reference: PreTrainedModel | None = None,
    reference_context: Callable[[], ContextManager] = contextlib.nullcontext, reward_model=None,
    progress: bool = False,
) -> PolicySamples:
    """Sample ``num_samples`` responses per prompt from ``policy`` (``rlhf.sampling``, batch b under
    seed + b) and score them; with ``reference`` also the exact, k1 and k3 KL of each sample.

    ``reference_context`` is entered around the reference's forward pass: for a LoRA policy whose
    disabled adapter is the reference, pass the policy and its ``disable_adapter``. A policy
    compared with itself gives identical log-probs and a KL of exactly 0.
    """
    out = PolicySamples()
    if reference is not None:
        out.kl, out.kl_k1, out.kl_k3 = [], [], []
        reference.eval()
    for batch in sample_batches(policy, tokenizer, prompts, sampling, seed=seed, num_samples=num_samples,
                                progress=progress):
        out.prompts += batch.prompts
        out.responses += batch.texts
        out.tokens += [row[keep.bool()].tolist() for row, keep in zip(batch.responses, batch.mask)]
        eos = ((batch.responses == tokenizer.eos_token_id) & batch.mask.bool()).sum(-1)
        out.lengths += (batch.mask.sum(-1) - eos).tolist()
        if reference is None:
            continue
        args = (batch.query_responses, batch.attention_mask, batch.context_length, sampling.temperature)
        logp = response_log_softmax(policy, *args)
        with reference_context():
            ref_logp = response_log_softmax(reference, *args)
        token_logp = logp.gather(-1, batch.responses.unsqueeze(-1)).squeeze(-1)
        token_ref_logp = ref_logp.gather(-1, batch.responses.unsqueeze(-1)).squeeze(-1)
        out.kl += sequence_sum(exact_kl(logp, ref_logp), batch.mask).tolist()
        out.kl_k1 += sequence_sum(kl_estimate(token_logp, token_ref_logp, "k1"), batch.mask).tolist()
        out.kl_k3 += sequence_sum(kl_estimate(token_logp, token_ref_logp, "k3"), batch.mask).tolist()
    texts = [join(p, r) for p, r in zip(out.prompts, out.responses)]
    out.gold = gold_reward(texts)
    if reward_model is not None:
        out.rm = reward_model.score(texts).tolist()
    return out
