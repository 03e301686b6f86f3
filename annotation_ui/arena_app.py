"""Arena mode of the annotation app: blind side-by-side votes between policies (FastChat
``gradio_block_arena_anony.py`` style: a layout builder, plain handlers over a typed per-session state).

``python -m annotation_ui --arena runs/tiny/arena --db runs/tiny/arena_votes.sqlite --users users.yaml``

What reaches the browser is a prompt, two response texts, an item id and an opaque request id; which
policy wrote which response stays on the server (the arena's ``key.json`` and the store's ``served``
rows). A vote names the request id and the item it was shown; ``rlhf.arena.store.VoteStore`` refuses
it unless both match what was served to that voter. There is no reveal: the voter only learns that
the vote was stored. The admin tab (admins only) shows the leaderboard and the interval plot.
"""

from __future__ import annotations

import html
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np

from annotation_ui.users import Users
from rlhf.arena.format import Arena, vote_arrays
from rlhf.arena.pairing import PAIRINGS, choose_pair, open_voters, order_overlap
from rlhf.arena.ratings import bootstrap_strengths, leaderboard, outcome_scores
from rlhf.arena.report import default_anchor, interval_plot
from rlhf.arena.store import VoteRefused, VoteStore

# Button -> stored outcome; keys are handled in SHORTCUTS_JS.
VOTES = {"A": "A is better  [1 / a]", "B": "B is better  [2 / b]", "tie": "Tie  [3 / t]", "both_bad": "Both are bad  [4 / x]"}
BUTTON_IDS = {"A": "arena-vote-a", "B": "arena-vote-b", "tie": "arena-vote-tie", "both_bad": "arena-vote-bad"}


@dataclass
class ArenaConfig:
    """Settings of one arena server (see ``python -m annotation_ui --help``)."""

    users: Users = field(default_factory=Users)  # empty = no sign-in (votes are written as `anonymous`)
    pairing: str = "active"  # one of PAIRINGS (rlhf/arena/pairing.py)
    votes_per_voter: int | None = None  # cap per voter (None = no cap)
    overlap_rounds: int = 200  # bootstrap rounds behind active pairing (recomputed when the vote count changes)
    seed: int | None = None  # pairing / item draws (None = fresh entropy)
    title: str = "Policy arena"
    anonymous_name: str = "anonymous"

    def __post_init__(self) -> None:
        if self.pairing not in PAIRINGS:
            raise ValueError(f"pairing '{self.pairing}' is not one of: {', '.join(PAIRINGS)}")
        if self.votes_per_voter is not None and self.votes_per_voter < 1:
            raise ValueError(f"votes per voter must be >= 1 (got {self.votes_per_voter}); leave it unset for no cap")


class ArenaServer:
    """The arena, its vote store and the pairing policy; every method is safe to call from many threads."""

    def __init__(self, arena: Arena, store: VoteStore, config: ArenaConfig):
        if len(arena.policy_names) < 2:
            raise ValueError("the arena artifact holds fewer than 2 policies: rebuild it with pipelines.arena")
        self.arena, self.store, self.config = arena, store, config
        self.names, self.items = arena.policy_names, list(arena.items)
        self.rng = np.random.default_rng(config.seed)
        self._lock = threading.Lock()
        self._overlap: tuple[int, np.ndarray | None] = (-1, None)

    def overlap(self) -> np.ndarray | None:
        """Bootstrap order overlap of the current votes (cached per vote count); None without votes."""
        votes = self.store.votes()
        if self._overlap[0] == len(votes):
            return self._overlap[1]
        value = None
        if votes:
            left, right, outcomes, _ = vote_arrays(self.names, votes)
            value = order_overlap(bootstrap_strengths(np.asarray(left), np.asarray(right), outcome_scores(outcomes),
                                                      len(self.names), self.config.overlap_rounds, len(votes)))
        self._overlap = (len(votes), value)
        return value

    def next_pair(self, voter: str) -> dict | None:
        """A fresh blind pair for ``voter`` (recorded as served), or None once the voter reached the cap."""
        if not open_voters({voter: self.store.count(voter)}, [voter], self.config.votes_per_voter):
            return None
        with self._lock:
            overlap = self.overlap() if self.config.pairing == "active" else None
            i, j = choose_pair(len(self.names), self.rng, self.config.pairing, overlap)
            item_id = self.items[int(self.rng.integers(len(self.items)))]
            shown, pending = self.arena.serve(item_id, self.names[i], self.names[j])
        self.store.add_served(voter, pending)
        return {"item_id": item_id, **shown}

    def vote(self, voter: str, request_id: str, item_id: str, outcome: str) -> dict:
        """Store a vote on a served pair; the reply names no policy."""
        vote_id, vote = self.store.record(voter, request_id, item_id, outcome)
        return {"vote_id": vote_id, "request_id": vote.request_id, "item_id": vote.item_id, "outcome": vote.outcome,
                "voter": vote.voter, "votes_given": self.store.count(voter)}


