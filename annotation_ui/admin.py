"""Admin report: labels per annotator, inter-annotator agreement, gold accuracy, flagged items
and rationales.

Shown in the app's Admin tab (users listed as admins) as HTML in which *every* piece of annotator
or model text is ``html.escape``d: no Markdown, no links, no images, nothing fetched; rationales are
shown in full. Printed as plain text by ``python -m annotation_ui.admin --db labels.sqlite [--overlap N]``.
"""

from __future__ import annotations

import argparse
import html
import math
import time
from typing import Any, Callable

from rlhf.preferences import quality
from rlhf.preferences.agreement import per_annotator_agreement
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


def agreement_by_kind(labels: list[Label]) -> dict[str, dict[str, Any]]:
    """{"pairs (K=2)": {...}, "K-way (K>=3)": {...}}: the statistics per kind of item."""
    from rlhf.preferences.agreement import agreement as summary

    s = summary(labels)
    return {name: {"overlapping_items": sub.overlapping_items, "annotator_pairs": sub.annotator_pairs,
                   "pairwise_agreement": sub.pairwise_rate, "krippendorff_alpha": sub.krippendorff_alpha,
                   "mean_kendall_tau": sub.kendall_tau}
            for name, sub in (("pairs (K=2)", s.pair), ("K-way (K>=3)", s.kway))}


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
        "agreement_by_kind": agreement_by_kind(labels),
        "per_annotator_agreement": per_annotator_agreement(labels),
        "gold": {row["annotator"]: row for row in quality.accuracy(store)},
        "gold_items": len(quality.gold_answers(store)),
        "flagged": store.flagged(),
        "rationales": [lab for lab in labels if lab.rationale.strip()],
        "overlap": overlap,
    }


def _e(text: Any) -> str:
    """Untrusted text -> HTML that shows it literally (no tags, no links, no entities interpreted)."""
    return html.escape(str(text), quote=True)


def _table(header: list[str], rows: list[list[Any]], empty: str = "none") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    if not rows:
        body = f'<tr><td colspan="{len(header)}">{_e(empty)}</td></tr>'
    return f'<table class="admin-table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _ranking(store: LabelStore, lab: Label) -> str:
    if lab.skipped:
        return "skipped"
    vote = lab.meta.get("vote")
    order = sorted(lab.ranks, key=lambda c: lab.ranks[c])
    text = " ".join(f"{c}:{lab.ranks[c]}" for c in order)
    return f"{vote} ({text})" if vote and vote != "ranking" else text


def report_html(store: LabelStore, overlap: int = 1) -> str:
    """The Admin tab: escaped HTML tables (annotator text is shown literally, in full)."""
    r = report(store, overlap)
    out = [f"<p>Items: {r['done_items']} / {r['total_items']} done (overlap {overlap}) · current labels: "
           f"{r['labels']} · label rows incl. revisions: {r['rows']} · gold items: {r['gold_items']}</p>",
           "<h3>Annotators</h3>"]
    rows = []
    names = sorted({a["annotator"] for a in r["annotators"]} | set(r["gold"]))
    counts = {a["annotator"]: a for a in r["annotators"]}
    for name in names:
        a = counts.get(name, {"labelled": 0, "skipped": 0, "flagged": 0, "revisions": 0, "last_at": None})
        agr = r["per_annotator_agreement"].get(name, {"rate": math.nan, "comparisons": 0})
        g = r["gold"].get(name)
        gold = (f"{g['correct']}/{g['gold_answers']} = {_fmt(g['accuracy'])} [{g['low']:.2f}, {g['high']:.2f}]"
                if g and g["gold_answers"] else "")
        status = ("PAUSED: " + g["reason"]) if g and g["paused"] else "active"
        last = time.strftime("%Y-%m-%d %H:%M", time.localtime(a["last_at"])) if a["last_at"] else ""
        rows.append([name, a["labelled"], a["skipped"], a["flagged"], a["revisions"],
                     f"{_fmt(agr['rate'])} ({agr['comparisons']})", gold, status, last])
    out.append(_table(["annotator", "labelled", "skipped", "flagged", "revisions",
                       "agreement with others (comparisons)", "gold accuracy [interval]", "status",
                       "last submit"], rows, "no labels yet"))
    out.append("<h3>Agreement (pairs and K-way items apart)</h3>")
    kinds = r["agreement_by_kind"]
    metrics = list(next(iter(kinds.values())))
    out.append(_table(["metric", *kinds], [[m, *(_fmt(kinds[k][m]) for k in kinds)] for m in metrics]))
    out.append(f"<h3>Flagged items ({len(r['flagged'])})</h3>")
    out.append(_table(["item", "annotator", "label", "rationale"],
                      [[f.item_id, f.annotator, _ranking(store, f), f.rationale] for f in r["flagged"]]))
    out.append(f"<h3>Rationales ({len(r['rationales'])})</h3>")
    out.append(_table(["item", "annotator", "label", "flagged", "rationale"],
                      [[lab.item_id, lab.annotator, _ranking(store, lab), "yes" if lab.flagged else "",
                        lab.rationale] for lab in r["rationales"]]))
    return '<div class="admin-report">' + "".join(out) + "</div>"


def item_html(store: LabelStore, item_id: str) -> str:
    """One item for the admin: prompt, candidates, gold answer and every current label, escaped."""
    try:
        item = store.item(item_id.strip())
    except KeyError:
        return f"<p>No item {_e(item_id.strip())!s} in the label DB.</p>"
    gold = quality.gold_answers(store).get(item.item_id)
    out = [f"<h3>Item {_e(item.item_id)}</h3>", '<div class="admin-prompt">', _e(item.prompt), "</div>"]
    out.append(_table(["candidate", "text"], [[c, t] for c, t in zip(item.candidate_ids, item.candidates)]))
    if gold:
        out.append(f"<p>Gold answer: {_e(gold)}</p>")
    labels = [lab for lab in store.labels() if lab.item_id == item.item_id]
    out.append(_table(["annotator", "label", "flagged", "rationale"],
                      [[lab.annotator, _ranking(store, lab), "yes" if lab.flagged else "", lab.rationale]
                       for lab in labels], "no labels yet"))
    return '<div class="admin-item">' + "".join(out) + "</div>"


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
    out += [f"  {f.item_id}  by {f.annotator}{'  (skipped)' if f.skipped else ''}  {' '.join(f.rationale.split())}"
            for f in r["flagged"]]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m annotation_ui.admin", description=__doc__.split("\n")[0])
    parser.add_argument("--db", required=True, help="SQLite label store written by the annotation app")
    parser.add_argument("--overlap", type=int, default=1, help="annotators per item (for the 'done' count)")
    args = parser.parse_args(argv)
    from rlhf.preferences.export import open_label_db  # never creates a DB on a mistyped path
    from rlhf.artifacts import ArtifactError

    try:
        store = open_label_db(args.db)
    except ArtifactError as exc:
        parser.exit(2, f"error: {exc}\n")
    print(report_text(store, args.overlap))


if __name__ == "__main__":
    main()
