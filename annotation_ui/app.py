"""The annotation UI: a Gradio layout builder and plain handler functions (FastChat arena style).

``build_app(store, config)`` only lays out components and wires events. Every event calls a plain
handler over a typed per-session ``TaskState`` that returns ``(state, View)``; ``_render`` turns a
``View`` into a dict keyed by component, so no handler depends on the order of an output list.

Model outputs are untrusted: every prompt and candidate is ``html.escape``d before it reaches a
``gr.HTML``, so markup in a candidate shows as text and never runs.
"""

from __future__ import annotations

import hashlib
import html
import json
import random
import string
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gradio as gr

from annotation_ui.users import Users
from rlhf.preferences import quality
from rlhf.preferences.store import Item, Label, LabelRefused, LabelStore

LETTERS = string.ascii_uppercase
MAX_K = len(LETTERS)  # responses per item the page can show (A..Z)
MAX_RATIONALE = 2000  # characters; enforced on the server (the text box only hints at it)


@dataclass
class AppConfig:
    """Settings of one annotation server (see ``python -m annotation_ui --help``)."""

    overlap: int = 1  # each item goes to this many distinct annotators
    guidelines: str | Path | None = None  # Markdown file shown in the guidelines panel
    users: Users = field(default_factory=Users)  # empty = no sign-in (labels are written as `anonymous`)
    title: str = "Preference annotation"
    anonymous_name: str = "anonymous"  # annotator name used only when sign-in is off
    qc: quality.QCConfig | None = field(default_factory=quality.QCConfig)  # gold items / auto-pause; None = off
    max_file_size: str = "1mb"  # Gradio's upload limit (the app itself takes no uploads)
    heartbeat_s: float = 30.0  # the page renews its lease (or re-checks an empty queue) this often


@dataclass
class TaskState:
    """Per-browser-session state (held in ``gr.State``)."""

    annotator: str = ""
    item_id: str | None = None
    order: list[str] = field(default_factory=list)  # candidate ids in the order shown to this annotator
    request_id: str = ""  # one per shown task: a double submit of the same task stores one row
    revising: int | None = None  # label_id being revised after "back"
    back_steps: int = 0  # 0 = on a fresh task; n = n-th most recent own label
    shown_at: float = 0.0
    last_back: str = ""  # request id of the last Back (a resent Back does not step twice)


@dataclass
class View:
    """Everything the task panel shows; ``_render`` maps it onto components."""

    state: TaskState
    header: str = ""
    prompt_html: str = ""
    candidates: list[str] = field(default_factory=list)  # escaped HTML per shown slot
    ranks: list[str | None] = field(default_factory=list)
    flagged: bool = False
    rationale: str = ""
    status: str = ""


# ------------------------------------------------------------------------------------------------
# Pure helpers.


def display_order(annotator: str, item: Item) -> list[str]:
    """Candidate ids shuffled per annotator and item: stable across reloads and restarts."""
    seed = int.from_bytes(hashlib.sha256(f"{annotator}\x00{item.item_id}".encode()).digest()[:8], "big")
    order = list(item.candidate_ids)
    random.Random(seed).shuffle(order)
    return order


def escape_text(text: str) -> str:
    """Untrusted text -> HTML that displays it literally (tags, scripts and all)."""
    return html.escape(text, quote=True)


def candidate_html(slot: int, text: str) -> str:
    return (
        f'<div class="cand" data-slot="{slot}"><div class="cand-label">Response {LETTERS[slot]}</div>'
        f'<div class="cand-text">{escape_text(text)}</div></div>'
    )


def prompt_html(item: Item, k: int, revising: bool) -> str:
    note = '<span class="revising">revising your earlier label</span>' if revising else ""
    return (
        f'<div id="task-meta" data-k="{k}" data-item="{escape_text(item.item_id)}"></div>'
        f'<div class="prompt"><div class="prompt-label">Prompt {note}</div>'
        f'<div class="prompt-text">{escape_text(item.prompt)}</div></div>'
    )


def rank_choices(k: int) -> list[tuple[str, str]]:
    return [(f"{r} (best)" if r == 1 else (f"{r} (worst)" if r == k else str(r)), str(r)) for r in range(1, k + 1)]


def ranks_from_slots(state: TaskState, slot_ranks: list[Any]) -> dict[str, int]:
    """Slot values (display order) -> {candidate_id: rank}; unset slots are left out."""
    return {cid: int(v) for cid, v in zip(state.order, slot_ranks) if v not in (None, "")}


