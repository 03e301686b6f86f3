"""Thin command-line entry points: ``python -m pipelines.<stage>``."""
