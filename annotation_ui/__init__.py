"""Human preference collection: a Gradio app where signed-in annotators rank K candidate responses.

- ``app``: the Gradio UI (``build_app(store, config)``) and its plain handler functions;
  ``users``: accounts from a YAML/JSON file or ``ANNOTATION_USERS``.
- ``admin``: counts per annotator, agreement and flagged items (``python -m annotation_ui.admin``).
- ``export``: ``python -m annotation_ui.export``, labels -> a "preferences" artifact;
  ``launch``: serve the app from inside ``pipelines.run``.

The label store, pairing, agreement, the simulated annotators and the preferences artifact live in
the library, ``rlhf.preferences``; this package is only the app and its commands.

Run it with ``python -m annotation_ui --candidates runs/tiny/candidates --db runs/tiny/labels.sqlite
--users users.yaml``; the annotator guide is docs/annotation_guidelines.md.
"""