def _progress_md(store: LabelStore, cfg: AppConfig, annotator: str) -> str:
    p = store.progress(annotator, cfg.overlap)
    return (
        f"Signed in as **{escape_text(annotator)}** · your labels: **{p['mine']}** · "
        f"items done: **{p['done_items']} / {p['total_items']}** (each needs {cfg.overlap} annotator"
        f"{'s' if cfg.overlap != 1 else ''})"
    )


def choose_item(store: LabelStore, cfg: AppConfig, annotator: str) -> Item | None:
    """The next task: a gold item when quality control says one is due, else ``store.next_item``;
    None when nothing is left or the annotator is paused."""
    return quality.choose_item(store, annotator, cfg.overlap, cfg.qc)


def check_rationale(rationale: str | None) -> str:
    text = (rationale or "").strip()
    if len(text) > MAX_RATIONALE:
        raise gr.Error(f"The rationale is {len(text)} characters long; keep it under {MAX_RATIONALE}.")
    return text


def quality_hook(store: LabelStore, cfg: AppConfig, annotator: str) -> None:
    """After every stored label: let quality control pause an annotator with a weak gold record."""
    if cfg.qc is not None:
        quality.after_label(store, annotator, cfg.qc)


def _annotator(cfg: AppConfig, request: gr.Request | None) -> str:
    """The signed-in user; refuses to write anonymously when sign-in is on."""
    name = getattr(request, "username", None) if request is not None else None
    if cfg.users.enabled:
        if not name:
            raise gr.Error("Not signed in: reload the page and sign in before annotating.")
        return name
    return name or cfg.anonymous_name


# ------------------------------------------------------------------------------------------------
# Handlers: (store, config, state, inputs, request) -> (state, View).


def show_item(store: LabelStore, cfg: AppConfig, state: TaskState, item: Item | None,
              label: Label | None = None, status: str = "") -> View:
    """Build the view of ``item`` (prefilled from a draft, or from ``label`` when revising)."""
    header = _progress_md(store, cfg, state.annotator)
    if item is None:
        state = replace(state, item_id=None, order=[], request_id="", revising=None)
        done = "**All done - no more items for you. Thank you!** Use *Back* to revise your labels."
        if cfg.qc is not None and quality.is_paused(store, state.annotator):
            done = ("**Your account is paused for review** (answers on check items with known answers). "
                    "Please contact the organiser.")
        return View(state, header, status=(status + "\n\n" if status else "") + done)
    if len(item.candidate_ids) > MAX_K:
        raise gr.Error(f"Item {item.item_id} has {len(item.candidate_ids)} responses; the page shows at most {MAX_K}.")
    order = display_order(state.annotator, item)
    text = dict(zip(item.candidate_ids, item.candidates))
    state = replace(state, item_id=item.item_id, order=order, request_id=uuid.uuid4().hex,
                    revising=label.label_id if label else None, shown_at=time.time())
    ranks: list[str | None] = [None] * len(order)
    flagged, rationale = False, ""
    source = None
    if label is not None:
        source = {"ranks": label.ranks, "flagged": label.flagged, "rationale": label.rationale}
    else:
        source = store.load_draft(state.annotator, item.item_id)
        if source:
            status = (status + " " if status else "") + "Restored your unsaved draft."
    if source:
        ranks = [str(source.get("ranks", {}).get(cid)) if source.get("ranks", {}).get(cid) else None for cid in order]
        flagged, rationale = bool(source.get("flagged")), str(source.get("rationale", ""))
    return View(
        state, header, prompt_html(item, len(order), label is not None),
        [candidate_html(i, text[cid]) for i, cid in enumerate(order)], ranks, flagged, rationale, status,
    )


def on_load(store: LabelStore, cfg: AppConfig, state: TaskState, request: gr.Request | None) -> View:
    state = replace(TaskState(), annotator=_annotator(cfg, request))
    return show_item(store, cfg, state, choose_item(store, cfg, state.annotator))


def _after_submit(store: LabelStore, cfg: AppConfig, state: TaskState, saved: Label, what: str) -> View:
    if state.back_steps > 1:  # keep walking forward through the labels being revised
        history = store.history(state.annotator)
        state = replace(state, back_steps=state.back_steps - 1)
        if len(history) >= state.back_steps:
            lab = history[-state.back_steps]
            return show_item(store, cfg, state, store.item(lab.item_id), lab, f"Saved {what} (#{saved.label_id}).")
    state = replace(state, back_steps=0)
    return show_item(store, cfg, state, choose_item(store, cfg, state.annotator),
                     status=f"Saved {what} (#{saved.label_id}).")


