"""The preference data: one home for its format and its logic (no UI here; annotation_ui/ uses this).

- ``store``: the SQLite label store (append-only rows, revisions supersede, idempotent submits,
  assignment with N-way overlap, drafts, progress) and candidates -> items.
- ``simulate``: simulated annotators (AlpacaFarm-style gold reward + noise) writing to the store.
- ``agreement``: Kendall tau, Krippendorff's alpha, pairwise agreement over labels.
- ``pairing``: rankings -> pairs (best_vs_worst / all_pairs) and aggregation (majority / keep_all).
- ``export``: label DB + candidates -> the pairs and metrics of a preferences artifact.
- ``artifact``: the "preferences" artifact's kind, columns, train/test split, reader and writer.
- ``selection``: which candidate pairs to label within a budget (random, diversity, entropy, ensemble
  disagreement, double Thompson), for the select stage and active-learning loops.
- ``published``: published preference datasets (hub or local files) in the same format.
"""
