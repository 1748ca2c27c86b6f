"""Stage 01, the data: ``build`` (templates + teacher labels + extra files -> deduplicated splits, all or
nothing; the ``generate`` command), ``card`` (its summary and DATA_CARD.md), ``templates/`` (the offline
generator: intent families, registers, slot pools, frames, noise), ``teacher/`` (distillation from Gemini or
an OpenAI-compatible server) and ``publish`` (the dataset as a Kaggle Dataset)."""