def _bound(store: LabelStore, cfg: AppConfig, state: TaskState, page_item: str, request: gr.Request | None) -> str:
    """The signed-in annotator, after checking the page acts on the item this session holds or revises."""
    annotator = _annotator(cfg, request)
    if annotator != state.annotator or not page_item:
        raise gr.Error("No task is open on this page: reload it.")
    if page_item != (state.item_id or ""):
        raise gr.Error(f"Not saved: this page shows item {page_item}, but your open task is "
                       f"{state.item_id or 'none'} (an old reply?). Reload the page.")
    return annotator


def _submit(store: LabelStore, cfg: AppConfig, state: TaskState, page: tuple[str, str], slot_ranks: list[Any], *,
            skipped: bool, flagged: bool, rationale: str, vote: str, request: gr.Request | None,
            ranks: dict[str, int] | None = None) -> View:
    """Store the action the page sent for the item it shows (``page`` = (item id, request id))."""
    page_item, request_id = page
    annotator = _annotator(cfg, request)
    if request_id and page_item and store.label_by_request(request_id) is not None:
        # A resent request (lost reply, double click): same payload -> the stored row, nothing new.
        order = display_order(annotator, store.item(page_item))
        ranks = ranks if ranks is not None else ranks_from_slots(replace(state, order=order), slot_ranks)
        try:
            saved = store.submit(annotator, page_item, {} if skipped else ranks, skipped=skipped,
                                 flagged=bool(flagged), rationale=(rationale or "").strip(), request_id=request_id)
        except ValueError as exc:
            raise gr.Error(f"Not saved: {exc}") from exc
        current = store.item(state.item_id) if state.item_id else None
        return show_item(store, cfg, state, current, status=f"Already saved (#{saved.label_id}).")
    _bound(store, cfg, state, page_item, request)
    if ranks is None:
        ranks = ranks_from_slots(state, slot_ranks)
    meta = {"vote": vote, "display_order": state.order, "seconds": round(time.time() - state.shown_at, 1),
            "source": "ui"}
    try:
        saved = store.submit(annotator, page_item, ranks, skipped=skipped, flagged=bool(flagged),
                             rationale=check_rationale(rationale), request_id=request_id or None, meta=meta,
                             overlap=cfg.overlap)
    except LabelRefused as exc:
        if exc.reason in ("stale_item", "request_reused"):
            raise gr.Error(f"Not saved: {exc}") from exc
        # The slot went to someone else: say so and move on to the next task.
        state = replace(state, back_steps=0)
        return show_item(store, cfg, state, choose_item(store, cfg, annotator), status=f"Not saved: {exc}.")
    except ValueError as exc:
        raise gr.Error(str(exc)) from exc
    quality_hook(store, cfg, annotator)
    what = "skip" if skipped else ("revision" if saved.supersedes else "label")
    return _after_submit(store, cfg, state, saved, what)


def submit_ranking(store: LabelStore, cfg: AppConfig, state: TaskState, page: tuple[str, str], slot_ranks: list[Any],
                   flagged: bool, rationale: str, request: gr.Request | None) -> View:
    missing = [LETTERS[i] for i, v in enumerate(slot_ranks[: len(state.order)]) if v in (None, "")]
    if state.item_id is not None and page[0] == state.item_id and missing:
        raise gr.Error(f"Give every response a rank first (missing: {', '.join(missing)}), or press Skip.")
    return _submit(store, cfg, state, page, slot_ranks, skipped=False, flagged=flagged, rationale=rationale,
                   vote="ranking", request=request)


ARENA_VOTES = {  # K=2 buttons: vote -> (rank of A, rank of B)
    "a_better": (1, 2),
    "b_better": (2, 1),
    "tie": (1, 1),
    "both_bad": (1, 1),  # a tie that is recorded as "both bad" in meta
}


def submit_vote(store: LabelStore, cfg: AppConfig, state: TaskState, page: tuple[str, str], vote: str, flagged: bool,
                rationale: str, request: gr.Request | None) -> View:
    if page[0] == state.item_id and len(state.order) != 2:
        raise gr.Error("The A/B buttons are for pairs; rank the responses and press Submit.")
    order = display_order(_annotator(cfg, request), store.item(page[0])) if page[0] else state.order
    if len(order) != 2:
        raise gr.Error("The A/B buttons are for pairs; rank the responses and press Submit.")
    ranks = dict(zip(order, ARENA_VOTES[vote]))
    return _submit(store, cfg, state, page, [], skipped=False, flagged=flagged, rationale=rationale, vote=vote,
                   request=request, ranks=ranks)


def skip(store: LabelStore, cfg: AppConfig, state: TaskState, page: tuple[str, str], flagged: bool, rationale: str,
         request: gr.Request | None) -> View:
    return _submit(store, cfg, state, page, [], skipped=True, flagged=flagged, rationale=rationale, vote="skip",
                   request=request, ranks={})


