"""What a run reports on the console: one result line per stage, and the table ``pipelines.run`` prints
at the end, read from an eval artifact's metrics.json."""

from __future__ import annotations

import json

from rlhf.artifacts import Artifact

# The few metrics worth a glance per artifact kind; every metric is in the artifact's manifest.json.
HEADLINES = {
    "sft": ("eval/loss_initial", "eval/loss"),
    "candidates": ("num_candidates", "gold/mean"),
    "preferences": ("pairs/train", "pairs/test", "agreement/krippendorff_alpha"),
    "reward": ("eval/rewards/accuracies", "eval/gold_correlation"),
    "ppo": ("eval/gold_reward_initial", "eval/gold_reward", "train/objective/kl"),
    "dpo": ("eval/gold_reward_sft", "eval/gold_reward", "objective/kl"),
    "eval": (),
}


def _number(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def result_line(artifact: Artifact) -> str:
    """``[sft] done in 18.7 s: eval/loss_initial 6.99, eval/loss 0.931``."""
    metrics = artifact.metrics
    keys = HEADLINES.get(artifact.kind, tuple(metrics)[:3])
    shown = ", ".join(f"{k} {_number(metrics[k])}" for k in keys if metrics.get(k) is not None)
    wall = artifact.manifest.get("wall_time_s")
    took = f" in {wall:.1f} s" if isinstance(wall, (int, float)) else ""
    return f"[{artifact.kind}] done{took}" + (f": {shown}" if shown else "")


def summary_table(eval_artifact: Artifact) -> str:
    """One header line plus one line per policy: gold reward (CI), RM score, KL, win rate vs SFT,
    well-formed fraction; a policy optimised at another temperature than the eval's is marked (!)."""
    metrics = json.loads((eval_artifact.path / "metrics.json").read_text())
    lines = [f"{'policy':<8} {'gold reward (95% CI)':<24} {'RM score':>8} {'KL':>7} {'win vs SFT':>10} {'well-formed':>11}"]
    off = []
    for name, m in metrics["policies"].items():
        if not m.get("same_temperature", True):  # False, or None: the policy's manifest does not say
            off.append(name)
        gold = m["gold_reward"]
        rm = f"{m['rm_score']['mean']:8.2f}" if m.get("rm_score") else f"{'-':>8}"
        lines.append(
            f"{name:<8} {gold['mean']:+.3f} [{gold['low']:+.3f}, {gold['high']:+.3f}]  {rm} "
            f"{m['kl']['mean']:7.2f} {m['win_rate']['mean']:10.2f} {m['well_formed']['mean']:11.2f}"
            + (" (!)" if name in off else "")
        )
    if off:
        lines.append(f"(!) sampled at T={metrics['sampling']['temperature']:g}, not (or not known to be) the temperature "
                     "it was optimised at; see the report")
    return "\n".join(lines)
