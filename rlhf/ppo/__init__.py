"""PPO for language models on torch + accelerate (TRL >= 1.13 has no PPO trainer).

config.py    hyperparameters (PPOConfig) and the batch arithmetic derived from them
core.py      pure functions: GAE, whitening, KL estimators, shaped rewards, clipped losses
rollout.py   sampling with the KV cache and the response layout (stop token, padding)
modeling.py  policy + value head / critic as one module
trainer.py   the loop: rollout -> score -> GAE -> epochs x minibatches x micro-batches
checkpoint.py, tracking.py   resumable checkpoints; metrics to jsonl / TensorBoard / W&B
"""