def go_back(store: LabelStore, cfg: AppConfig, state: TaskState, page: tuple[str, str],
            request: gr.Request | None) -> View:
    """Show this annotator's previous label for revision (a new submit supersedes it)."""
    page_item, request_id = page
    annotator = _annotator(cfg, request)
    if request_id and request_id == state.last_back:  # a resent Back: stay where the first one went
        current = store.item(state.item_id) if state.item_id else None
        return show_item(store, cfg, state, current, store.label_for(annotator, state.item_id) if state.revising
                         and state.item_id else None)
    if annotator != state.annotator or page_item != (state.item_id or ""):
        raise gr.Error(f"This page shows item {page_item or 'none'}, but your open task is "
                       f"{state.item_id or 'none'} (an old reply?). Reload the page.")
    history = store.history(annotator)
    steps = state.back_steps + 1
    if steps > len(history):
        raise gr.Error("Nothing further back to revise." if history else "You have not labelled anything yet.")
    lab = history[-steps]
    state = replace(state, annotator=annotator, back_steps=steps, last_back=request_id)
    return show_item(store, cfg, state, store.item(lab.item_id), lab,
                     f"Revising label #{lab.label_id} ({steps} back). Submit saves a new revision; the old row is kept.")


def heartbeat(store: LabelStore, cfg: AppConfig, state: TaskState, request: gr.Request | None) -> View | None:
    """Timer tick: renew the lease on the open task, or re-check an empty queue. None = nothing to change."""
    if not state.annotator:
        return None
    if state.item_id is None:
        item = choose_item(store, cfg, state.annotator)
        return None if item is None else show_item(store, cfg, state, item, status="New items are available.")
    if (state.revising is None and not quality.is_gold(store, state.item_id)  # gold items hold no slot
            and not store.renew(state.annotator, state.item_id, cfg.overlap)):
        return show_item(store, cfg, replace(state, back_steps=0), choose_item(store, cfg, state.annotator),
                         status=f"Item {state.item_id} was handed to another annotator while this page was idle.")
    return None


def save_draft(store: LabelStore, cfg: AppConfig, state: TaskState, slot_ranks: list[Any], flagged: bool,
               rationale: str, request: gr.Request | None) -> None:
    """Auto-save work in progress for a fresh task (revisions start from the stored label)."""
    if state.item_id is None or state.revising is not None:
        return
    annotator = _annotator(cfg, request)
    store.save_draft(annotator, state.item_id, {
        "ranks": ranks_from_slots(state, slot_ranks), "flagged": bool(flagged), "rationale": rationale or "",
    })


def api_submit(store: LabelStore, cfg: AppConfig, item_id: str, ranks: dict, skipped: bool, flagged: bool,
               rationale: str, request_id: str, request: gr.Request | None) -> dict:
    """HTTP API: store one label for the signed-in user; returns the stored row (idempotent per request_id)."""
    annotator = _annotator(cfg, request)
    try:
        lab = store.submit(annotator, item_id, {str(k): v for k, v in (ranks or {}).items()}, skipped=bool(skipped),
                           flagged=bool(flagged), rationale=check_rationale(rationale), request_id=request_id or None,
                           meta={"source": "api"}, overlap=cfg.overlap)
    except LabelRefused as exc:
        raise gr.Error(f"refused ({exc.reason}): {exc}") from exc
    except (ValueError, KeyError) as exc:
        raise gr.Error(str(exc).strip("'\"")) from exc
    quality_hook(store, cfg, annotator)
    return {"label_id": lab.label_id, "item_id": lab.item_id, "annotator": lab.annotator, "ranks": lab.ranks,
            "supersedes": lab.supersedes, "request_id": lab.request_id}


def api_next(store: LabelStore, cfg: AppConfig, request: gr.Request | None) -> dict | None:
    """HTTP API: the next item for the signed-in user (candidate ids included), or None."""
    item = choose_item(store, cfg, _annotator(cfg, request))
    if item is None:
        return None
    return {"item_id": item.item_id, "prompt": item.prompt, "candidate_ids": item.candidate_ids,
            "candidates": item.candidates}


# ------------------------------------------------------------------------------------------------
# Admin panel.


def admin_html(store: LabelStore, overlap: int) -> str:
    """The admin report as escaped HTML (annotator and model text shown literally, never rendered)."""
    from annotation_ui.admin import report_html

    return report_html(store, overlap) + assignment_html(store, overlap)


