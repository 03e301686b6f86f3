"""rlhf: a small, complete RLHF pipeline for GPT-2-family models.

Stages (SFT, generate, annotate, reward, PPO, DPO, eval) meet only through artifacts on disk.
"""

__version__ = "0.1.0"
