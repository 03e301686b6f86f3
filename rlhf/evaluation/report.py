"""The Markdown report: summary table, one metric table per policy, plots and a sample table."""

from __future__ import annotations

import math
from typing import Any

from rlhf.evaluation.generalization import generalization_lines, split_lines

# Characters that Markdown (CommonMark + GFM tables) would otherwise read as markup.
_BACKSLASH_ESCAPED = set("\\`*_[]|~#!")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}

METRIC_LABELS = {
    "gold_reward": "gold reward",
    "rm_score": "RM score (normalized)",
    "kl": "KL exact (nats)",
    "kl_k1": "KL k1",
    "kl_k3": "KL k3",
    "response_length": "length (tokens)",
    "well_formed": "well-formed fraction",
    "repeated_3grams": "repeated word 3-grams",
    "win_rate": "win rate vs reference",
}


def md_escape(text: str) -> str:
    """Model text made safe for a Markdown table cell: markup escaped, newlines as <br>."""
    if not text.strip():
        return "*(empty)*"
    out = []
    for ch in text:
        if ch in _BACKSLASH_ESCAPED:
            out.append("\\" + ch)
        else:
            out.append(_ENTITIES.get(ch, ch))
    return "".join(out).replace("\r\n", "\n").replace("\n", "<br>")


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def fmt_ci(est: dict[str, float] | None) -> str:
    if est is None:
        return "n/a"
    return f"{fmt(est['mean'])} [{fmt(est['low'])}, {fmt(est['high'])}]"


def trained_at(m: dict[str, Any]) -> str:
    """The policy's training temperature, flagged when it is not the temperature of the table's samples."""
    trained = m.get("training_sampling")
    if trained is None:
        return "unknown (!)"
    return f"T={trained['temperature']:g}" + ("" if m["same_temperature"] else " (!)")


