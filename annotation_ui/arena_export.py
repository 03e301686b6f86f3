"""People's votes in an arena vote DB -> an "arena_votes" artifact: the votes as a dataset and the leaderboard.

    python -m annotation_ui.arena_export --arena runs/tiny/arena --db runs/tiny/arena_votes.sqlite \\
        --out runs/tiny/arena_votes

Writes ``votes.jsonl`` (one ``Vote`` per line), ``data/`` (``datasets.Dataset.save_to_disk``: prompt,
response_a, response_b, winner, policy_a, policy_b, voter, timestamp, item_id, request_id), and
``report.md`` / ``ratings.png`` / ``ratings.json`` with the same writer as the arena stage.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlhf.arena.format import KIND, VOTES, Arena, votes_dataset, write_votes
from rlhf.arena.report import default_anchor, write_leaderboard
from rlhf.arena.store import VoteStore
from rlhf.artifacts import Artifact, ArtifactError, open_artifact, write_artifact
from rlhf.config import ConfigError, option

EXPORT_KIND = "arena_votes"


@dataclass
class ArenaExportConfig:
    """Recorded in the manifest of an artifact written by ``python -m annotation_ui.arena_export``."""

    arena: str = option(None, "arena artifact the votes were cast on")
    db: str = option(None, "vote DB written by the arena app (python -m annotation_ui --arena)")
    output_dir: str = option(None, "where the arena_votes artifact is written")
    bootstrap_rounds: int = option(1000, "bootstrap rounds for the rating intervals")
    seed: int = option(0, "bootstrap seed")


def export_votes(config: ArenaExportConfig) -> Artifact:
    arena_art = open_artifact(config.arena, KIND)
    if not Path(config.db).is_file():
        raise ConfigError(f"no vote DB at {config.db}: serve python -m annotation_ui --arena {config.arena} "
                          f"--db {config.db} and collect votes first")
    arena = Arena.load(arena_art.path)
    store = VoteStore(config.db)
    votes = store.votes()
    store.close()
    if not votes:
        raise ConfigError(f"{config.db} holds no votes yet: collect some in the arena app first")
    unknown = {v.item_id for v in votes} - set(arena.items)
    if unknown:
        raise ConfigError(f"{config.db} holds votes on items not in {config.arena} (e.g. {sorted(unknown)[0]}): "
                          "export with the arena artifact the app served")
    mean_gold = {name: float(np.mean([arena.gold(item, name) for item in arena.items])) for name in arena.policy_names}
    with write_artifact(config.output_dir, EXPORT_KIND, config, {"arena": arena_art}) as out:
        write_votes(out.path / VOTES, votes)
        votes_dataset(arena, votes).save_to_disk(str(out.path / "data"))
        out.metrics.update(write_leaderboard(out.path, arena.policy_names, votes, default_anchor(arena.policies),
                                             mean_gold, config.bootstrap_rounds, seed=config.seed))
    return open_artifact(config.output_dir, EXPORT_KIND)


def main(argv: list[str] | None = None) -> None:
    from rlhf.cli import fail

    p = argparse.ArgumentParser(prog="python -m annotation_ui.arena_export", description=__doc__.split("\n\n")[0])
    p.add_argument("--arena", required=True, help="arena artifact (python -m pipelines.arena)")
    p.add_argument("--db", required=True, help="SQLite vote DB written by python -m annotation_ui --arena")
    p.add_argument("--out", required=True, help="output arena_votes artifact directory")
    p.add_argument("--bootstrap-rounds", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        art = export_votes(ArenaExportConfig(args.arena, args.db, args.out, args.bootstrap_rounds, args.seed))
    except (ConfigError, ArtifactError) as exc:
        fail(str(exc))
        return
    print(f"[arena_votes] {art.metrics['arena/votes']} votes -> {art.path}\nreport: {art.path / 'report.md'}")


if __name__ == "__main__":
    main()
