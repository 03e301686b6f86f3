"""Evaluation of trained policies: metrics, plots and the Markdown report (pure helpers for rlhf.stages.eval)."""
