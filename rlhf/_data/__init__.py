"""Recipes (configs/) and the annotation guidelines, linked here so they ship inside the package."""
