"""Policy artifacts: the kinds that hold a causal LM to sample from or train further.

Stages that take a policy as input accept any of ``POLICY_KINDS`` (an SFT, PPO, DPO, RLOO, GRPO,
online-DPO or rejection-sampling result). The eval stage also samples ``best_of_n`` artifacts
(rlhf/best_of_n.py): a recipe over a policy and a reward model, no weights of its own.


Each policy artifact records in its manifest (``training_sampling``) the sampling setting it was
optimised under: a policy is optimised for the distribution it was trained on, so comparing two
policies sampled at a temperature one of them never saw is not a fair comparison (issue 12,
"equal footing"). The eval stage reads it with ``training_sampling`` and flags any mismatch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlhf.config import ConfigError
from rlhf.models import load_causal_lm

POLICY_KINDS = ("sft", "ppo", "dpo", "rloo", "grpo", "online_dpo", "rejection_sampling")
BEST_OF_N = "best_of_n"
SAMPLED_POLICY_KINDS = (*POLICY_KINDS, BEST_OF_N)  # what the eval stage can sample
TRAINING_SAMPLING = "training_sampling"  # manifest key


def load_policy(path: str | Path):
    """The policy's full weights; a LoRA policy artifact is merged so a new adapter can go on top."""
    model = load_causal_lm(path)
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


def sampling_record(temperature: float, max_new_tokens: int | None = None, why: str = "") -> dict[str, Any]:
    """What a policy stage puts under ``writer.extra[TRAINING_SAMPLING]``.

    ``max_new_tokens`` is the response length the policy was optimised for (None: trained on whole
    texts, no limit of its own); ``why`` says where the temperature comes from.
    """
    return {"temperature": float(temperature), "max_new_tokens": max_new_tokens, "source": why}


def training_sampling(artifact) -> dict[str, Any] | None:
    """The sampling setting a policy artifact was optimised under; None when its manifest does not say."""
    return artifact.manifest.get(TRAINING_SAMPLING)


def reference_input(reference: str | None, lora_enabled: bool) -> dict[str, tuple[str, tuple[str, ...]]]:
    """The ``reference`` input of a stage that takes a KL reference other than its starting policy
    (``pipelines.run --rounds``): none when ``reference`` is null (the starting policy is the reference)."""
    if reference is None:
        return {}
    if lora_enabled:
        raise ConfigError("reference= needs full fine-tuning: with lora.enabled the KL reference is the "
                          "adapter-disabled starting policy; set reference=null or lora.enabled=false")
    return {"reference": (reference, POLICY_KINDS)}
