"""Policy artifacts: the kinds that hold a causal LM to sample from or train further.

Stages that take a policy as input accept any of ``POLICY_KINDS`` (an SFT, PPO, DPO, RLOO, GRPO,
online-DPO or rejection-sampling result). The eval stage also samples ``best_of_n`` artifacts
(rlhf/best_of_n.py): a recipe over a policy and a reward model, no weights of its own.
"""

from __future__ import annotations

from pathlib import Path

from rlhf.models import load_causal_lm

POLICY_KINDS = ("sft", "ppo", "dpo", "rloo", "grpo", "online_dpo", "rejection_sampling")
BEST_OF_N = "best_of_n"
SAMPLED_POLICY_KINDS = (*POLICY_KINDS, BEST_OF_N)  # what the eval stage can sample


def load_policy(path: str | Path):
    """The policy's full weights; a LoRA policy artifact is merged so a new adapter can go on top."""
    model = load_causal_lm(path)
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