def admin_mark_gold(store: LabelStore, item_id: str, answer: str, admin: str) -> str:
    """Mark an item as gold; ``answer`` is a pair vote (a_better, b_better, tie, both_bad, in the
    item's candidate order) or JSON ranks {candidate_id: rank}. Returns a status line."""
    answer = (answer or "").strip()
    try:
        parsed = {"vote": answer} if answer in quality.PAIR_VOTES else {"ranks": json.loads(answer)}
        quality.add_gold_items(store, [((item_id or "").strip(), parsed)], source=f"admin:{admin}")
    except (ValueError, json.JSONDecodeError) as exc:
        return f"Not marked: {exc}"
    return f"Marked {(item_id or '').strip()} as gold."


def admin_unpause(store: LabelStore, annotator: str, admin: str) -> str:
    annotator = (annotator or "").strip()
    if not quality.is_paused(store, annotator):
        return f"{annotator} is not paused."
    quality.unpause(store, annotator, by=admin)
    return f"Unpaused {annotator}; their earlier check answers no longer count toward a pause."


def assignment_html(store: LabelStore, overlap: int, limit: int = 50) -> str:
    """Items still short of ``overlap`` rankings and the live leases, as escaped HTML tables."""
    short = store.incomplete_items(overlap)
    leases = store.live_leases()
    cell = lambda value: f"<td>{html.escape(str(value))}</td>"  # noqa: E731
    parts = [f"<h3>Incomplete items: {len(short)}</h3>"]
    if short:
        parts.append("<table><tr><th>item</th><th>ranked</th><th>leased now</th><th>skipped by</th></tr>")
        parts += ["<tr>" + "".join(cell(v) for v in (r["item_id"], f"{r['ranked']} / {overlap}", r["leased"], r["skipped"]))
                  + "</tr>" for r in short[:limit]]
        parts.append("</table>")
        if len(short) > limit:
            parts.append(f"<p>... and {len(short) - limit} more.</p>")
    parts.append(f"<h3>Live leases: {len(leases)}</h3>")
    if leases:
        parts.append("<table><tr><th>annotator</th><th>item</th><th>expires in</th></tr>")
        parts += [f"<tr>{cell(x['annotator'])}{cell(x['item_id'])}{cell(str(x['seconds_left']) + ' s')}</tr>"
                  for x in leases[:limit]]
        parts.append("</table>")
    return "\n".join(parts)


# ------------------------------------------------------------------------------------------------
# Layout.

CSS = """
.cand, .prompt { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px 12px; }
.prompt { background: var(--background-fill-secondary); }
.cand-label, .prompt-label { font-weight: 600; font-size: 0.85em; opacity: 0.7; margin-bottom: 4px; }
.cand-text, .prompt-text { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 1.05em; }
.revising { color: var(--color-accent); margin-left: 8px; }
.kbd-help { font-size: 0.85em; opacity: 0.8; }
.cand-col.kbd-cursor .cand { outline: 2px solid var(--color-accent); }
.admin-table { border-collapse: collapse; margin-bottom: 12px; }
.admin-table td, .admin-table th { border: 1px solid var(--border-color-primary); padding: 3px 6px;
  vertical-align: top; text-align: left; white-space: pre-wrap; overflow-wrap: anywhere; }
.admin-prompt { white-space: pre-wrap; overflow-wrap: anywhere; margin-bottom: 8px; }
"""

# Keyboard shortcuts. Pairs (K=2): 1 = A better, 2 = B better, t = tie, b = both bad.
# K>2: type each response's rank in display order (A, B, C, ...), then Enter submits.
# Backspace steps back to the previous response (to retype a rank); it never means "Back", which is
# ArrowLeft. Always: s = skip, f = toggle flag. Ignored while a text field or other input has focus.
SHORTCUTS_JS = """
<script>
(() => {
  let cursor = 0, lastItem = null;
  const $ = (sel) => document.querySelector(sel);
  const click = (id) => { const el = $('#' + id); if (el) { el.click(); return true; } return false; };
  const meta = () => $('#task-meta');
  const markCursor = (k) => {
    document.querySelectorAll('.cand-col').forEach((el, i) => el.classList.toggle('kbd-cursor', k > 2 && i === cursor));
  };
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (t && (t.isContentEditable || ['TEXTAREA', 'SELECT'].includes(t.tagName) ||
              (t.tagName === 'INPUT' && !['radio', 'checkbox', 'button'].includes(t.type)))) return;
    const m = meta();
    if (!m) return;
    const k = parseInt(m.dataset.k || '0');
    if (m.dataset.item !== lastItem) { lastItem = m.dataset.item; cursor = 0; }
    const key = ev.key.toLowerCase();
    let handled = false;
    if (k === 2 && key === '1') handled = click('vote-a');
    else if (k === 2 && key === '2') handled = click('vote-b');
    else if (k === 2 && key === 't') handled = click('vote-tie');
    else if (k === 2 && key === 'b') handled = click('vote-bad');
    else if (k > 2 && /^[1-9]$/.test(key) && parseInt(key) <= k) {
      const input = $('#rank-' + cursor + ' input[value="' + key + '"]');
      if (input) { input.click(); cursor = (cursor + 1) % k; handled = true; }
    }
    else if (key === 'enter') handled = click('submit-btn');
    else if (key === 's') handled = click('skip-btn');
    else if (key === 'f') { const cb = $('#flag-box input[type=checkbox]'); if (cb) { cb.click(); handled = true; } }
    else if (key === 'backspace') { if (k > 2) { cursor = (cursor + k - 1) % k; } handled = true; }
    else if (key === 'arrowleft') handled = click('back-btn');
    if (handled) { ev.preventDefault(); markCursor(k); }
  });
})();
</script>
"""


