"""Policy artifacts: the kinds that hold a causal LM to sample from or train further.

Stages that take a policy as input accept any of these kinds (an SFT, PPO or DPO result).
"""

from __future__ import annotations

from pathlib import Path

from rlhf.models import load_causal_lm

POLICY_KINDS = ("sft", "ppo", "dpo")


def load_policy(path: str | Path):
    """The policy's full weights; a LoRA policy artifact is merged so a new adapter can go on top."""
    model = load_causal_lm(path)
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
