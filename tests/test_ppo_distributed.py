"""PPO under two CPU processes (torchrun, gloo) equals one process with the same global batch.

(accelerate 1.15's `accelerate launch` with a MULTI_CPU config starts one process unless run through
mpirun, so the test launches with torchrun; the trainer code is the same either way.)
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from ppo_fixtures import DISTRIBUTED_OVERRIDES, build_reward_artifact, ppo_config, single_thread, state_dict_diff  # noqa: F401 (single_thread is autouse)
from rlhf.stage import open_inputs
from rlhf.stages import ppo


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, sft_artifact):
    reward = build_reward_artifact(sft_artifact)
    single_config = ppo_config(tmp_path / "one", sft_artifact, reward, *DISTRIBUTED_OVERRIDES)
    single = ppo.run(single_config, open_inputs(ppo, single_config))

    result = tmp_path / "result.json"
    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
         "tests/ppo_fixtures.py",
         str(tmp_path / "two"), str(sft_artifact.path), str(reward.path), str(result)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(result.read_text())
    assert report["world_size"] == 2
    steps = single_config.total_episodes // single_config.rollout_batch_size
    assert report["rank_diffs"] == [0.0] * steps  # DDP keeps the replicas bit-identical

    two = tmp_path / "two" / "ppo"
    moved = state_dict_diff(sft_artifact.path, single.path)
    diff = state_dict_diff(single.path, two)
    print(f"weights moved {moved:.2e} from SFT; 1 vs 2 processes differ by {diff:.2e}")
    assert moved > 1e-4
    assert diff < 0.02 * moved
    history = [[json.loads(line) for line in (p / "log_history.jsonl").read_text().splitlines()] for p in (single.path, two)]
    for a, b in zip(*history):
        assert a["objective/scores"] == pytest.approx(b["objective/scores"], abs=1e-3)
        assert a["loss/policy_avg"] == pytest.approx(b["loss/policy_avg"], abs=1e-3)
