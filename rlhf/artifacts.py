"""Artifact store: one directory per stage output, written atomically, described by manifest.json.

A stage writes into a temporary sibling directory and renames it into place only after
``manifest.json`` (written last) is on disk, so a killed run never leaves something that looks
finished. Readers check the manifest, the kind and every file's size before using an artifact.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from rlhf.config import DataConfig, config_hash, to_dict

MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
TRACKED_PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "tokenizers", "gradio")

# Which command produces each artifact kind, for error messages that say what to (re)run.
PRODUCERS = {
    "sft": "python -m pipelines.sft",
    "candidates": "python -m pipelines.generate",
    "preferences": "python -m pipelines.preferences (annotators=human exports the annotation app's labels)",
    "reward": "python -m pipelines.reward",
    "ppo": "python -m pipelines.ppo",
    "dpo": "python -m pipelines.dpo",
    "rloo": "python -m pipelines.rloo",
    "grpo": "python -m pipelines.grpo",
    "online_dpo": "python -m pipelines.online_dpo",
    "best_of_n": "python -m pipelines.best_of_n",
    "rejection_sampling": "python -m pipelines.rejection_sampling",
    "eval": "python -m pipelines.eval",
    "frontier": "python -m pipelines.frontier --config configs/tiny/frontier.yaml",
    "arena": "python -m pipelines.arena",
    "arena_votes": "python -m annotation_ui.arena_export (people's votes from the arena app)",
}


# When the running stage started (set by rlhf.stage.run_stage), so wall_time_s covers the whole stage.
STAGE_STARTED: ContextVar[float | None] = ContextVar("STAGE_STARTED", default=None)
# The round of a ``pipelines.run --rounds`` run that is writing (set by rlhf.pipeline), recorded in the manifest.
ROUND: ContextVar[int | None] = ContextVar("ROUND", default=None)


class ArtifactError(RuntimeError):
    """An input artifact is missing, incomplete, of the wrong kind or corrupt."""


@dataclass
class Artifact:
    path: Path
    manifest: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.manifest["kind"]

    @property
    def fingerprint(self) -> str:
        return self.manifest["fingerprint"]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest.get("metrics", {})

    @property
    def config(self) -> dict[str, Any]:
        return self.manifest.get("config", {})

    def __truediv__(self, name: str) -> Path:
        return self.path / name


def _rerun_hint(kinds: tuple[str, ...], path: Path) -> str:
    """The one command that makes this artifact: the kind its directory is named after (runs/x/sft ->
    pipelines.sft), else the first accepted kind (a policy input is an sft artifact by default)."""
    main = path.name if path.name in kinds else kinds[0]
    return PRODUCERS.get(main, f"the {main} stage")


def open_artifact(path: str | Path, kind: str | tuple[str, ...] | None = None) -> Artifact:
    """Open a finished artifact, refusing anything incomplete, of the wrong kind, or corrupt."""
    path = Path(path)
    expected = (kind,) if isinstance(kind, str) else kind
    hint = _rerun_hint(expected, path) if expected else "the stage that produces it"
    if not path.is_dir():
        raise ArtifactError(f"artifact not found: {path}. Run {hint} first (or point the config at it).")
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        raise ArtifactError(
            f"artifact {path} is incomplete (no {MANIFEST}: the run that wrote it did not finish). "
            f"Re-run {hint} with --force."
        )
    try:
        manifest = json.loads(manifest_file.read_text())
        manifest["kind"], manifest["fingerprint"], manifest["files"]
    except (ValueError, KeyError) as exc:
        raise ArtifactError(f"artifact {path} has a corrupt {MANIFEST}. Re-run {hint} with --force.") from exc
    if expected and manifest["kind"] not in expected:
        raise ArtifactError(
            f"artifact {path} is a '{manifest['kind']}' artifact, but a {' or '.join(expected)} artifact "
            f"is needed here. Point the config at the output of {hint}."
        )
    for rel, size in manifest["files"].items():
        file = path / rel
        if not file.is_file() or file.stat().st_size != size:
            raise ArtifactError(
                f"artifact {path} is corrupt: {rel} is missing or has the wrong size. Re-run {hint} with --force."
            )
    return Artifact(path, manifest)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _file_sizes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): p.stat().st_size
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def _fingerprint(kind: str, cfg_hash: str, inputs: dict[str, str], root: Path) -> str:
    """Content fingerprint: config, inputs and a hash of every file the artifact holds."""
    digest = hashlib.sha256(json.dumps([kind, cfg_hash, inputs], sort_keys=True).encode())
    for rel in sorted(_file_sizes(root)):
        digest.update(rel.encode())
        with open(root / rel, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


@dataclass
class ArtifactWriter:
    """Handed to a stage while it writes; ``path`` is the temporary directory."""

    path: Path
    metrics: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def _is_main_process() -> bool:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) == 0


def _barrier() -> None:
    from accelerate import PartialState

    if PartialState._shared_state and PartialState().num_processes > 1:
        PartialState().wait_for_everyone()


def _data_split(config: Any) -> dict[str, Any]:
    """A stage whose config has a task (``data``) records its prompt split: counts and disjointness."""
    data = getattr(config, "data", None)
    if not isinstance(data, DataConfig):
        return {}
    from rlhf.data import split_summary  # lazy: datasets is heavy and most callers never get here

    return {"data_split": split_summary(data)}


@contextmanager
def write_artifact(
    path: str | Path, kind: str, config: Any, inputs: dict[str, Artifact] | None = None,
    ignore_keys: tuple[str, ...] = (),
) -> Iterator[ArtifactWriter]:
    """Write an artifact atomically: yield a temp dir, then add the manifest and rename into place.

    Under several processes every rank gets the same temp dir; only the main process creates,
    finalises and renames it. On any exception the temp dir is removed and nothing changes.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp"
    main = _is_main_process()
    if main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    _barrier()
    writer = ArtifactWriter(tmp)
    started = STAGE_STARTED.get() or time.time()
    try:
        yield writer
    except BaseException:
        if main:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    _barrier()
    if main:
        cfg_hash = config_hash(config, ignore_keys)
        input_prints = {name: art.fingerprint for name, art in (inputs or {}).items()}
        manifest = {
            "manifest_version": MANIFEST_VERSION,
            "kind": kind,
            "config": to_dict(config),
            "config_hash": cfg_hash,
            "inputs": {name: {"path": str(a.path), "fingerprint": a.fingerprint, "kind": a.kind}
                       for name, a in (inputs or {}).items()},
            "packages": package_versions(),
            "git_commit": git_commit(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "wall_time_s": round(time.time() - started, 3),
            "metrics": writer.metrics,
            **({"round": ROUND.get()} if ROUND.get() is not None else {}),
            **_data_split(config),
            **writer.extra,
            "files": _file_sizes(tmp),
            "fingerprint": _fingerprint(kind, cfg_hash, input_prints, tmp),
        }
        with open(tmp / MANIFEST, "w") as fh:
            json.dump(manifest, fh, indent=2, default=str)
            fh.flush()
            os.fsync(fh.fileno())
        # Swap into place: move any old artifact aside first so the rename itself is atomic.
        old = final.parent / f".{final.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    _barrier()


def is_up_to_date(path: str | Path, kind: str, config: Any, inputs: dict[str, Artifact],
                  ignore_keys: tuple[str, ...] = ()) -> bool:
    """True when ``path`` is a finished artifact made from this config and these exact inputs."""
    try:
        art = open_artifact(path, kind)
    except ArtifactError:
        return False
    recorded = {name: spec["fingerprint"] for name, spec in art.manifest.get("inputs", {}).items()}
    return (
        art.manifest.get("config_hash") == config_hash(config, ignore_keys)
        and recorded == {name: a.fingerprint for name, a in inputs.items()}
    )


LOG_HISTORY = "log_history.jsonl"


def place_in_run(config: Any) -> Path:
    """Where the output sits under ``run_dir`` (``ppo``, or ``round-2/ppo`` in a run with rounds); its name
    when it lies elsewhere. Work and log files mirror it, so two rounds' stages never share one."""
    output, run_dir = Path(config.output_dir), Path(getattr(config, "run_dir", config.output_dir))
    return output.relative_to(run_dir) if output.is_relative_to(run_dir) and output != run_dir else Path(output.name)


def work_dir(config: Any) -> Path:
    """Trainer checkpoints and logs live here, outside the artifact, so a killed run can resume."""
    return Path(config.run_dir) / ".work" / place_in_run(config)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a JSON-lines file (log_history.jsonl, samples.jsonl), or [] when there is none."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_log_history(path: str | Path, log_history: list[dict[str, Any]]) -> None:
    """A Trainer's ``state.log_history`` as JSON lines with train/eval-prefixed TRL metric names.

    Trainer logs ``loss``/``rewards/margins`` for training and ``eval_loss``/``eval_rewards/margins``
    for evaluation; they become ``train/loss`` and ``eval/rewards/margins``. ``step`` and ``epoch``
    stay as they are, so the eval stage can plot every training stage's curves the same way.
    """
    with open(path, "w") as fh:
        for entry in log_history:
            row = {}
            for key, value in entry.items():
                if key in ("step", "epoch"):
                    row[key] = value
                elif key.startswith("eval_"):
                    row["eval/" + key[len("eval_"):]] = value
                else:
                    row["train/" + key.removeprefix("train_")] = value
            fh.write(json.dumps(row) + "\n")
