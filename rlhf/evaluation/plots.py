"""PNG plots for the eval report (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rlhf.artifacts import read_jsonl  # noqa: E402
from rlhf.evaluation.metrics import Estimate  # noqa: E402


def save_figure(fig, path: Path | str) -> None:
    """Lay out, write at 120 dpi and close (pyplot keeps every open figure alive otherwise)."""
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def read_log_history(path: Path) -> list[dict[str, Any]]:
    """Rows of a training artifact's log_history.jsonl, or [] when it has none."""
    return read_jsonl(path)


def curve(history: list[dict[str, Any]], metric: str) -> tuple[list[float], list[float]]:
    """(steps, values) of ``metric``, accepting the train/ prefix that write_log_history adds."""
    steps, values = [], []
    for row in history:
        for key in (metric, f"train/{metric}"):
            if key in row and "step" in row:
                steps.append(row["step"])
                values.append(row[key])
                break
    return steps, values


def frontier_plot(points: dict[str, tuple[Estimate, Estimate]], path: Path, confidence: float) -> None:
    """Gold reward against KL to the reference: one point per policy, CI bars on both axes."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, (kl, gold) in points.items():
        ax.errorbar(kl.mean, gold.mean, xerr=[[kl.mean - kl.low], [kl.high - kl.mean]],
                    yerr=[[gold.mean - gold.low], [gold.high - gold.mean]], fmt="o", capsize=4, label=name)
        ax.annotate(name, (kl.mean, gold.mean), textcoords="offset points", xytext=(6, 6))
    ax.set_xlabel("KL(policy || reference), nats per response")
    ax.set_ylabel("mean gold reward")
    ax.set_title(f"Reward-KL frontier ({confidence:.0%} CI)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    save_figure(fig, path)


def training_curves_plot(histories: dict[str, list[dict[str, Any]]], metrics: list[str], path: Path) -> list[str]:
    """One panel per metric that some policy logged; returns the metrics drawn ([] = no file written)."""
    found = [m for m in metrics if any(curve(h, m)[0] for h in histories.values())]
    if not found:
        return []
    fig, axes = plt.subplots(len(found), 1, figsize=(6, 2.8 * len(found)), squeeze=False)
    for ax, metric in zip(axes[:, 0], found):
        for name, history in histories.items():
            steps, values = curve(history, metric)
            if steps:
                ax.plot(steps, values, marker=".", label=name)
        ax.set_title(metric)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    save_figure(fig, path)
    return found
