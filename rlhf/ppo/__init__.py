"""PPO for language models on torch + accelerate (TRL >= 1.13 has no PPO trainer).

config.py    hyperparameters (PPOConfig) and the batch arithmetic derived from them
core.py      pure functions: GAE, whitening, shaped rewards, clipped losses (KL estimators: rlhf.logprobs)
rollout.py   the Rollout batch (sampling itself: rlhf.sampling)
modeling.py  policy + value head / critic as one module, and its per-response-token outputs
trainer.py   the loop: rollout -> score -> GAE -> epochs x minibatches x micro-batches
checkpoint.py, tracking.py   resumable checkpoints; metrics to jsonl / TensorBoard / W&B
"""
