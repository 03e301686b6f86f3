"""Artifact store: atomic writes, manifests, refusing incomplete/corrupt/wrong artifacts, skipping."""

import json
from dataclasses import dataclass

import pytest

from rlhf.artifacts import MANIFEST, ArtifactError, is_up_to_date, open_artifact, write_artifact


@dataclass
class Cfg:
    value: int = 1


def make(path, value=1, kind="sft", inputs=None):
    with write_artifact(path, kind, Cfg(value), inputs) as out:
        (out.path / "weights.bin").write_bytes(b"x" * 100)
        out.metrics["loss"] = 0.5
    return open_artifact(path, kind)


def test_manifest_records_everything(tmp_path):
    art = make(tmp_path / "sft")
    m = art.manifest
    assert m["kind"] == "sft" and m["config"] == {"value": 1} and len(m["config_hash"]) == 16
    assert m["metrics"] == {"loss": 0.5} and m["files"] == {"weights.bin": 100}
    assert "torch" in m["packages"] and "trl" in m["packages"] and m["wall_time_s"] >= 0


def test_killed_run_leaves_nothing_and_keeps_previous(tmp_path):
    good = make(tmp_path / "sft", value=1)
    with pytest.raises(KeyboardInterrupt):
        with write_artifact(tmp_path / "sft", "sft", Cfg(2)) as out:
            (out.path / "weights.bin").write_bytes(b"half")
            raise KeyboardInterrupt  # the run is killed mid-write
    again = open_artifact(tmp_path / "sft", "sft")
    assert again.fingerprint == good.fingerprint
    assert [p.name for p in tmp_path.iterdir()] == ["sft"]  # no temp dir left behind


def test_half_written_artifact_is_refused(tmp_path):
    # what a crash between writing files and the manifest would leave if we wrote in place
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "weights.bin").write_bytes(b"x")
    with pytest.raises(ArtifactError, match="incomplete.*pipelines.sft"):
        open_artifact(tmp_path / "sft", "sft")


def test_truncated_file_is_refused(tmp_path):
    art = make(tmp_path / "sft")
    (art.path / "weights.bin").write_bytes(b"x" * 10)
    with pytest.raises(ArtifactError, match="corrupt: weights.bin"):
        open_artifact(art.path, "sft")


def test_corrupt_manifest_and_wrong_kind_are_refused(tmp_path):
    art = make(tmp_path / "sft")
    with pytest.raises(ArtifactError, match="'sft' artifact.*reward artifact.*pipelines.reward"):
        open_artifact(art.path, "reward")
    (art.path / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactError, match="corrupt manifest"):
        open_artifact(art.path, "sft")
    with pytest.raises(ArtifactError, match="not found"):
        open_artifact(tmp_path / "nothing", "sft")


def test_up_to_date_tracks_config_and_inputs(tmp_path):
    upstream = make(tmp_path / "sft")
    down = make(tmp_path / "reward", kind="reward", inputs={"policy": upstream})
    assert json.loads((down.path / MANIFEST).read_text())["inputs"]["policy"]["fingerprint"] == upstream.fingerprint
    assert is_up_to_date(down.path, "reward", Cfg(1), {"policy": upstream})
    assert not is_up_to_date(down.path, "reward", Cfg(2), {"policy": upstream})
    changed = make(tmp_path / "sft", value=3)  # new upstream content -> downstream is stale
    assert changed.fingerprint != upstream.fingerprint
    assert not is_up_to_date(down.path, "reward", Cfg(1), {"policy": changed})


def test_wall_time_covers_the_whole_stage(tmp_path):
    import time
    import types

    from rlhf.stage import run_stage

    @dataclass
    class StageCfg:
        output_dir: str = str(tmp_path / "slow")

    def run(config, inputs):
        time.sleep(0.3)  # the stage's work, before it starts writing
        return make(config.output_dir)

    stage = types.SimpleNamespace(KIND="sft", inputs=lambda c: {}, run=run)
    art = run_stage(stage, StageCfg(), log=lambda _: None)
    assert art.manifest["wall_time_s"] >= 0.3


def test_missing_artifact_names_the_command_that_makes_it(tmp_path):
    from rlhf.policies import POLICY_KINDS

    def message(path, kind):
        with pytest.raises(ArtifactError) as err:
            open_artifact(tmp_path / path, kind)
        return str(err.value)

    sft = message("sft", POLICY_KINDS)  # a policy input defaults to an sft artifact
    assert "python -m pipelines.sft" in sft and "pipelines.ppo" not in sft and "pipelines.dpo" not in sft
    assert "python -m pipelines.dpo" in message("dpo", POLICY_KINDS)
    assert "python -m pipelines.preferences" in message("preferences", "preferences")