@dataclass
class ArenaState:
    """Per-browser-session state (held in ``gr.State``): the open pair's ids, never its policies."""

    voter: str = ""
    item_id: str | None = None
    request_id: str = ""


@dataclass
class ArenaView:
    state: ArenaState
    header: str = ""
    pair_html: str = ""
    status: str = ""


# ------------------------------------------------------------------------------------------------
# Handlers: (server, state, inputs, request) -> ArenaView.


def voter_name(cfg: ArenaConfig, request: gr.Request | None) -> str:
    """The signed-in user; refuses to write anonymously when sign-in is on."""
    name = getattr(request, "username", None) if request is not None else None
    if cfg.users.enabled:
        if not name:
            raise gr.Error("Not signed in: reload the page and sign in before voting.")
        return name
    return name or cfg.anonymous_name


def pair_html(shown: dict) -> str:
    """Model outputs are untrusted: everything is escaped, so markup shows as text and never runs."""
    esc = lambda text: html.escape(text, quote=True)  # noqa: E731
    return (
        f'<div id="arena-meta" data-item="{esc(shown["item_id"])}" data-request="{esc(shown["request_id"])}"></div>'
        f'<div class="prompt"><div class="prompt-label">Prompt</div><div class="prompt-text">{esc(shown["prompt"])}</div></div>'
        '<div class="arena-pair">'
        f'<div class="cand" id="arena-a"><div class="cand-label">Response A</div><div class="cand-text">{esc(shown["response_a"])}</div></div>'
        f'<div class="cand" id="arena-b"><div class="cand-label">Response B</div><div class="cand-text">{esc(shown["response_b"])}</div></div>'
        "</div>"
    )


def show_next(server: ArenaServer, state: ArenaState, status: str = "") -> ArenaView:
    given, cap = server.store.count(state.voter), server.config.votes_per_voter
    header = (f"Signed in as **{html.escape(state.voter)}** · your votes: **{given}**"
              + (f" of {cap}" if cap else "") + " · which response is better?")
    shown = server.next_pair(state.voter)
    if shown is None:
        return ArenaView(replace(state, item_id=None, request_id=""), header, "",
                         (status + "\n\n" if status else "") + "**You have reached the vote cap. Thank you!**")
    return ArenaView(replace(state, item_id=shown["item_id"], request_id=shown["request_id"]), header,
                     pair_html(shown), status)


def on_load(server: ArenaServer, state: ArenaState, request: gr.Request | None) -> ArenaView:
    return show_next(server, ArenaState(voter=voter_name(server.config, request)))


def on_vote(server: ArenaServer, state: ArenaState, outcome: str, request: gr.Request | None) -> ArenaView:
    voter = voter_name(server.config, request)
    if state.item_id is None or voter != state.voter:
        raise gr.Error("No pair is open: reload the page.")
    try:
        ack = server.vote(voter, state.request_id, state.item_id, outcome)
    except VoteRefused as exc:
        raise gr.Error(str(exc)) from exc
    return show_next(server, state, f"Vote #{ack['vote_id']} stored.")


def api_next_pair(server: ArenaServer, request: gr.Request | None) -> dict | None:
    return server.next_pair(voter_name(server.config, request))


def api_vote(server: ArenaServer, item_id: str, request_id: str, outcome: str, request: gr.Request | None) -> dict:
    try:
        return server.vote(voter_name(server.config, request), request_id, item_id, outcome)
    except VoteRefused as exc:
        raise gr.Error(str(exc)) from exc


# ------------------------------------------------------------------------------------------------
# Admin tab.


def leaderboard_view(server: ArenaServer, plot_dir: Path, rounds: int = 1000) -> tuple[str, str | None]:
    """(escaped HTML table, interval-plot PNG path) of the votes so far."""
    votes = server.store.votes()
    if not votes:
        return "<p>No votes yet.</p>", None
    anchor = default_anchor(server.arena.policies)
    left, right, outcomes, _ = vote_arrays(server.names, votes)
    rows = leaderboard(server.names, left, right, outcomes, anchor, rounds)
    cells = "".join(f"<tr><td>{r.rank}</td><td>{html.escape(r.policy)}</td><td>{r.rating:.0f}</td>"
                    f"<td>{r.low:.0f} .. {r.high:.0f}</td><td>{r.votes}</td></tr>" for r in rows)
    table = (f"<p>{len(votes)} votes; {html.escape(anchor)} = 1000; 95% bootstrap intervals.</p>"
             "<table><tr><th>rank</th><th>policy</th><th>rating</th><th>95% interval</th><th>votes</th></tr>"
             f"{cells}</table>")
    path = plot_dir / f"ratings-{len(votes)}.png"
    interval_plot(rows, path, anchor)
    return table, str(path)


# ------------------------------------------------------------------------------------------------
# Layout.

CSS = """
.cand, .prompt { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 10px 12px; margin-bottom: 8px; }
.prompt { background: var(--background-fill-secondary); }
.arena-pair { display: grid; grid-template-columns: 1fr 1fr; gap: 10px; }
.cand-label, .prompt-label { font-weight: 600; font-size: 0.85em; opacity: 0.7; margin-bottom: 4px; }
.cand-text, .prompt-text { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 1.05em; }
"""

