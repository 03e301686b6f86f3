"""Training defaults chosen from the hardware and model size (users can override each)."""

from __future__ import annotations

import torch

# Below this size, activation checkpointing costs more time than the memory it saves is worth.
CHECKPOINTING_MIN_PARAMS = 350_000_000


def precision_options(model: torch.nn.Module) -> dict[str, bool]:
    """bf16 only where the device has bf16 units; fp16 on older GPUs; checkpointing for big models.

    TRL 1.x defaults to bf16 + gradient checkpointing; on CPUs without bf16 units that is slower for
    no gain: 1.3-1.6x per step on the tiny GPT-2 on our 2-core machine (benchmarks/overhead.py),
    11x in a single-thread RewardTrainer measurement.
    """
    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    n_params = sum(p.numel() for p in model.parameters())
    return {
        "bf16": bf16,
        "fp16": cuda and not bf16,
        "activation_checkpointing": cuda and n_params >= CHECKPOINTING_MIN_PARAMS,
    }


def autocast_dtype() -> torch.dtype | None:
    """Mixed-precision dtype for our own loops (PPO, generation), or None for fp32."""
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def process_state():
    """accelerate's process state, made the way every stage must make it first.

    ``cpu=True`` on CPU-only hosts: otherwise accelerate ignores torchrun's WORLD_SIZE, and once a
    bare ``PartialState()`` exists every rank thinks it is alone (and e.g. samples every prompt).
    """
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())