def footing_lines(metrics: dict[str, Any]) -> list[str]:
    """What setting the summary table is at, and which policies were optimised under another."""
    temperature = metrics["sampling"]["temperature"]
    off = {name: m for name, m in metrics["policies"].items() if not m.get("same_temperature")}
    if not off:
        return [f"Every policy was optimised at the table's temperature ({temperature:g})."]
    described = ", ".join(
        f"{md_escape(name)} ({'not recorded' if m.get('training_sampling') is None else 'trained at T=%g' % m['training_sampling']['temperature']})"
        for name, m in off.items())
    own = any(m.get("own_setting") for m in metrics["policies"].values())
    return [f"(!) Not at their training temperature in this table: {described}. Every row is sampled at "
            f"T={temperature:g}; " + ("see the next table for each at its own setting."
                                       if own else "set also_own_setting=true for a table at each policy's own setting.")]


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def render_report(metrics: dict[str, Any], samples: list[dict[str, Any]], plots: dict[str, str],
                  missing_curves: list[str], samples_in_report: int) -> str:
    """``metrics`` as written to metrics.json; ``samples`` rows of samples.jsonl; ``plots`` title -> file."""
    conf = f"{metrics['confidence']:.0%}"
    policies = metrics["policies"]
    lines = [
        "# Evaluation report",
        "",
        f"- reference policy (KL and win-rate baseline): `{metrics['reference']['path']}`",
        f"- reward model: `{metrics['reward_model']}`" if metrics["reward_model"] else "- reward model: none (RM score skipped)",
        f"- {metrics['num_prompts']} held-out prompts, one sample each, seed {metrics['seed']}; every policy sampled "
        f"at one setting: temperature {metrics['sampling']['temperature']}, at most "
        f"{metrics['sampling']['max_new_tokens']} new tokens (column 'trained at': the temperature each was optimised at)",
        *(split_lines(metrics["data_split"], metrics["num_prompts"]) if metrics.get("data_split") else []),
        f"- intervals: {conf} Student-t for means, {conf} percentile bootstrap for the win rate "
        "(ties count half)",
        "- KL: exact = sum over response tokens of the full-vocabulary KL(policy || reference); "
        "k1 = sum log p - log p_ref, k3 = sum (r - 1) - log r, r = p_ref / p, on the sampled tokens",
        "",
        "## Summary",
        "",
    ]
    header = ["policy", "kind", "trained at", f"gold reward ({conf} CI)", "RM score", "KL exact", "KL k1", "KL k3",
              "length", "well-formed", "rep. 3-grams", "distinct-1", "distinct-2", "win rate vs ref"]
    rows = [
        [md_escape(name), m["kind"], trained_at(m), fmt_ci(m["gold_reward"]), fmt_ci(m.get("rm_score")),
         fmt_ci(m["kl"]), fmt(m["kl_k1"]["mean"]), fmt(m["kl_k3"]["mean"]), fmt(m["response_length"]["mean"], 1),
         fmt(m["well_formed"]["mean"], 2), fmt(m["repeated_3grams"]["mean"], 2), fmt(m["distinct_1"]),
         fmt(m["distinct_2"]), fmt_ci(m["win_rate"])]
        for name, m in policies.items()
    ]
    lines += _table(header, rows)
    lines += ["", *footing_lines(metrics)]
    own = {name: m["own_setting"] for name, m in policies.items() if m.get("own_setting")}
    if own:
        lines += ["", "## At each policy's own training setting", "",
                  "Only policies optimised under another setting than the summary table's; the reference is sampled "
                  "at the same setting for the KL (computed at that temperature) and the win rate. Do not compare "
                  "these rows with the summary table's.", ""]
        lines += _table(
            ["policy", "temperature", "max new tokens", f"gold reward ({conf} CI)", "RM score", "KL exact",
             "well-formed", "win rate vs ref"],
            [[md_escape(name), f"{o['sampling']['temperature']:g}", str(o["sampling"]["max_new_tokens"]),
              fmt_ci(o["gold_reward"]), fmt_ci(o.get("rm_score")), fmt_ci(o["kl"]), fmt(o["well_formed"]["mean"], 2),
              fmt_ci(o["win_rate"])] for name, o in own.items()])

    for name, m in policies.items():
        lines += ["", f"## Policy: {md_escape(name)}", "",
                  f"`{m['path']}` ({m['kind']} artifact, fingerprint `{m['fingerprint']}`)", ""]
        rows = [[label, fmt(m[key]["mean"]), fmt(m[key]["low"]), fmt(m[key]["high"])]
                for key, label in METRIC_LABELS.items() if m.get(key) is not None]
        rows += [[f"distinct-{n}", fmt(m[f"distinct_{n}"]), "", ""] for n in (1, 2)]
        lines += _table(["metric", "mean", f"{conf} CI low", f"{conf} CI high"], rows)

    lines += ["", *generalization_lines({md_escape(k): v for k, v in metrics.get("generalization", {}).items()}, fmt)]
    lines += ["## Plots", ""]
    for title, file in plots.items():
        lines += [f"### {title}", "", f"![{title}]({file})", ""]
    if missing_curves:
        lines += [f"No training curves for: {', '.join(map(md_escape, missing_curves))} "
                  "(no log_history.jsonl with the plotted metrics).", ""]

    lines += ["## Samples", ""]
    names = list(policies)
    by_prompt: dict[str, dict[str, Any]] = {}
    for row in samples:
        by_prompt.setdefault(row["prompt_id"], {"prompt": row["prompt"], "reference": row["reference_response"],
                                                "reference_gold": row["reference_gold_reward"]})[row["policy"]] = row
    rows = []
    for pid, entry in list(by_prompt.items())[:samples_in_report]:
        cells = [md_escape(entry["prompt"]), f"{md_escape(entry['reference'])} ({fmt(entry['reference_gold'], 2)})"]
        cells += [f"{md_escape(entry[n]['response'])} ({fmt(entry[n]['gold_reward'], 2)})" for n in names]
        rows.append(cells)
    lines += [f"First {len(rows)} prompts; each response is followed by its gold reward.", ""]
    lines += _table(["prompt", "reference", *map(md_escape, names)], rows)
    return "\n".join(lines) + "\n"
