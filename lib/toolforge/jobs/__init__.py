"""The jobs that run the stages: ``pipeline`` (the main job, 01 -> 04 through papermill), ``ablation`` (04:
02 and 03 per arm, resumable, then the table) and ``notebooks`` (the one place that runs a notebook)."""
