"""Rankings in a label DB -> a "preferences" artifact (TRL prompt/chosen/rejected pairs).

    python -m annotation_ui.export --candidates runs/tiny/candidates --db runs/tiny/labels.sqlite \\
        --out runs/tiny/preferences [--pairing best_vs_worst|all_pairs] [--aggregation majority|keep_all] \
        [--drop-flagged] [--exclude-paused]

A thin command over ``rlhf.preferences`` (the same export the preferences stage runs); the pairing
and aggregation policies are described in rlhf/preferences/pairing.py.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from rlhf.artifacts import ArtifactError
from rlhf.config import ConfigError, option
from rlhf.preferences.artifact import write_preferences
from rlhf.preferences.export import build_export, candidate_items, db_state, open_label_db
from rlhf.preferences.pairing import AGGREGATIONS, PAIRINGS


@dataclass
class ExportConfig:
    """Recorded in the manifest of an artifact written by ``python -m annotation_ui.export``."""

    candidates: str = option(None, "candidates artifact the DB's items came from")
    db: str = option(None, "label DB written by the annotation app")
    output_dir: str = option(None, "where the preferences artifact is written")
    pairing: str = option("best_vs_worst", "best_vs_worst | all_pairs")
    aggregation: str = option("majority", "majority | keep_all")
    test_fraction: float = option(0.1, "fraction of prompts held out as the test split")
    seed: int = option(0, "seed of the train/test split")
    drop_flagged: bool = option(False, "leave flagged labels out (default: they keep their ranking)")
    exclude_paused: bool = option(False, "leave out annotators paused by quality control (rlhf/preferences/quality.py)")


def main(argv: list[str] | None = None) -> None:
    from rlhf.cli import fail

    p = argparse.ArgumentParser(prog="python -m annotation_ui.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--candidates", required=True, help="candidates artifact (python -m pipelines.generate)")
    p.add_argument("--db", required=True, help="SQLite label DB written by the annotation app")
    p.add_argument("--out", required=True, help="output preferences artifact directory")
    p.add_argument("--pairing", choices=PAIRINGS, default="best_vs_worst")
    p.add_argument("--aggregation", choices=AGGREGATIONS, default="majority")
    p.add_argument("--test-fraction", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--drop-flagged", action="store_true", help="leave flagged labels out")
    p.add_argument("--exclude-paused", action="store_true", help="leave out annotators paused by quality control")
    args = p.parse_args(argv)
    config = ExportConfig(args.candidates, args.db, args.out, args.pairing, args.aggregation,
                          args.test_fraction, args.seed, args.drop_flagged, args.exclude_paused)
    try:
        candidates, items = candidate_items(args.candidates)
        store = open_label_db(args.db)
        include = None
        if args.exclude_paused:
            from rlhf.preferences.quality import paused_annotators

            paused = paused_annotators(store)
            include = lambda annotator: annotator not in paused  # noqa: E731
        data, metrics = build_export(store, items, args.pairing, args.aggregation, args.test_fraction, args.seed,
                                     include=include, drop_flagged=args.drop_flagged)
        art = write_preferences(args.out, config, {"candidates": candidates}, data, metrics,
                                {"label_db": db_state(store)})
    except (ConfigError, ArtifactError) as exc:
        fail(str(exc))
        return
    m = art.metrics
    print(f"[preferences] {m['pairs/train']} train / {m['pairs/test']} test pairs from {m['labels/usable']} "
          f"labels ({m['labels/skipped']} skipped, {m['labels/flagged']} flagged) -> {art.path}")


if __name__ == "__main__":
    main()
