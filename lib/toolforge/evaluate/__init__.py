"""Stage 03, evaluation: ``job`` (one ``EvalConfig``, the ``evaluate`` command), ``metrics`` (pure functions
over expected and predicted calls), ``report`` (every table and plot of an evaluation and an ablation) and
``comparisons`` (the routers a user would pick instead of fine-tuning: embedding neighbours, semantic-router,
SetFit)."""
