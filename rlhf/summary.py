"""The short table ``pipelines.run`` prints at the end, read from an eval artifact's metrics.json."""

from __future__ import annotations

import json

from rlhf.artifacts import Artifact


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
