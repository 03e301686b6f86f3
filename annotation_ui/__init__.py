"""Human preference collection: a Gradio app where signed-in annotators rank K candidate responses.

- ``storage``: SQLite label store (append-only rows, revisions supersede, idempotent submits),
  item import from a "candidates" artifact, assignment with N-way overlap, drafts, progress.
- ``app``: the Gradio UI (``build_app(store, config)``) and its plain handler functions.
- ``admin``: counts per annotator, agreement and flagged items (``python -m annotation_ui.admin``).

Run it with ``python -m annotation_ui --candidates runs/.../candidates --db runs/labels.sqlite``;
the annotator guide is docs/annotation_guidelines.md.
"""
