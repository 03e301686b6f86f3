"""The per-round summary of ``pipelines.run --rounds N``: gold reward and KL of each policy in each round.

Read from each round's eval artifact (metrics.json: every round evaluates on the same held-out prompts
against the same SFT reference) and from the reward model it scored with (how many labelled pairs it
had seen). Written as ``<run_dir>/rounds.md`` with ``rounds.png`` (gold reward and KL against round).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rlhf.artifacts import Artifact, ArtifactError, open_artifact
from rlhf.evaluation.plots import plt, save_figure  # pyplot on the Agg backend

REPORT, PLOT = "rounds.md", "rounds.png"


def _reward_metrics(eval_artifact: Artifact) -> dict[str, Any]:
    spec = eval_artifact.manifest.get("inputs", {}).get("reward_model")
    try:
        return open_artifact(spec["path"], "reward").metrics if spec else {}
    except ArtifactError:  # moved or re-run since: the summary still has the policies' numbers
        return {}


def rounds_rows(evals: list[Artifact]) -> list[dict[str, Any]]:
    """One row per (round, policy): gold reward mean and interval, KL to the reference, the RM's pairs."""
    rows = []
    for k, art in enumerate(evals, start=1):
        k = art.manifest.get("round", k)  # the round that wrote it (rlhf.artifacts.ROUND)
        metrics = json.loads((art.path / "metrics.json").read_text())
        reward = _reward_metrics(art)
        for name, m in metrics["policies"].items():
            rows.append({"round": k, "policy": name, "gold": m["gold_reward"]["mean"],
                         "gold_low": m["gold_reward"]["low"], "gold_high": m["gold_reward"]["high"],
                         "kl": m["kl"]["mean"], "rm_pairs": reward.get("train/pairs"),
                         "rm_accuracy": reward.get("eval/rewards/accuracies")})
    return rows


def _cells(row: dict[str, Any]) -> list[str]:
    acc = row["rm_accuracy"]
    return [str(row["round"]), row["policy"], f"{row['gold']:+.3f} [{row['gold_low']:+.3f}, {row['gold_high']:+.3f}]",
            f"{row['kl']:.2f}", str(row["rm_pairs"] if row["rm_pairs"] is not None else "-"),
            f"{acc:.2f}" if acc is not None else "-"]


HEADER = ["round", "policy", "gold reward (CI)", "KL", "RM pairs", "RM acc"]


def rounds_table(rows: list[dict[str, Any]]) -> str:
    """The console table: one line per round and policy."""
    widths = [5, 8, 26, 6, 8, 6]
    lines = [" ".join(h.ljust(w) for h, w in zip(HEADER, widths)).rstrip()]
    lines += [" ".join(c.ljust(w) for c, w in zip(_cells(r), widths)).rstrip() for r in rows]
    return "\n".join(lines)


def rounds_plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Gold reward (with its interval) and KL against round, one line per policy."""
    fig, (gold_ax, kl_ax) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name in dict.fromkeys(r["policy"] for r in rows):
        mine = [r for r in rows if r["policy"] == name]
        rounds = [r["round"] for r in mine]
        gold_ax.errorbar(rounds, [r["gold"] for r in mine], capsize=3, marker="o", label=name,
                         yerr=[[r["gold"] - r["gold_low"] for r in mine], [r["gold_high"] - r["gold"] for r in mine]])
        kl_ax.plot(rounds, [r["kl"] for r in mine], marker="o", label=name)
    for ax, label in ((gold_ax, "mean gold reward"), (kl_ax, "KL to the reference, nats")):
        ax.set_xlabel("round")
        ax.set_ylabel(label)
        ax.set_xticks(sorted({r["round"] for r in rows}))
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    save_figure(fig, path)


def write_rounds_report(run_dir: str | Path, evals: list[Artifact]) -> Path:
    """``<run_dir>/rounds.md`` (the table, each round's eval report) and ``rounds.png``; returns the report path."""
    run_dir = Path(run_dir)
    rows = rounds_rows(evals)
    rounds_plot(rows, run_dir / PLOT)
    lines = ["# Rounds", "", f"Gold reward and KL (to the reference policy) of each round's policies on the same "
             f"held-out prompts; RM pairs: the labelled pairs the round's reward model was trained on.", "",
             "| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    lines += ["", f"![gold reward and KL per round]({PLOT})", "", "Each round's full report:", ""]
    lines += [f"- round {art.manifest.get('round', k)}: `{art.path / 'report.md'}`" for k, art in enumerate(evals, start=1)]
    (run_dir / REPORT).write_text("\n".join(lines) + "\n")
    return run_dir / REPORT
