"""Preference pairs from ranked candidates: simulated annotators, or what people have labelled so far.

``annotators: simulated`` ranks every candidates item with AlpacaFarm-style simulated annotators
(gold reward + noise, see rlhf/preferences/simulate.py) into a DB of their own (``simulated_db``), so
``pipelines.run`` needs no human. ``annotators: human`` exports the labels people made in the
annotation app (``python -m annotation_ui``, the ``db``); no simulated label is ever written there. Both export with
rlhf/preferences/export.py (pairing + aggregation policies). ``annotators: dataset`` takes the pairs of
a published preference dataset instead (``dataset.name``, e.g. Anthropic/hh-rlhf; see
rlhf/preferences/published.py) and needs no candidates artifact.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Literal
from pathlib import Path

from accelerate.utils import broadcast_object_list
from datasets import DatasetDict

from rlhf.hardware import process_state
from rlhf.artifacts import Artifact, ArtifactError
from rlhf.candidates import KIND as CANDIDATES
from rlhf.config import ConfigError, option
from rlhf.preferences.artifact import KIND, write_preferences
from rlhf.preferences.export import build_export, candidate_items, db_state, open_label_db, select_labels
from rlhf.preferences.published import PreferenceDatasetConfig, load_preference_dataset
from rlhf.preferences.simulate import SimulatorConfig, simulate
from rlhf.preferences.store import LabelStore



@dataclass
class Config:
    run_dir: str = option("runs/tiny", "directory holding every stage's artifact for this run", hashed=False)
    output_dir: str = option("${run_dir}/preferences", "where the preferences artifact is written", hashed=False)
    candidates: str = option("${run_dir}/candidates", "candidates artifact whose items are ranked", hashed=False)
    db: str = option("${run_dir}/labels.sqlite", "SQLite label DB of people's labels (the annotation app's --db)")
    simulated_db: str = option(
        "${run_dir}/labels.sim", "directory of the simulated annotators' label DBs, one file per (simulator "
        "settings, candidates); kept separate so simulated labels never mix with, or delete, people's", hashed=False)
    annotators: Literal["simulated", "human", "dataset"] = option(
        "simulated", "'simulated': simulated annotators label every item now; 'human': export the labels "
        "people made in the annotation app (simulated labels left out); 'dataset': the pairs of a published "
        "preference dataset (dataset.*), no candidates needed")
    simulator: SimulatorConfig = option(SimulatorConfig(), "simulated annotators (annotators=simulated only)")
    dataset: PreferenceDatasetConfig = option(
        PreferenceDatasetConfig(), "published preference dataset (annotators=dataset only; test_fraction and seed "
        "split it when it has no test split)")
    pairing: Literal["best_vs_worst", "all_pairs"] = option("best_vs_worst", "rankings -> pairs: best_vs_worst (one per ranking) | all_pairs (K choose 2)")
    aggregation: Literal["majority", "keep_all"] = option("majority", "overlapping annotators: majority (one direction per pair) | keep_all")
    test_fraction: float = option(0.1, "fraction of prompts held out as the test split")
    seed: int = option(0, "seed of the train/test split")


def inputs(config: Config) -> dict[str, tuple[str, str]]:
    if config.annotators == "dataset":
        return {}
    return {"candidates": (config.candidates, CANDIDATES)}


def up_to_date(config: Config, artifact: Artifact) -> bool:
    """Human labels keep arriving: the export is stale once the DB has rows it has not seen."""
    if config.annotators != "human":
        return True  # simulated labels are a function of the config and the candidates
    try:
        store = open_label_db(config.db)
    except ArtifactError:
        return False
    return artifact.manifest.get("label_db") == db_state(store)


def simulation_db(config: Config, items: list) -> LabelStore:
    """The simulated annotators' own DB for these settings and candidates (nothing is ever deleted).

    Simulated labels are a function of the simulator settings and the candidates, so each
    combination gets its own file: a re-run with the same inputs finds its labels already there,
    and regenerated candidates or new settings start a new file instead of overwriting one.
    """
    key = json.dumps([asdict(config.simulator), [(i.item_id, i.prompt, i.candidate_ids, i.candidates) for i in items]],
                     sort_keys=True)
    path = Path(config.simulated_db) / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.sqlite"
    if Path(config.db).resolve() == path.resolve():
        raise ConfigError(f"simulated_db {path} is the human label DB (db); give them different paths")
    store = LabelStore(path, overlap=config.simulator.overlap)
    store.add_items(items)
    return store


def simulation_metrics(store: LabelStore) -> dict[str, int]:
    """sim/labels and sim/flipped over the whole simulated DB (a re-run adds no labels)."""
    labels = store.labels()
    return {"sim/labels": len(labels), "sim/flipped": sum(bool(lab.meta.get("flipped")) for lab in labels)}


def human_label_db(config: Config) -> LabelStore:
    hint = (f"run `python -m annotation_ui --candidates {config.candidates} --db {config.db}` and rank some "
            "items first (or set annotators=simulated)")
    if not Path(config.db).exists():
        raise ConfigError(f"no label DB at {config.db}: nobody has labelled anything yet. To label, {hint}")
    store = open_label_db(config.db)
    if not select_labels(store):
        raise ConfigError(f"no human labels in {config.db} yet: to label, {hint}")
    return store


def label_and_export(config: Config, items: list) -> tuple[DatasetDict, dict, dict]:
    """Fill the DB (simulated) or open it (human) and export: the data, its metrics, the DB's state."""
    if config.annotators == "simulated":
        store = simulation_db(config, items)
        simulate(store, config.simulator)
        sim_metrics = simulation_metrics(store)
    else:
        store = human_label_db(config)  # everything in it is by people: simulated labels live elsewhere
        sim_metrics = {}
    data, metrics = build_export(store, items, config.pairing, config.aggregation, config.test_fraction,
                                 config.seed)
    state = db_state(store)
    store.close()
    return data, {**metrics, **sim_metrics}, state


def run(config: Config, inputs: dict[str, Artifact]) -> Artifact:
    if config.annotators == "dataset":
        return from_dataset(config)
    config.simulator.validate()
    candidates, items = candidate_items(inputs["candidates"].path)
    # One process does the labelling (a single SQLite DB); under accelerate the others wait, and an
    # error on the main process is raised on every rank instead of leaving them blocked.
    state = process_state()
    result, error = (None, None, None), None
    if state.is_main_process:
        try:
            result = label_and_export(config, items)
        except (ConfigError, ArtifactError) as exc:
            error = exc
    if state.num_processes > 1:
        error = broadcast_object_list([error])[0]
    if error is not None:
        raise error
    data, metrics, db = result
    return write_preferences(config.output_dir, config, {"candidates": candidates}, data, metrics, {"label_db": db})


def from_dataset(config: Config) -> Artifact:
    """The pairs of a published preference dataset, written as a preferences artifact with no inputs."""
    options = asdict(config.dataset)
    data = load_preference_dataset(options.pop("name"), **options, test_fraction=config.test_fraction,
                                   seed=config.seed)
    state = process_state()
    metrics = {"pairs/train": len(data["train"]), "pairs/test": len(data["test"]),
               "pairs/total": len(data["train"]) + len(data["test"])}
    return write_preferences(config.output_dir, config, {}, data if state.is_main_process else None, metrics,
                             {"source": config.dataset.name})
