"""Admin report: labels per annotator, inter-annotator agreement and flagged items.

Shown in the app's Admin tab (users listed as admins) and printed by
``python -m annotation_ui.admin --db labels.sqlite [--overlap N]``.
Agreement comes from ``rlhf.preferences.agreement`` when that module is present.
"""

from __future__ import annotations

import argparse
import html
import math
import time
from typing import Any, Callable

from rlhf.preferences.store import Label, LabelStore

AGREEMENT_METRICS = ("pairwise_agreement", "krippendorff_alpha", "mean_kendall_tau")


def agreement(labels: list[Label]) -> dict[str, Any] | None:
    """{metric: value} from rlhf.preferences.agreement, or None when that module is not available."""
    try:
        from rlhf.preferences import agreement as mod
    except ImportError:
        return None
    ranked = [lab for lab in labels if not lab.skipped]
    out: dict[str, Any] = {}
    summary = getattr(mod, "agreement", None)
    if summary is not None:
        try:
            s = summary(ranked)
            out["overlapping_items"] = s.overlapping_items
            out["annotator_pairs"] = s.annotator_pairs
        except Exception:
            pass
    for name in AGREEMENT_METRICS:
        fn: Callable | None = getattr(mod, name, None)
        if fn is None:
            continue
        try:
            out[name] = fn(ranked)
        except Exception as exc:  # too few overlapping labels and the like: report, don't crash the panel
            out[name] = f"n/a ({exc})"
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:.3f}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def _cell(text: Any, limit: int = 80) -> str:
    """Untrusted text for a Markdown table cell: escaped, one line, bounded."""
    s = " ".join(str(text).split())
    s = s if len(s) <= limit else s[: limit - 1] + "…"
    return html.escape(s).replace("|", "&#124;")


def report(store: LabelStore, overlap: int = 1) -> dict[str, Any]:
    labels = store.labels()
    items = store.items()
    per_item: dict[str, int] = {}
    for lab in labels:
        if not lab.skipped:
            per_item[lab.item_id] = per_item.get(lab.item_id, 0) + 1
    return {
        "annotators": store.counts_by_annotator(),
        "total_items": len(items),
        "done_items": sum(1 for n in per_item.values() if n >= overlap),
        "labels": sum(per_item.values()),
        "rows": len(store.labels(latest_only=False)),
        "agreement": agreement(labels),
        "flagged": store.flagged(),
        "overlap": overlap,
    }


def report_markdown(store: LabelStore, overlap: int = 1) -> str:
    r = report(store, overlap)
    lines = [
        f"**Items:** {r['done_items']} / {r['total_items']} done (overlap {overlap}) · **current labels:** "
        f"{r['labels']} · **label rows incl. revisions:** {r['rows']}",
        "",
        "### Annotators",
        "| annotator | labelled | skipped | flagged | revisions | last submit |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for a in r["annotators"]:
        last = time.strftime("%Y-%m-%d %H:%M", time.localtime(a["last_at"])) if a["last_at"] else ""
        lines.append(f"| {_cell(a['annotator'])} | {a['labelled']} | {a['skipped']} | {a['flagged']} | "
                     f"{a['revisions']} | {last} |")
    if not r["annotators"]:
        lines.append("| (no labels yet) | | | | | |")
    lines += ["", "### Agreement"]
    if r["agreement"] is None:
        lines.append("*rlhf.preferences.agreement is not available: counts only.*")
    else:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(_fmt(v), 120)} |" for k, v in r["agreement"].items()]
    lines += ["", f"### Flagged items ({len(r['flagged'])})"]
    if r["flagged"]:
        lines += ["| item | annotator | skipped | rationale |", "|---|---|---|---|"]
        lines += [f"| {_cell(f.item_id)} | {_cell(f.annotator)} | {'yes' if f.skipped else 'no'} | "
                  f"{_cell(f.rationale)} |" for f in r["flagged"]]
    else:
        lines.append("None.")
    return "\n".join(lines)


def report_text(store: LabelStore, overlap: int = 1) -> str:
    """Plain-text tables for the terminal."""
    r = report(store, overlap)
    out = [f"items done: {r['done_items']}/{r['total_items']} (overlap {overlap})   current labels: {r['labels']}"
           f"   rows incl. revisions: {r['rows']}", ""]
    header = f"{'annotator':<20} {'labelled':>8} {'skipped':>8} {'flagged':>8} {'revisions':>9}"
    out += [header, "-" * len(header)]
    for a in r["annotators"]:
        out.append(f"{a['annotator'][:20]:<20} {a['labelled']:>8} {a['skipped']:>8} {a['flagged']:>8} "
                   f"{a['revisions']:>9}")
    out.append("")
    if r["agreement"] is None:
        out.append("agreement: rlhf.preferences.agreement is not available (counts only)")
    else:
        out += [f"{k}: {_fmt(v)}" for k, v in r["agreement"].items()]
    out += ["", f"flagged items: {len(r['flagged'])}"]
    out += [f"  {f.item_id}  by {f.annotator}{'  (skipped)' if f.skipped else ''}  {' '.join(f.rationale.split())[:80]}"
            for f in r["flagged"]]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m annotation_ui.admin", description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True, help="SQLite label store written by the annotation app")
    parser.add_argument("--overlap", type=int, default=1, help="annotators per item (for the 'done' count)")
    args = parser.parse_args(argv)
    print(report_text(LabelStore(args.db), args.overlap))


if __name__ == "__main__":
    main()
