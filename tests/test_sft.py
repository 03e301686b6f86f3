"""SFT stage on the embedded task, plus the hub-style loading path on a locally saved tiny model/dataset."""

import json

import pytest
import torch
from datasets import Dataset
from transformers import GPT2Config, GPT2LMHeadModel

from conftest import tiny_sft_config
from resume_fixtures import kill_at_checkpoint_then_resume
from rlhf.config import DataConfig
from rlhf.data import load_task
from rlhf.models import is_adapter, load_causal_lm, load_tokenizer
from rlhf.sampling import SamplingConfig, sample
from rlhf.stage import run_stage
from rlhf.stages import sft
from rlhf.tasks.reviews import is_well_formed
from rlhf.tokenizer import train_tokenizer


def test_sft_lowers_held_out_loss(sft_artifact):
    metrics = sft_artifact.metrics
    assert metrics["eval/loss"] < 0.35 * metrics["eval/loss_initial"]


def test_sft_samples_are_mostly_well_formed_reviews(sft_artifact):
    model = load_causal_lm(sft_artifact.path)
    tokenizer = load_tokenizer(sft_artifact.path)
    prompts = load_task(DataConfig(num_examples=600))["test"]["prompt"][:40]
    responses = [r[0] for r in sample(model, tokenizer, prompts, SamplingConfig(max_new_tokens=48), seed=1, progress=False)]
    well_formed = [r for r in responses if is_well_formed(r)]
    assert len(well_formed) >= 0.7 * len(responses), responses


def test_sft_is_skipped_when_up_to_date(sft_artifact):
    config = json.loads((sft_artifact.path / "manifest.json").read_text())["config"]
    cfg = tiny_sft_config(config["run_dir"])
    logs = []
    again = run_stage(sft, cfg, log=logs.append)
    assert again.fingerprint == sft_artifact.fingerprint and "up to date" in logs[0]


def _save_hub_style_model(path, corpus):
    """A tiny GPT-2 saved like a hub checkpoint: no pad token, as the real gpt2."""
    tokenizer = train_tokenizer(corpus, 512)
    tokenizer.pad_token = None
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=1, n_head=2,
                                       bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


@pytest.mark.slow
@pytest.mark.parametrize("dataset_format", ["jsonl", "save_to_disk"])
def test_from_pretrained_and_load_dataset_paths(tmp_path, dataset_format):
    corpus = [f"Review number {i}. The food was {'great' if i % 2 else 'bad'} today." for i in range(120)]
    _save_hub_style_model(tmp_path / "tiny-gpt2", corpus)
    ds = Dataset.from_dict({"review": corpus})
    if dataset_format == "jsonl":
        data_path = tmp_path / "reviews.jsonl"
        ds.to_json(data_path)
    else:
        data_path = tmp_path / "reviews_ds"
        ds.save_to_disk(data_path)
    cfg = tiny_sft_config(
        tmp_path / "run", f"model.name_or_path={tmp_path / 'tiny-gpt2'}", f"data.dataset={data_path}",
        "data.text_field=review", "train.max_steps=3", "train.per_device_train_batch_size=8",
    )
    art = run_stage(sft, cfg, log=lambda _: None)
    tokenizer = load_tokenizer(art.path)
    model = load_causal_lm(art.path)
    assert tokenizer.pad_token_id != tokenizer.eos_token_id  # a distinct pad token was added ...
    assert model.get_input_embeddings().num_embeddings >= len(tokenizer)  # ... and the embeddings grown for it
    assert art.metrics["train/steps"] == 3


def test_bad_text_field_is_a_clear_error(tmp_path):
    path = tmp_path / "d.jsonl"
    Dataset.from_dict({"body": ["a b c d e f g h"] * 10}).to_json(path)
    from rlhf.config import ConfigError

    with pytest.raises(ConfigError, match="no column 'text'.*columns: body"):
        load_task(DataConfig(dataset=str(path)))


@pytest.mark.slow
@pytest.mark.parametrize("merge", [True, False])
def test_lora_sft_artifacts_load_merged_or_as_adapter(tmp_path, merge):
    cfg = tiny_sft_config(tmp_path, "lora.enabled=true", f"lora.merge={merge}", "train.max_steps=4",
                          "data.num_examples=300")
    art = run_stage(sft, cfg, log=lambda _: None)
    assert is_adapter(art.path) is (not merge)
    model = load_causal_lm(art.path)
    assert hasattr(model, "peft_config") is (not merge)
    tokenizer = load_tokenizer(art.path)
    out = sample(model, tokenizer, ["I watched Glass Summer."], SamplingConfig(max_new_tokens=5), progress=False)
    assert len(out) == 1 and isinstance(out[0][0], str)


@pytest.mark.slow
def test_interrupted_sft_resumes_from_checkpoint(tmp_path, monkeypatch):
    """Kill SFT after its first checkpoint; the re-run resumes instead of starting over."""
    cfg = tiny_sft_config(tmp_path, "data.num_examples=300", "train.max_steps=6", "train.save_steps=3",
                          "train.num_train_epochs=1")
    art, resumed_from = kill_at_checkpoint_then_resume(sft, cfg, monkeypatch, "checkpoint-3")
    assert resumed_from is True and art.metrics["train/steps"] == 6


def test_unreachable_hub_names_are_one_line_errors():
    from rlhf.config import ConfigError
    from rlhf.data import load_any

    with pytest.raises(ConfigError, match="could not load dataset 'no-such-org/no-such-data'.*save_to_disk"):
        load_any("no-such-org/no-such-data")
    with pytest.raises(ConfigError, match="could not load model 'no-such-org/no-such-model'.*save_pretrained"):
        load_tokenizer("no-such-org/no-such-model")
