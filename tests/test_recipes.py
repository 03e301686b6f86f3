"""Every recipe under configs/ loads, and the GPT-2 recipes run end to end on a tiny local stand-in.

The stand-in mimics what the real recipes download: a GPT-2-architecture model saved with
save_pretrained (tokenizer without a pad token, like gpt2), an IMDb-like dataset (text + label,
train/test) saved to disk, and an HH-like JSONL of chosen/rejected dialogues. Only names and sizes
are overridden, on the command-line layer; every other setting is the recipe's own, and the tests
check that the artifacts' manifests recorded exactly those settings.
"""

from __future__ import annotations

import importlib
import json
import random
from pathlib import Path

import pytest
import torch
from datasets import Dataset, DatasetDict
from omegaconf import OmegaConf
from transformers import GPT2Config, GPT2LMHeadModel

from rlhf.config import load_config
from rlhf.pipeline import STAGES, load_pipeline_config
from rlhf.stage import run_stage
from rlhf.tasks.reviews import generate_reviews
from rlhf.tokenizer import train_tokenizer

CONFIGS = Path("configs")


def is_pipeline(recipe: Path) -> bool:
    """A recipe over several stages (pipeline.yaml, rounds.yaml, frontier.yaml) loads stage recipes into its sections."""
    return "recipes" in OmegaConf.load(recipe)


SWEEPS = ("frontier",)  # a sweep from a finished run (tests/test_frontier.py): no run_dir of its own
RECIPES = sorted(p for d in ("tiny", "gpt2") for p in (CONFIGS / d).rglob("*.yaml"))
STAGE_RECIPES = [p for p in RECIPES if not is_pipeline(p)]
PIPELINES = [p for p in RECIPES if is_pipeline(p) and p.stem not in SWEEPS]
ACCELERATE = {  # file -> (distributed_type, num_machines)
    "single_gpu": ("NO", 1), "multi_gpu": ("MULTI_GPU", 1), "multi_node": ("MULTI_GPU", 2),
    "multi_cpu": ("MULTI_CPU", 1), "fsdp": ("FSDP", 1), "deepspeed_zero2": ("DEEPSPEED", 1),
    "deepspeed_zero3": ("DEEPSPEED", 1),
}


# --------------------------------------------------------------------------------------------
# Loading.


@pytest.mark.parametrize("recipe", STAGE_RECIPES, ids=str)
def test_stage_recipe_loads_into_its_config(recipe):
    # A stage outside the pipeline's chain (e.g. select) is still a module of rlhf.stages.
    stage = STAGES.get(recipe.stem) or importlib.import_module(f"rlhf.stages.{recipe.stem}")
    config = load_config(stage.Config, recipe)
    raw = OmegaConf.load(recipe)
    assert config.run_dir == raw.run_dir  # the recipe's own values, not the defaults
    assert Path(config.output_dir).parent == Path(config.run_dir)


@pytest.mark.parametrize("recipe_dir", ["tiny", "gpt2", "gpt2/hh"])
def test_recipes_of_one_run_share_run_dir_and_data(recipe_dir):
    """Stages meet through run_dir, and sample the same prompts only with the same data block."""
    # A pipeline recipe of another run (tiny/rounds.yaml) has a run_dir of its own; a sweep has none.
    recipes = sorted(p for p in (CONFIGS / recipe_dir).glob("*.yaml") if p.stem == "pipeline" or not is_pipeline(p))
    raw = {p.stem: OmegaConf.to_container(OmegaConf.load(p)) for p in recipes}
    assert len({r["run_dir"] for r in raw.values()}) == 1
    data_blocks = [r["data"] for r in raw.values() if "data" in r]
    assert data_blocks and all(block == data_blocks[0] for block in data_blocks)


@pytest.mark.parametrize("pipeline", PIPELINES, ids=str)
def test_pipeline_recipe_loads_every_stage_recipe(pipeline):
    config = load_pipeline_config(str(pipeline), [])
    raw = OmegaConf.load(pipeline)
    assert set(config.stages) <= set(raw.recipes)
    for name in config.stages:
        section = getattr(config, name)
        assert section.run_dir == config.run_dir
        # The section holds its recipe's settings, then whatever the pipeline file sets for it on top.
        on_top = OmegaConf.to_container(raw[name]) if name in raw else {}
        overrides = [f"{key}={'null' if value is None else value}" for key, value in _dotted(on_top)]
        assert section == load_config(STAGES[name].Config, raw.recipes[name], [f"run_dir={config.run_dir}", *overrides])