# 1/a = A better, 2/b = B better, 3/t = tie, 4/x = both bad; ignored while typing in a field.
SHORTCUTS_JS = """
<script>
(() => {
  const keys = {'1': 'arena-vote-a', 'a': 'arena-vote-a', '2': 'arena-vote-b', 'b': 'arena-vote-b',
                '3': 'arena-vote-tie', 't': 'arena-vote-tie', '4': 'arena-vote-bad', 'x': 'arena-vote-bad'};
  document.addEventListener('keydown', (ev) => {
    const t = ev.target;
    if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
    if (t && (t.isContentEditable || t.tagName === 'TEXTAREA' || t.tagName === 'INPUT' || t.tagName === 'SELECT')) return;
    const id = keys[ev.key.toLowerCase()];
    const button = id && document.querySelector('#' + id);
    if (button && document.querySelector('#arena-meta')) { ev.preventDefault(); button.click(); }
  });
})();
</script>
"""


def build_arena_app(server: ArenaServer) -> gr.Blocks:
    """Lay out the arena app and wire its events (launch it with ``arena_launch_kwargs(config)``)."""
    cfg = server.config
    plot_dir = Path(tempfile.mkdtemp(prefix="arena-plots-"))
    with gr.Blocks(title=cfg.title) as demo:
        state = gr.State(ArenaState())
        gr.Markdown(f"## {html.escape(cfg.title)}")
        header = gr.Markdown()
        with gr.Tabs():
            with gr.Tab("Vote"):
                pair = gr.HTML(elem_id="arena-pair")
                with gr.Row():
                    buttons = {o: gr.Button(label, elem_id=BUTTON_IDS[o], variant="primary" if o in "AB" else "secondary")
                               for o, label in VOTES.items()}
                status = gr.Markdown(elem_id="status")
                gr.Markdown("Two anonymous policies answered the same prompt; sides are random. "
                            "Keys: `1`/`a` A better · `2`/`b` B better · `3`/`t` tie · `4`/`x` both bad.")
            with gr.Tab("Admin", visible=False) as admin_tab:
                refresh = gr.Button("Refresh leaderboard")
                board = gr.HTML()
                plot = gr.Image(label="Ratings with 95% bootstrap intervals", type="pil")

        def render(view: ArenaView) -> dict[Any, Any]:
            return {state: view.state, header: view.header, pair: view.pair_html, status: view.status}

        private = {"api_visibility": "private", "concurrency_limit": None}

        def _admin(request: gr.Request):
            if cfg.users.enabled and not cfg.users.is_admin(getattr(request, "username", None)):
                raise gr.Error("Admins only.")
            from PIL import Image

            table, png = leaderboard_view(server, plot_dir)
            return {board: table, plot: Image.open(png) if png else None}

        def _load(st, request: gr.Request):
            out = render(on_load(server, st, request))
            is_admin = cfg.users.is_admin(getattr(request, "username", None)) or not cfg.users.enabled
            out[admin_tab] = gr.update(visible=is_admin)
            return out

        demo.load(_load, [state], [state, header, pair, status, admin_tab], **private)
        for outcome, button in buttons.items():
            def _vote(st, request: gr.Request, outcome=outcome):
                return render(on_vote(server, st, outcome, request))

            button.click(_vote, [state], [state, header, pair, status], **private)
        refresh.click(_admin, None, [board, plot], **private)

        # HTTP API for scripts and tests (gradio_client: client.predict(api_name="/next_pair")).
        def next_pair(request: gr.Request = None) -> dict | None:
            return api_next_pair(server, request)

        def vote(item_id: str, request_id: str, outcome: str, request: gr.Request = None) -> dict:
            return api_vote(server, item_id, request_id, outcome, request)

        gr.api(next_pair, api_name="next_pair", concurrency_limit=None)
        gr.api(vote, api_name="vote", concurrency_limit=None)
    return demo


def arena_launch_kwargs(config: ArenaConfig) -> dict[str, Any]:
    """Arguments for ``demo.launch`` that the layout needs (auth, shortcuts, CSS)."""
    # System fonts: the default theme fetches Google Fonts, which offline servers cannot reach.
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    kwargs: dict[str, Any] = {"head": SHORTCUTS_JS, "css": CSS, "ssr_mode": False, "theme": theme}
    if config.users.enabled:
        kwargs["auth"] = config.users.check
        kwargs["auth_message"] = "Sign in with the annotator account you were given."
    return kwargs


def serve(arena_dir: str, db: str, config: ArenaConfig, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Load the arena artifact, open the vote store and serve until interrupted."""
    from rlhf.arena.format import KIND
    from rlhf.artifacts import open_artifact

    arena = Arena.load(open_artifact(arena_dir, KIND).path)
    server = ArenaServer(arena, VoteStore(db), config)
    demo = build_arena_app(server)
    demo.queue(default_concurrency_limit=16)
    demo.launch(server_name=host, server_port=port, **arena_launch_kwargs(config))
