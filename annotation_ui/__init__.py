"""Human preference collection: a Gradio app where signed-in annotators rank K candidate responses.

- ``storage``: SQLite label store (append-only rows, revisions supersede, idempotent submits),
  item import from a "candidates" artifact, assignment with N-way overlap, drafts, progress.
- ``app``: the Gradio UI (``build_app(store, config)``) and its plain handler functions;
  ``users``: accounts from a YAML/JSON file or ``ANNOTATION_USERS``.
- ``admin``: counts per annotator, agreement and flagged items (``python -m annotation_ui.admin``);
  ``agreement``: Kendall tau, Krippendorff's alpha, pairwise agreement over labels.
- ``export``: labels -> a "preferences" artifact; ``simulate``: simulated annotators;
  ``launch``: serve the app from inside ``pipelines.run``.

Run it with ``python -m annotation_ui --candidates runs/tiny/candidates --db runs/tiny/labels.sqlite
--users users.yaml``; the annotator guide is docs/annotation_guidelines.md.
"""
