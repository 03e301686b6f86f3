"""The arena leaderboard as a markdown table, an interval plot (PNG) and report.md."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rlhf.arena.pairing import VoterCheck
from rlhf.arena.ratings import BASE, Rating
from rlhf.evaluation.plots import plt, save_figure  # pyplot on the Agg backend


def markdown_table(rows: Sequence[Rating], confidence: float = 0.95, gold: dict[str, float] | None = None) -> str:
    extra = " mean gold reward |" if gold else ""
    lines = [f"| rank | policy | rating | {confidence:.0%} interval | votes |{extra}",
             "|---:|---|---:|---|---:|" + ("---:|" if gold else "")]
    for r in rows:
        cell = f" {gold[r.policy]:.3f} |" if gold else ""
        lines.append(f"| {r.rank} | {r.policy} | {r.rating:.0f} | {r.low:.0f} .. {r.high:.0f} | {r.votes} |{cell}")
    return "\n".join(lines)


def interval_plot(rows: Sequence[Rating], path: Path, anchor: str, confidence: float = 0.95) -> None:
    """One horizontal bar per policy (best on top): rating and its bootstrap interval."""
    fig, ax = plt.subplots(figsize=(6, 0.5 * len(rows) + 1.2))
    ys = range(len(rows))[::-1]
    for y, r in zip(ys, rows):
        # With few, one-sided votes the point fit can fall outside the percentile interval: clip at 0.
        ax.errorbar(r.rating, y, xerr=[[max(r.rating - r.low, 0.0)], [max(r.high - r.rating, 0.0)]], fmt="o",
                    capsize=4)
    ax.set_yticks(list(ys), [r.policy for r in rows])
    ax.axvline(BASE, color="grey", lw=0.8, ls="--")
    ax.margins(y=0.25)
    ax.set_xlabel(f"Bradley-Terry rating ({anchor} = {BASE:.0f}; {confidence:.0%} bootstrap interval)")
    ax.grid(axis="x", alpha=0.3)
    save_figure(fig, path)


def render_report(rows: Sequence[Rating], anchor: str, confidence: float, num_votes: int,
                  gold: dict[str, float], spearman: float, checks: Sequence[VoterCheck], plot: str) -> str:
    flagged = [c for c in checks if c.outlier]
    lines = [
        "# Policy arena", "",
        f"{num_votes} votes; Bradley-Terry ratings (ties count half), {anchor} anchored at {BASE:.0f}; "
        f"{confidence:.0%} bootstrap intervals. Rank = 1 + policies rated above with disjoint intervals.", "",
        markdown_table(rows, confidence, gold), "",
        f"![ratings]({plot})", "",
        f"Agreement with the gold-reward ranking: Spearman {spearman:.3f}.", "",
        "## Voters", "",
        "| voter | votes | z (log-likelihood vs model) | outlier |", "|---|---:|---:|---|",
        *[f"| {c.voter} | {c.votes} | {c.z:.2f} | {'yes' if c.outlier else ''} |" for c in checks], "",
        f"{len(flagged)} voter(s) flagged as outliers." if flagged else "No voter flagged as an outlier.", "",
    ]
    return "\n".join(lines)


def default_anchor(policies: dict[str, dict]) -> str:
    """The policy rated 1000 when none is named: the first SFT policy, else the first listed."""
    return next((name for name, meta in policies.items() if meta.get("kind") == "sft"), next(iter(policies)))


def write_leaderboard(path: Path, names: Sequence[str], votes, anchor: str, mean_gold: dict[str, float],
                      rounds: int = 1000, confidence: float = 0.95, seed: int = 0,
                      outlier_threshold: float = 3.0) -> dict[str, float]:
    """ratings.json, ratings.png and report.md from ``votes`` (``Vote`` rows) into ``path``; returns metrics.

    The one writer of an arena leaderboard: the arena stage (simulated votes) and
    ``python -m annotation_ui.arena_export`` (people's votes) both call it.
    """
    import json

    from rlhf.arena.format import vote_arrays
    from rlhf.arena.pairing import outlier_voters
    from rlhf.arena.ratings import leaderboard
    from rlhf.arena.simulate import spearman

    names = list(names)
    left, right, outcomes, voters = vote_arrays(names, votes)
    rows = leaderboard(names, left, right, outcomes, anchor, rounds, confidence, seed)
    checks = outlier_voters(len(names), left, right, outcomes, voters, outlier_threshold)
    rating = {r.policy: r.rating for r in rows}
    rho = spearman([rating[n] for n in names], [mean_gold[n] for n in names])
    (path / "ratings.json").write_text(json.dumps({
        "anchor": anchor, "confidence": confidence, "votes": len(votes), "spearman_gold": rho,
        "leaderboard": [r.as_dict() for r in rows], "voters": [vars(c) for c in checks]}, indent=2))
    interval_plot(rows, path / "ratings.png", anchor, confidence)
    (path / "report.md").write_text(render_report(rows, anchor, confidence, len(votes), mean_gold, rho, checks,
                                                  "ratings.png"))
    metrics = {"arena/votes": len(votes), "arena/spearman_gold": rho,
               "arena/outlier_voters": sum(c.outlier for c in checks)}
    for r in rows:
        metrics.update({f"arena/{r.policy}/rating": r.rating, f"arena/{r.policy}/rating_low": r.low,
                        f"arena/{r.policy}/rating_high": r.high})
    return metrics
