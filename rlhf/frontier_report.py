"""The frontier artifact's report: gold-vs-KL curves with seed bands, over-optimization fits, the KL-budget table."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from rlhf.evaluation.metrics import t_interval
from rlhf.evaluation.overoptimization import fit_overoptimization, overoptimization_plot
from rlhf.evaluation.report import fmt
from rlhf.frontier import (BON_KL_NOTE, best_within_budget, curve_of, drop_from_peak, run_ends, with_gains,
                           within_budget)

FITS = {"ppo": "rl", "ppo_long": "rl", "ppo_ensemble": "rl", "best_of_n": "bon",
        "best_of_n_ensemble": "bon"}  # Gao et al.'s functional form per method
ENSEMBLE_PAIRS = {"ppo_long": "PPO, single reward model", "ppo_ensemble": "PPO, ensemble",
                  "best_of_n": "best-of-n, single reward model", "best_of_n_ensemble": "best-of-n, ensemble"}


def frontier_plot(rows: list[dict[str, Any]], path: Path, confidence: float) -> None:
    """Gold gain over SFT against mean KL: one curve per method (per beta for DPO), the band its t-interval
    across seeds."""
    from rlhf.evaluation.plots import plt, save_figure  # pyplot on the Agg backend

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for i, name in enumerate(sorted({curve_of(r) for r in rows})):
        curve = [r for r in rows if curve_of(r) == name]
        kl = [r["kl"]["mean"] for r in curve]
        gain = [r["gain"]["mean"] for r in curve]
        low = [r["gain"]["low"] for r in curve]
        high = [r["gain"]["high"] for r in curve]
        label = name + (" (KL: upper bound)" if name.startswith("best_of_n") else "")
        ax.plot(kl, gain, marker="o", markersize=3, color=f"C{i}", label=label)
        ax.fill_between(kl, low, high, color=f"C{i}", alpha=0.2)
    ax.set_xlabel("KL(policy || SFT), nats per response (exact, eval temperature)")
    ax.set_ylabel("gold reward gain over SFT")
    ax.set_title(f"Reward-KL frontier (mean over seeds, {confidence:.0%} t-interval bands)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small")
    save_figure(fig, path)


def overoptimization(points: list[dict[str, Any]], path: Path) -> dict[str, dict]:
    """Gao fits on every seed's points (gold gain vs KL), plotted with the seed-mean proxy (RM) gain; PPO's
    curve is ``ppo_long``'s where the sweep has one."""
    series, proxy, fits = {}, {}, {}
    gains = with_gains(points)
    present = {p["method"] for p in points}
    for method, form in FITS.items():
        if method == "ppo" and "ppo_long" in present:
            continue  # the budget-tuned run levels off near its KL budget; the long small-KL run is PPO's curve
        pts = [p for p in gains if p["method"] == method]
        if len(pts) < 3:
            continue
        kl = [max(p["kl"], 0.0) for p in pts]
        gold = [p["gain"] for p in pts]
        try:
            fit = fit_overoptimization(kl, gold, form)
        except ValueError:
            fit = None
        series[method] = (kl, gold, fit)
        by_x: dict[Any, list[dict]] = {}
        for p in pts:
            by_x.setdefault(p["x"], []).append(p)
        means = sorted((float(np.mean([max(p["kl"], 0) for p in g])), float(np.mean([p["rm_gain"] for p in g])))
                       for g in by_x.values())
        proxy[method] = ([m[0] for m in means], [m[1] for m in means])
        if fit is not None:
            fits[method] = fit.as_dict()
    if series:
        overoptimization_plot(series, path, proxy)
    return fits


def _ci(est: dict | None, digits: int = 2, scale: float = 1.0) -> str:
    if est is None:
        return "n/a"
    if math.isnan(est["low"]):
        return fmt(est["mean"] * scale, digits)
    half = (est["high"] - est["mean"]) * scale
    return f"{est['mean'] * scale:.{digits}f} ± {half:.{digits}f}"


