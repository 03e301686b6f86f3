"""The short table ``pipelines.run`` prints at the end, read from an eval artifact's metrics.json."""

from __future__ import annotations

import json

from rlhf.artifacts import Artifact


def summary_table(eval_artifact: Artifact) -> str:
    """One header line plus one line per policy: gold reward (CI), RM score, KL, win rate vs SFT."""
    metrics = json.loads((eval_artifact.path / "metrics.json").read_text())
    lines = [f"{'policy':<8} {'gold reward (95% CI)':<24} {'RM score':>8} {'KL':>7} {'win vs SFT':>10}"]
    for name, m in metrics["policies"].items():
        gold = m["gold_reward"]
        rm = f"{m['rm_score']['mean']:8.2f}" if m.get("rm_score") else f"{'-':>8}"
        lines.append(
            f"{name:<8} {gold['mean']:+.3f} [{gold['low']:+.3f}, {gold['high']:+.3f}]  {rm} "
            f"{m['kl']['mean']:7.2f} {m['win_rate']['mean']:10.2f}"
        )
    return "\n".join(lines)