def _dotted(tree, prefix=""):
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _dotted(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


@pytest.mark.parametrize("name", sorted(ACCELERATE))
def test_accelerate_config_loads(name):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(CONFIGS / "accelerate" / f"{name}.yaml"))
    distributed_type, machines = ACCELERATE[name]
    assert config.distributed_type.value == distributed_type
    assert config.num_machines == machines


def test_every_accelerate_config_is_checked():
    assert sorted(p.stem for p in (CONFIGS / "accelerate").glob("*.yaml")) == sorted(ACCELERATE)


# --------------------------------------------------------------------------------------------
# The tiny stand-in for gpt2, imdb and Anthropic/hh-rlhf.

HH_QUESTIONS = ["What is a good movie?", "How do I bake bread?", "Can you recommend a book?",
                "What should I cook tonight?", "How do I fix a flat tire?", "Is the hotel nice?"]


def hh_rows(n: int) -> list[dict[str, str]]:
    rng = random.Random(0)
    rows = []
    for i in range(n):
        q = f"{HH_QUESTIONS[i % len(HH_QUESTIONS)]} ({i})"
        history = "\n\nHuman: Hi there\n\nAssistant: Hello, how can I help?" if i % 2 else ""
        prompt = f"{history}\n\nHuman: {q}\n\nAssistant:"
        rows.append({"chosen": prompt + " " + rng.choice(["Sure, I would be glad to help.", "Great question!"]),
                     "rejected": prompt + " " + rng.choice(["No.", "I don't care, figure it out."])})
    return rows


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    root = tmp_path_factory.mktemp("stand_in")
    reviews = generate_reviews(120, seed=3)
    imdb = DatasetDict({
        split: Dataset.from_list([{"text": r["text"], "label": int(r["label"] == "positive")} for r in rows])
        for split, rows in (("train", reviews[:96]), ("test", reviews[96:]))
    })
    imdb.save_to_disk(str(root / "imdb"))
    hh = hh_rows(40)
    (root / "hh.jsonl").write_text("".join(json.dumps(r) + "\n" for r in hh))

    tokenizer = train_tokenizer([r["text"] for r in reviews] + [r["chosen"] + r["rejected"] for r in hh], 1000)
    tokenizer.pad_token = None  # gpt2 ships without one; rlhf.models.load_tokenizer adds it
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=1024, n_embd=32, n_layer=1, n_head=2,
                        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)  # fixed weights: the simulated labels (and so the pair counts) are then fixed too
    GPT2LMHeadModel(config).save_pretrained(str(root / "gpt2"))
    tokenizer.save_pretrained(str(root / "gpt2"))
    return root


# Sizes only: two optimizer steps, a handful of prompts, no trackers.
TRAINER_SIZES = ["train.max_steps=2", "train.per_device_train_batch_size=4", "train.gradient_accumulation_steps=1",
                 "train.logging_steps=1", "train.report_to=[]"]
SIZES = {
    "sft": [*TRAINER_SIZES, "num_samples=2"],
    "generate": ["num_prompts=8"],
    "preferences": ["test_fraction=0.25"],
    "reward": [*TRAINER_SIZES, "num_eval_prompts=4"],
    "ppo": ["rollout_batch_size=4", "mini_batch_size=4", "micro_batch_size=4",
            "forward_batch_size=4", "total_episodes=8", "report_to=[]", "eval_prompts=4"],
    "dpo": [*TRAINER_SIZES, "num_eval_prompts=4"],
    "eval": ["num_prompts=4", "bootstrap_resamples=50"],
}
DATA_SIZES = ["data.max_test_examples=8"]


def stage_overrides(name: str, model: Path, dataset: str, has_data: bool) -> list[str]:
    out = [f"{name}.{o}" for o in SIZES.get(name, [])]
    if has_data:
        out += [f"{name}.data.dataset={dataset}", *(f"{name}.{o}" for o in DATA_SIZES)]
    if name == "sft":
        out.append(f"sft.model.name_or_path={model}")
    return out


def leaves(tree, prefix: str = "") -> dict[str, object]:
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in leaves(sub, f"{prefix}{key}.").items()}
    return {prefix[:-1]: tree}