def _guidelines_text(cfg: AppConfig) -> str:
    if not cfg.guidelines:
        return "*No guidelines file configured (pass --guidelines docs/annotation_guidelines.md).*"
    if not Path(cfg.guidelines).is_file():  # the CLI refuses this; say so rather than "not configured"
        return f"*The guidelines file `{escape_text(Path(cfg.guidelines).name)}` is missing on the server: tell your admin.*"
    return Path(cfg.guidelines).read_text()


@dataclass
class UI:
    """Component handles, so handlers' results can be returned as dicts keyed by component."""

    state: Any
    header: Any
    prompt: Any
    cands: list[Any]
    cand_cols: list[Any]
    ranks: list[Any]
    arena_row: Any
    flag: Any
    rationale: Any
    status: Any
    submit_btn: Any
    admin_tab: Any
    admin_md: Any  # a gr.HTML of escaped text (the name is kept for callers)
    item_box: Any  # hidden: the id of the item the page shows, sent back with every action
    request_box: Any  # hidden: the request id of the shown task (a resent action reuses it)

    def task_outputs(self) -> list[Any]:
        return [self.state, self.header, self.prompt, *self.cands, *self.cand_cols, *self.ranks,
                self.arena_row, self.flag, self.rationale, self.status, self.submit_btn, self.item_box,
                self.request_box]


def _render(ui: UI, view: View | None) -> dict[Any, Any]:
    if view is None:
        return {}  # nothing changes (e.g. a heartbeat that only renewed the lease)
    k = len(view.candidates)
    out: dict[Any, Any] = {
        ui.state: view.state,
        ui.item_box: view.state.item_id or "",
        ui.request_box: view.state.request_id,
        ui.header: view.header,
        ui.prompt: gr.update(value=view.prompt_html, visible=k > 0),
        ui.arena_row: gr.update(visible=k == 2),
        ui.flag: gr.update(value=view.flagged, visible=k > 0),
        ui.rationale: gr.update(value=view.rationale, visible=k > 0),
        ui.status: view.status,
        ui.submit_btn: gr.update(visible=k > 0),
    }
    for i in range(len(ui.cands)):
        shown = i < k
        out[ui.cand_cols[i]] = gr.update(visible=shown)
        out[ui.cands[i]] = view.candidates[i] if shown else ""
        out[ui.ranks[i]] = gr.update(choices=rank_choices(max(k, 2)), value=view.ranks[i] if shown else None,
                                     label=f"Rank of {LETTERS[i]}")
    return out


