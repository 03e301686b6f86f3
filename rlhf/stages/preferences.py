"""Preference pairs from ranked candidates: simulated annotators, or what people have labelled so far.

``annotators: simulated`` ranks every candidates item with AlpacaFarm-style simulated annotators
(gold reward + noise, see rlhf/preferences/simulate.py) into the label DB, so ``pipelines.run`` needs
no human. ``annotators: human`` exports the labels people made in the annotation app
(``python -m annotation_ui``), leaving simulated labels out. Both export with
rlhf/preferences/export.py (pairing + aggregation policies). ``annotators: dataset`` takes the pairs of
a published preference dataset instead (``dataset.name``, e.g. Anthropic/hh-rlhf; see
rlhf/preferences/published.py) and needs no candidates artifact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list
from datasets import DatasetDict

from rlhf.artifacts import Artifact, ArtifactError
from rlhf.candidates import KIND as CANDIDATES
from rlhf.config import ConfigError, option
from rlhf.preferences.artifact import KIND, write_preferences
from rlhf.preferences.export import build_export, candidate_items, db_state, open_label_db, select_labels
from rlhf.preferences.published import PreferenceDatasetConfig, load_preference_dataset
from rlhf.preferences.simulate import SimulatorConfig, is_simulated, simulate
from rlhf.preferences.store import LabelStore



@dataclass
class Config:
    run_dir: str = option("runs/tiny", "directory holding every stage's artifact for this run", hashed=False)
    output_dir: str = option("${run_dir}/preferences", "where the preferences artifact is written", hashed=False)
    candidates: str = option("${run_dir}/candidates", "candidates artifact whose items are ranked", hashed=False)
    db: str = option("${run_dir}/labels.sqlite", "SQLite label DB (the annotation app's --db)")
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


def fresh_simulation_db(path: Path) -> LabelStore:
    """Simulated labels are a function of the config, so every run starts from an empty DB.

    A DB holding labels people made is never removed: that needs another ``db`` path.
    """
    if path.exists():
        humans = sorted({lab.annotator for lab in open_label_db(path).labels() if not is_simulated(lab.annotator)})
        if humans:
            raise ConfigError(
                f"{path} holds labels by people ({', '.join(humans[:5])}); annotators=simulated starts from an "
                f"empty DB. Export theirs with annotators=human, or set db= to another path for simulated labels."
            )
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return LabelStore(path)


def human_label_db(config: Config) -> LabelStore:
    hint = (f"run `python -m annotation_ui --candidates {config.candidates} --db {config.db}` and rank some "
            "items first (or set annotators=simulated)")
    if not Path(config.db).exists():
        raise ConfigError(f"no label DB at {config.db}: nobody has labelled anything yet. To label, {hint}")
    store = open_label_db(config.db)
    if not select_labels(store, include=lambda a: not is_simulated(a)):
        raise ConfigError(f"no human labels in {config.db} yet: to label, {hint}")
    return store


def label_and_export(config: Config, items: list) -> tuple[DatasetDict, dict, dict]:
    """Fill the DB (simulated) or open it (human) and export: the data, its metrics, the DB's state."""
    if config.annotators == "simulated":
        store = fresh_simulation_db(Path(config.db))
        store.add_items(items)
        sim_metrics = simulate(store, config.simulator)
        include = is_simulated
    else:
        store = human_label_db(config)
        sim_metrics = {}
        include = lambda annotator: not is_simulated(annotator)  # noqa: E731
    data, metrics = build_export(store, items, config.pairing, config.aggregation, config.test_fraction,
                                 config.seed, include=include)
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
    state = PartialState(cpu=not torch.cuda.is_available())  # see rlhf/stages/generate.py
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
    state = PartialState(cpu=not torch.cuda.is_available())  # see rlhf/stages/generate.py
    metrics = {"pairs/train": len(data["train"]), "pairs/test": len(data["test"]),
               "pairs/total": len(data["train"]) + len(data["test"])}
    return write_preferences(config.output_dir, config, {}, data if state.is_main_process else None, metrics,
                             {"source": config.dataset.name})