def assert_recipe_settings_used(artifact, recipe: str, overridden: list[str]) -> int:
    """Every setting the recipe file spells out (and the test did not override) is in the manifest's config."""
    written = leaves(OmegaConf.to_container(OmegaConf.load(recipe)))
    used = leaves(artifact.config)
    skip = {"run_dir"} | {o.split("=", 1)[0].split(".", 1)[1] for o in overridden}
    checked = 0
    for key, value in written.items():
        if key in skip or key.startswith("data.dataset") or (isinstance(value, str) and "${" in value):
            continue
        assert used[key] == value, f"{artifact.kind}: recipe {recipe} sets {key}={value!r}, stage used {used[key]!r}"
        checked += 1
    return checked


def run_chain(pipeline_file: str, run_dir: Path, model: Path, dataset: str, extra: list[str] = ()):
    base = load_pipeline_config(pipeline_file, [f"run_dir={run_dir}"])
    overrides = [f"run_dir={run_dir}", *extra]
    for name in base.stages:
        overrides += stage_overrides(name, model, dataset, hasattr(getattr(base, name), "data"))
    config = load_pipeline_config(pipeline_file, overrides)
    raw = OmegaConf.load(pipeline_file)
    artifacts, checked = {}, {}
    for name in config.stages:
        artifacts[name] = run_stage(STAGES[name], getattr(config, name), log=lambda _: None)
        assert artifacts[name].kind == STAGES[name].KIND
        stage_overridden = [o for o in overrides if o.startswith(f"{name}.")]
        checked[name] = assert_recipe_settings_used(artifacts[name], raw.recipes[name], stage_overridden)
    return artifacts, checked


@pytest.mark.slow
def test_gpt2_imdb_recipes_run_end_to_end(stand_in, tmp_path):
    artifacts, checked = run_chain("configs/gpt2/pipeline.yaml", tmp_path / "run", stand_in / "gpt2",
                                   str(stand_in / "imdb"))

    assert list(artifacts) == ["sft", "generate", "preferences", "reward", "ppo", "dpo", "eval"]
    assert all(n > 0 for n in checked.values()), checked
    # The settings each paper/example prescribes reached the stages (spot checks of the generic check above).
    assert artifacts["sft"].config["model"]["name_or_path"] == str(stand_in / "gpt2")
    assert artifacts["dpo"].config["train"]["beta"] == 0.1
    assert artifacts["dpo"].config["train"]["optim"] == "rmsprop"
    assert artifacts["dpo"].config["train"]["learning_rate"] == 1e-6
    assert artifacts["ppo"].config["kl_coef"] == 0.2 and artifacts["ppo"].config["adaptive_kl"]
    assert artifacts["ppo"].config["learning_rate"] == 1.41e-5
    assert artifacts["reward"].config["train"]["center_rewards_coefficient"] == 0.01
    assert artifacts["preferences"].config["pairing"] == "all_pairs"
    # Two optimizer steps each, the stand-in's data and the recipe's prompt and response lengths.
    for name in ("sft", "reward", "dpo"):
        assert artifacts[name].metrics["train/steps"] == 2
    assert artifacts["ppo"].metrics["train/steps"] == 2
    assert artifacts["generate"].metrics["num_candidates"] == 8 * 4
    samples = [json.loads(line) for line in (artifacts["eval"] / "samples.jsonl").read_text().splitlines()]
    assert {s["policy"] for s in samples} == {"sft", "ppo", "dpo"}
    assert all(2 <= len(s["prompt"].split()) <= 8 for s in samples)


@pytest.mark.slow
def test_gpt2_hh_recipes_run_end_to_end(stand_in, tmp_path):
    hh = str(stand_in / "hh.jsonl")
    artifacts, checked = run_chain("configs/gpt2/hh/pipeline.yaml", tmp_path / "run", stand_in / "gpt2", hh,
                                   extra=[f"preferences.dataset.name={hh}"])

    assert list(artifacts) == ["sft", "preferences", "reward", "dpo", "eval"]
    assert all(n > 0 for n in checked.values()), checked
    assert "candidates" not in artifacts["preferences"].manifest["inputs"]  # straight from the dataset
    assert artifacts["preferences"].metrics["pairs/total"] == 40
    assert artifacts["dpo"].config["train"]["beta"] == 0.1
    assert artifacts["reward"].config["train"]["learning_rate"] == 1.41e-5
    # Sampling stages prompt with the dialogue up to its last assistant turn, as the pairs do.
    samples = [json.loads(line) for line in (artifacts["eval"] / "samples.jsonl").read_text().splitlines()]
    assert samples and all(s["prompt"].startswith("\n\nHuman:") and s["prompt"].endswith("\n\nAssistant:")
                           for s in samples)