def build_app(store: LabelStore, config: AppConfig) -> gr.Blocks:
    """Lay out the annotation app and wire its events (launch it with ``launch_kwargs(config)``)."""
    cfg = config
    max_k = max([len(i.candidate_ids) for i in store.items()] or [2])
    if max_k > MAX_K:
        raise ValueError(f"an item has {max_k} candidates; the app shows at most {MAX_K} (A..Z): "
                         "generate fewer candidates per prompt")
    with gr.Blocks(title=cfg.title) as demo:
        state = gr.State(TaskState())
        gr.Markdown(f"## {escape_text(cfg.title)}")
        header = gr.Markdown()
        with gr.Accordion("Guidelines", open=False):
            gr.Markdown(_guidelines_text(cfg))
        with gr.Tabs():
            with gr.Tab("Annotate"):
                prompt = gr.HTML(elem_id="prompt")
                cands, cols, ranks = [], [], []
                with gr.Row(equal_height=False):
                    for i in range(max_k):
                        with gr.Column(min_width=220, elem_classes=["cand-col"], elem_id=f"cand-col-{i}") as col:
                            cands.append(gr.HTML(elem_id=f"cand-{i}"))
                            ranks.append(gr.Radio(rank_choices(max_k), label=f"Rank of {LETTERS[i]}",
                                                  elem_id=f"rank-{i}", elem_classes=["rank-radio"]))
                        cols.append(col)
                with gr.Row(visible=False) as arena_row:
                    vote_a = gr.Button("A is better  [1]", elem_id="vote-a")
                    vote_b = gr.Button("B is better  [2]", elem_id="vote-b")
                    vote_tie = gr.Button("Tie  [t]", elem_id="vote-tie")
                    vote_bad = gr.Button("Both are bad  [b]", elem_id="vote-bad")
                with gr.Row():
                    flag = gr.Checkbox(label="Flag as bad / unsafe  [f]", elem_id="flag-box", scale=1)
                    rationale = gr.Textbox(label="Rationale (optional)", lines=2, scale=3, elem_id="rationale",
                                           max_length=MAX_RATIONALE)
                with gr.Row():
                    back_btn = gr.Button("Back  [←]", elem_id="back-btn")
                    skip_btn = gr.Button("Skip  [s]", elem_id="skip-btn")
                    submit_btn = gr.Button("Submit ranking  [Enter]", variant="primary", elem_id="submit-btn")
                status = gr.Markdown(elem_id="status")
                item_box = gr.Textbox(visible=False, elem_id="item-id")
                request_box = gr.Textbox(visible=False, elem_id="request-id")
                gr.Markdown(
                    "Keys: pairs `1` A better · `2` B better · `t` tie · `b` both bad; more responses: type each "
                    "rank in order A, B, C… (`Backspace` undoes the last one) then `Enter`; always `s` skip · `f` flag · "
                    "`←` back. Keys do nothing while a text field has focus.",
                    elem_classes=["kbd-help"],
                )
            with gr.Tab("Admin", visible=False) as admin_tab:
                admin_refresh = gr.Button("Refresh", elem_id="admin-refresh")
                admin_md = gr.HTML(elem_id="admin-report")
                with gr.Row():
                    admin_item_id = gr.Textbox(label="Item id", elem_id="admin-item-id", scale=1)
                    admin_answer = gr.Textbox(label="Gold answer: a_better / b_better / tie / both_bad, or JSON "
                                              "ranks {candidate_id: rank}", elem_id="admin-answer", scale=2)
                with gr.Row():
                    admin_show = gr.Button("Show item", elem_id="admin-show")
                    admin_gold = gr.Button("Mark as gold", elem_id="admin-gold")
                with gr.Row():
                    admin_annotator = gr.Textbox(label="Annotator", elem_id="admin-annotator", scale=2)
                    admin_unpause_btn = gr.Button("Unpause", elem_id="admin-unpause", scale=1)
                admin_status = gr.Textbox(label="Admin status", interactive=False, elem_id="admin-status")
                admin_item = gr.HTML(elem_id="admin-item")
        if cfg.users.enabled:
            gr.Button("Sign out", link="/logout", size="sm", elem_id="sign-out")

        ui = UI(state, header, prompt, cands, cols, ranks, arena_row, flag, rationale, status, submit_btn,
                admin_tab, admin_md, item_box, request_box)
        outputs = ui.task_outputs()
        private = {"api_visibility": "private", "concurrency_limit": None}
        page = [item_box, request_box]
        held: dict[str, tuple[str, str | None]] = {}  # browser session -> (annotator, open item): released on unload

        def _tracked(request: gr.Request, view: View | None) -> dict[Any, Any]:
            if view is not None and request is not None and getattr(request, "session_hash", None):
                held[request.session_hash] = (view.state.annotator, view.state.item_id)
            return _render(ui, view)

        def _load(st, request: gr.Request):
            out = _tracked(request, on_load(store, cfg, st, request))
            is_admin = cfg.users.is_admin(getattr(request, "username", None)) or not cfg.users.enabled
            out[admin_tab] = gr.update(visible=is_admin)
            out[admin_md] = admin_html(store, cfg.overlap) if is_admin else ""
            return out

        demo.load(_load, [state], [*outputs, admin_tab, admin_md], **private)

        # gr.Request must be a positional parameter to be injected, hence first (before *args).
        # Every action carries the item id and request id the page shows (not just the session state).
        def _submit(request: gr.Request, st, item_id, request_id, *args):
            slot_ranks, (fl, rat) = list(args[:max_k]), args[max_k:]
            return _tracked(request, submit_ranking(store, cfg, st, (item_id, request_id), slot_ranks, fl, rat,
                                                    request))

        submit_btn.click(_submit, [state, *page, *ranks, flag, rationale], outputs, **private)

        for button, vote in [(vote_a, "a_better"), (vote_b, "b_better"), (vote_tie, "tie"), (vote_bad, "both_bad")]:
            def _vote(st, item_id, request_id, fl, rat, request: gr.Request, vote=vote):
                return _tracked(request, submit_vote(store, cfg, st, (item_id, request_id), vote, fl, rat, request))

            button.click(_vote, [state, *page, flag, rationale], outputs, **private)

        def _skip(st, item_id, request_id, fl, rat, request: gr.Request):
            return _tracked(request, skip(store, cfg, st, (item_id, request_id), fl, rat, request))

        def _back(st, item_id, request_id, request: gr.Request):
            return _tracked(request, go_back(store, cfg, st, (item_id, request_id), request))

        skip_btn.click(_skip, [state, *page, flag, rationale], outputs, **private)
        back_btn.click(_back, [state, *page], outputs, **private)

        # Leases renew while the page is open; an empty queue is re-checked on the same timer.
        def _beat(st, request: gr.Request):
            return _tracked(request, heartbeat(store, cfg, st, request))

        gr.Timer(cfg.heartbeat_s).tick(_beat, [state], outputs, show_progress="hidden", **private)

        def _unload(request: gr.Request):  # tab closed or signed out: the slot goes back at once
            annotator, item_id = held.pop(getattr(request, "session_hash", None) or "", ("", None))
            if annotator and item_id:
                store.release(annotator, item_id)

        demo.unload(_unload)

        def _draft(request: gr.Request, st, *args):
            save_draft(store, cfg, st, list(args[:max_k]), args[max_k], args[max_k + 1], request)

        for comp in [*ranks, flag, rationale]:
            comp.input(_draft, [state, *ranks, flag, rationale], None, show_progress="hidden",
                       trigger_mode="always_last", **private)

        def _admin_name(request: gr.Request) -> str:
            name = getattr(request, "username", None)
            if cfg.users.enabled and not cfg.users.is_admin(name):
                raise gr.Error("Admins only.")
            return name or cfg.anonymous_name

        def _admin(request: gr.Request):
            _admin_name(request)
            return admin_html(store, cfg.overlap)

        def _admin_show(item_id, request: gr.Request):
            _admin_name(request)
            from annotation_ui.admin import item_html

            return item_html(store, item_id or "")

        def _admin_gold(item_id, answer, request: gr.Request):
            msg = admin_mark_gold(store, item_id, answer, _admin_name(request))
            return msg, admin_html(store, cfg.overlap)

        def _admin_unpause(annotator, request: gr.Request):
            msg = admin_unpause(store, annotator, _admin_name(request))
            return msg, admin_html(store, cfg.overlap)

        admin_refresh.click(_admin, None, admin_md, **private)
        admin_show.click(_admin_show, [admin_item_id], admin_item, **private)
        admin_gold.click(_admin_gold, [admin_item_id, admin_answer], [admin_status, admin_md], **private)
        admin_unpause_btn.click(_admin_unpause, [admin_annotator], [admin_status, admin_md], **private)

        # HTTP API for scripts and the concurrency test (gradio_client: client.predict(..., api_name="/submit")).
        def submit(item_id: str, ranks: dict, skipped: bool = False, flagged: bool = False, rationale: str = "",
                   request_id: str = "", request: gr.Request = None) -> dict:
            return api_submit(store, cfg, item_id, ranks, skipped, flagged, rationale, request_id, request)

        def next_item(request: gr.Request = None) -> dict | None:
            return api_next(store, cfg, request)

        gr.api(submit, api_name="submit", concurrency_limit=None)
        gr.api(next_item, api_name="next_item", concurrency_limit=None)
    return demo


def launch_kwargs(config: AppConfig) -> dict[str, Any]:
    """Arguments for ``demo.launch`` that the layout needs (auth, shortcuts, CSS)."""
    # System fonts: the default theme fetches Google Fonts, which offline annotation servers cannot reach.
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])
    kwargs: dict[str, Any] = {"head": SHORTCUTS_JS, "css": CSS, "ssr_mode": False, "theme": theme,
                              "max_file_size": config.max_file_size}
    if config.users.enabled:
        from starlette.middleware import Middleware

        from annotation_ui.users import ClientAddress

        kwargs["auth"] = config.users.check
        kwargs["app_kwargs"] = {"middleware": [Middleware(ClientAddress)]}  # sign-in rate limit per address
        kwargs["auth_message"] = "Sign in with the annotator account you were given."
    return kwargs
