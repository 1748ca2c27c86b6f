"""Stage 02, training: ``arm`` (one recipe per YAML, with inheritance), ``job`` (one arm's training job and
the ``train`` command), ``encoding`` (examples -> rows -> batches, labels on the answer only), ``loss`` (the
answer-only loss), ``trainer`` (the Trainer subclass, its arguments and LoRA), ``precision`` (what the
hardware gets), ``frozen_layers`` (LoRA on the top layers, the lower ones run once), ``ddp`` (several GPUs),
``merge``, ``export`` (a run as a GGUF for llama.cpp) and ``loss_curves``."""
