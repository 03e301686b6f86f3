"""Candidate generation: K candidates per prompt, the artifact contract, seeding, bad policy inputs."""

import json

import pytest

from rlhf.artifacts import ArtifactError, open_artifact
from rlhf.candidates import load_candidates
from rlhf.cli import main
from rlhf.config import load_config
from rlhf.stage import run_stage
from rlhf.stages import generate

K = 3


def _config(run_dir, policy, *extra):
    return load_config(generate.Config, "configs/tiny/generate.yaml", [
        f"run_dir={run_dir}", f"policy={policy}", "data.num_examples=600", "num_prompts=6",
        f"num_candidates={K}", "sampling.max_new_tokens=16", *extra,
    ])


@pytest.fixture(scope="module")
def candidates(sft_artifact, tmp_path_factory):
    return run_stage(generate, _config(tmp_path_factory.mktemp("gen"), sft_artifact.path), log=lambda _: None)


def test_k_candidates_per_prompt_with_the_contract_columns(candidates, sft_artifact):
    data = load_candidates(candidates)
    assert data.column_names == ["prompt_id", "prompt", "candidate_ids", "candidates"]
    assert len(data) == 6 and len(set(data["prompt"])) == 6  # distinct prompts
    for row in data:
        assert len(row["candidates"]) == len(row["candidate_ids"]) == K
        assert len(set(row["candidate_ids"])) == K
        assert all(isinstance(c, str) and not c.startswith(row["prompt"]) for c in row["candidates"])
    assert len(set(data["prompt_id"])) == 6
    assert candidates.manifest["policy_fingerprint"] == sft_artifact.fingerprint
    assert candidates.manifest["sampling"]["num_candidates"] == K
    assert candidates.manifest["sampling"]["max_new_tokens"] == 16
    assert candidates.metrics["num_candidates"] == 6 * K


def test_same_seed_reproduces_and_another_seed_differs(candidates, sft_artifact, tmp_path):
    first = load_candidates(candidates)
    again = load_candidates(run_stage(generate, _config(tmp_path / "a", sft_artifact.path), log=lambda _: None))
    other = load_candidates(run_stage(generate, _config(tmp_path / "b", sft_artifact.path, "seed=7"),
                                      log=lambda _: None))
    assert again["candidates"] == first["candidates"]
    assert again["candidate_ids"] == first["candidate_ids"]
    assert other["prompt_id"] == first["prompt_id"]  # same prompts, new samples
    assert other["candidates"] != first["candidates"]


def test_missing_or_wrong_policy_artifact_is_a_clear_error(candidates, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(generate, [f"run_dir={tmp_path}", "num_prompts=2"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "artifact not found" in err and "pipelines.sft" in err

    # A candidates artifact is not a policy.
    with pytest.raises(ArtifactError, match="'candidates' artifact.*sft or ppo or dpo"):
        run_stage(generate, _config(tmp_path, candidates.path), log=lambda _: None)

    # A policy whose weights were damaged after it was written.
    manifest = json.loads((candidates.path / "manifest.json").read_text())
    assert open_artifact(candidates.path, "candidates")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text(json.dumps({**manifest, "kind": "sft", "files": {"model.safetensors": 10}}))
    with pytest.raises(ArtifactError, match="corrupt: model.safetensors"):
        run_stage(generate, _config(tmp_path, broken), log=lambda _: None)


def test_bad_config_values_are_refused(sft_artifact, tmp_path):
    from rlhf.config import ConfigError

    with pytest.raises(ConfigError, match="num_candidates must be >= 2"):
        run_stage(generate, _config(tmp_path, sft_artifact.path, "num_candidates=1"), log=lambda _: None)
    with pytest.raises(ConfigError, match="'split'"):
        run_stage(generate, _config(tmp_path, sft_artifact.path, "split=validation"), log=lambda _: None)
