"""Model and tokenizer loading: the embedded tiny GPT-2, hub names, local dirs, LoRA adapters."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from rlhf.config import ConfigError, LoraConfig, ModelConfig
from rlhf.tokenizer import PAD

ADAPTER_CONFIG = "adapter_config.json"
BASE_DIR = "base"  # adapter artifacts carry their (possibly resized) base model here


def build_tiny_gpt2(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> GPT2LMHeadModel:
    tiny = cfg.tiny
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=tiny.n_positions, n_embd=tiny.n_embd,
        n_layer=tiny.n_layer, n_head=tiny.n_head,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    """Tokenizer with a pad token distinct from EOS (added if the model has none, as GPT-2)."""
    with _hub_errors(name_or_path):
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
    if tokenizer.pad_token is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": PAD})
    return tokenizer


def fit_embeddings(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Grow the embedding matrix when the tokenizer gained tokens (e.g. the pad token)."""
    if model.get_input_embeddings().num_embeddings < len(tokenizer):
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id


def set_dropout(model: torch.nn.Module, p: float | None) -> None:
    if p is None:
        return
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = p


def fuse_gelu(model: torch.nn.Module | None) -> None:
    """Swap GPT-2's ``gelu_new`` modules (eight elementwise ops in Python, each kept for backward) for
    torch's fused tanh-GELU kernel, in place: the same formula (transformers' ``gelu_pytorch_tanh``), equal
    to float rounding, at a fraction of the time on CPU. Only the modules change, not ``config``, so a
    saved model is unchanged."""
    from transformers.activations import GELUTanh, NewGELUActivation

    if model is None:
        return
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is NewGELUActivation:
                setattr(parent, name, GELUTanh())


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


@contextmanager
def _hub_errors(name_or_path: str | Path):
    """A hub name that cannot be fetched becomes one clear line instead of a traceback."""
    try:
        yield
    except OSError as exc:
        raise ConfigError(
            f"could not load model '{name_or_path}': {str(exc).splitlines()[0]} (no hub access? point "
            "model.name_or_path at a directory saved with save_pretrained)"
        ) from exc


def _load(auto_cls, path: str | Path, is_trainable: bool = False, **kwargs) -> PreTrainedModel:
    """Weights from a hub name or dir; an adapter artifact is its ``base/`` model plus the adapter."""
    if not is_adapter(path):
        with _hub_errors(path):
            return auto_cls.from_pretrained(str(path), **kwargs)
    from peft import PeftModel

    base = auto_cls.from_pretrained(str(Path(path) / BASE_DIR), **kwargs)
    return PeftModel.from_pretrained(base, str(path), is_trainable=is_trainable)


def load_causal_lm(path: str | Path, is_trainable: bool = False, **kwargs) -> PreTrainedModel:
    """A causal LM; for a LoRA adapter artifact, a PeftModel (``disable_adapter()`` gives the base)."""
    return _load(AutoModelForCausalLM, path, is_trainable, **kwargs)


def load_sequence_classifier(path: str | Path, is_trainable: bool = False, **kwargs) -> PreTrainedModel:
    return _load(AutoModelForSequenceClassification, path, is_trainable, **kwargs)


def peft_config(cfg: LoraConfig, task_type: str = "CAUSAL_LM"):
    """A peft LoraConfig from ours, or None when LoRA is off."""
    if not cfg.enabled:
        return None
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=cfg.r, lora_alpha=cfg.alpha, lora_dropout=cfg.dropout,
        target_modules=list(cfg.target_modules), task_type=task_type,
        fan_in_fan_out=True,  # GPT-2 uses Conv1D layers
    )


def save_model(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, path: str | Path, merge: bool) -> None:
    """Save HF-format weights and tokenizer; LoRA models are merged, or saved as adapter + base."""
    tokenizer.save_pretrained(str(path))
    if hasattr(model, "peft_config"):
        if merge:
            model = model.merge_and_unload()
        else:
            model.save_pretrained(str(path))
            model = model.unload()  # the untouched base weights, without the LoRA layers
            path = Path(path) / BASE_DIR
            tokenizer.save_pretrained(str(path))
    model.save_pretrained(str(path))