def render(config, points: list[dict[str, Any]], rows: list[dict[str, Any]], path: Path) -> dict[str, Any]:
    """Plots and report.md into ``path``; returns the artifact's headline metrics."""
    frontier_plot([r for r in rows if r["method"] != "sft"], path / "frontier.png", config.confidence)
    fits = overoptimization(points, path / "overoptimization.png")
    best = best_within_budget([r for r in rows if r["method"] != "sft"], config.kl_budget,
                              config.min_well_formed)
    seeds = sorted({p["seed"] for p in points})
    lines = [
        "# Reward-KL frontier", "",
        f"Base run: `{config.base_run}`; seeds {seeds}; {config.eval.num_prompts} held-out prompts; every point "
        f"sampled at temperature {config.eval.sampling.temperature}, max {config.eval.sampling.max_new_tokens} new "
        "tokens, the same sampling seed per run seed for every method; KL is the exact per-token KL to the SFT policy "
        "summed over the response, on the policy's own samples; proxy = the base run's reward model (normalized).",
        "", f"- {BON_KL_NOTE}.",
        "- Intervals: mean ± half-width of the " f"{config.confidence:.0%} Student-t interval across seeds "
        "(per seed: the mean over prompts; gains are paired with the same seed's SFT samples).",
        "- Wall time: training to that point on this machine (PPO: cumulative train time at the snapshot, eval "
        "excluded; DPO: the stage; best-of-n: sampling and scoring n per eval prompt). Tokens generated: sampled "
        "while training (PPO: rollouts; DPO: none, it learns from the run's preference pairs) or, for best-of-n, "
        "at inference for the eval prompts.", "",
        "![frontier](frontier.png)", "",
        f"## At a KL budget of {config.kl_budget:g} nats", "",
        "Per method the setting with the best mean gold gain whose seed-mean KL is within the budget"
        + (f" and whose seed-mean well-formed fraction is at least {config.min_well_formed:.0%}."
           if config.min_well_formed > 0 else "."), "",
        "| method | setting | gold gain over SFT | proxy (RM) gain | KL | well-formed % | repeated 3-grams | length | wall time (s, mean) | tokens generated (mean) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    summary: dict[str, Any] = {}
    for method, r in sorted(best.items()):
        tokens = "n/a" if r["tokens_generated"] is None else f"{r['tokens_generated']['mean']:.0f}"
        lines.append(
            f"| {method} | {r['setting']} | {_ci(r['gain'])} | {_ci(r['rm_gain'])} | {_ci(r['kl'])} | "
            f"{_ci(r['well_formed'], 0, 100)} | {_ci(r['repeated_3grams'], 3)} | {_ci(r['length'], 1)} | "
            f"{r['wall_time_s']['mean']:.0f} | {tokens} |")  # machine load, not the method, varies it across seeds
        summary[f"budget/{method}/gold_gain"] = r["gain"]["mean"]
        summary[f"budget/{method}/kl"] = r["kl"]["mean"]
        summary[f"budget/{method}/well_formed"] = r["well_formed"]["mean"]
        summary[f"budget/{method}/setting"] = r["setting"]
    sft = [r for r in rows if r["method"] == "sft"]
    if sft:
        lines += ["", f"SFT gold reward: {_ci(sft[0]['gold'], 3)}, well-formed {_ci(sft[0]['well_formed'], 0, 100)} %."]
    per_seed = [p for p in with_gains(points) if p["method"] in best and p["setting"] == best[p["method"]]["setting"]]
    if per_seed:
        lines += ["", "Per seed at the chosen setting (gold gain / KL): " + "; ".join(
            f"{m} " + ", ".join(f"s{p['seed']} {p['gain']:+.3f}/{p['kl']:.2f}" for p in sorted(per_seed, key=lambda p: p["seed"])
                               if p["method"] == m) for m in sorted(best))]

    ends = run_ends(rows)
    if ends:
        lines += ["", "The budget table's setting is the best of a run's snapshots, picked on the samples it is scored "
                  "on, so it reads a little high. The policy each run ends with is picked by nobody:", "",
                  "| run (end) | setting | gold gain over SFT | KL | well-formed % | within the budget |",
                  "|---|---|---|---|---|---|"]
        for name, r in sorted(ends.items()):
            within = within_budget(r, config.kl_budget, config.min_well_formed)
            lines.append(f"| {name} | {r['setting']} | {_ci(r['gain'])} | {_ci(r['kl'])} | "
                         f"{_ci(r['well_formed'], 0, 100)} | {'yes' if within else 'no'} |")
            summary[f"end/{r['method']}/{r['setting']}/gold_gain"] = r["gain"]["mean"]

    lines += ["", "## Over-optimization (Gao et al. 2022)", "",
              "Gold gain (points, every seed) and proxy RM gain (dashed, seed means) against d = sqrt(KL); "
              "fits `R_RL(d) = d(α − β log d)` for PPO and `R_bon(d) = d(α − βd)` for best-of-n (best-of-n at the "
              "KL bound), made on the lower 75 % of the KL range, R² on the held-out rest.", ""]
    if fits:
        lines += ["![over-optimization](overoptimization.png)", "",
                  "| method | form | α | β | R² (fit) | R² (held out) | gold peak | at KL | drop after peak |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for method, f in fits.items():
            lines.append(f"| {method} | {f['form']} | {fmt(f['alpha'])} | {fmt(f['beta'])} | {fmt(f['r2_fit'])} | "
                         f"{fmt(f['r2_held_out'])} | {fmt(f['gold_peak'])} | {fmt(f['gold_peak_kl'], 2)} | "
                         f"{fmt(f['drop_after_peak'])} |")
            summary[f"overopt/{method}/r2_held_out"] = f["r2_held_out"]
    else:
        lines.append("(too few PPO / best-of-n points to fit)")

    runs = [m for m in ENSEMBLE_PAIRS if any(p["method"] == m for p in points)]  # pairs: same settings, other RM
    if any(m.endswith("_ensemble") for m in runs):
        lines += ["", "## Reward-model ensemble vs single reward model", "",
                  f"Ensemble: {config.reward.ensemble_size} members combined by {config.ensemble_objective}. PPO: the "
                  "long small-KL run; best-of-n: the same samples, picked by the other reward model. Gold-gain drop "
                  "from the run's peak to its end (PPO: the last step; best-of-n: the largest n), per seed (mean ± "
                  f"t-interval), over the whole run and within the KL budget ({config.kl_budget:g} nats).", "",
                  "| policy | drop, whole run | drop within budget | final KL | final gold gain |", "|---|---|---|---|---|"]
        for m in runs:
            last = max((r for r in rows if r["method"] == m), key=lambda r: r["x"])
            whole, within = t_interval(drop_from_peak(points, m)), t_interval(drop_from_peak(points, m, config.kl_budget))
            lines.append(f"| {ENSEMBLE_PAIRS[m]} | {_ci(whole.as_dict(), 3)} | {_ci(within.as_dict(), 3)} | "
                         f"{_ci(last['kl'])} | {_ci(last['gain'], 3)} |")
            summary[f"drop/{m}"] = whole.mean
    lines += ["", "## Every setting", "", "KL estimate: best-of-n's plug-in estimate (see above); KL is its bound.", "",
              "| method | setting | KL | KL estimate | gold gain | proxy gain | well-formed % | repeated 3-grams | seeds |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['setting']} | {_ci(r['kl'])} | {_ci(r['kl_estimate'])} | {_ci(r['gain'], 3)} | "
                     f"{_ci(r['rm_gain'])} | {_ci(r['well_formed'], 0, 100)} | {_ci(r['repeated_3grams'], 3)} | "
                     f"{len(r['seeds'])} |")
    (path / "report.md").write_text("\n".join(lines) + "\n")
    return summary
