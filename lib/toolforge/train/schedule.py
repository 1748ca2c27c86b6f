"""What training sees when, and when it stops: the order of the batches and the patience in epochs.

Two causes, read from the code and the recorded curves (results/gpu-h200-2026-11-30/,
docs/training.md), made a default run stop on noise. Validation loss every 20 steps of the first epoch
went 1.49 -> 0.46 -> 1.50 -> 0.67 -> 0.37 -> 0.51, and a patience of 3 evaluations stopped one seed at
1.33 epochs:

* **The batch order.** transformers' ``group_by_length`` sorts each mega-batch (29 batches of 64 on the
  7,655 examples) from the longest examples to the shortest and feeds it in that order: for 29 steps in
  a row the model sees three-call chains, then two-call chains, then single calls, then one-token
  no-tool answers, four times an epoch. Adam follows each run; the worst evaluations came just after a
  mega-batch's short end. ``LengthGroupedBatches`` keeps what grouping by length buys (the
  CPU arm's batches are padded 1.07x instead of 1.78x) and shuffles the batches across the epoch.
* **The patience.** Counted in evaluations it is a fraction of an epoch (3 x 20 steps of 120);
  ``epoch_patience_callback`` counts it in epochs and never stops inside the first one. The best checkpoint is
  still the one kept (``load_best_model_at_end``).
"""
from __future__ import annotations

import math
import random
from typing import Sequence

# A stop this close to the patience counts as reached (epochs are step / steps-per-epoch floats).
_EPOCH_SLACK = 1e-6


def length_grouped_batches(lengths: Sequence[int], batch_size: int, group: int, seed: int) -> list[list[int]]:
    """The batches of one epoch: the examples in a seeded order, cut into groups of ``group`` batches, each
    group sorted by length and cut into batches; then the full batches in a seeded order and the one
    short batch (if any) last, so that a DataLoader cutting the flat order every ``batch_size`` indices
    gets exactly these batches. ``group`` 1 gives random batches."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    span = batch_size * group
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start:start + span], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    full = [b for b in batches if len(b) == batch_size]
    rng.shuffle(full)
    return full + [b for b in batches if len(b) < batch_size]


class LengthGroupedBatches:
    """The Trainer's sampler: ``length_grouped_batches`` flattened, a new order each epoch (seed + epoch).

    The Trainer calls ``set_epoch`` before each epoch; without it each pass still takes the next epoch's
    order. Every process of a DDP run computes the same order (same seed), and accelerate hands each
    process its share of the batches."""

    def __init__(self, lengths: Sequence[int], batch_size: int, group: int, seed: int):
        self.lengths, self.batch_size, self.group, self.seed = list(lengths), batch_size, group, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self):
        batches = length_grouped_batches(self.lengths, self.batch_size, self.group, self.seed + self.epoch)
        self.epoch += 1
        return iter([i for batch in batches for i in batch])


def patience_spent(history: Sequence[tuple[float, float]], patience_epochs: float) -> bool:
    """Whether to stop, given the evaluations so far as (epoch, validation loss): the first epoch is done
    and ``patience_epochs`` epochs have passed since the best loss. 0 = never."""
    if not patience_epochs or not history:
        return False
    best_epoch = min(history, key=lambda h: h[1])[0]  # the first of equal bests
    epoch = history[-1][0]
    return epoch >= 1 - _EPOCH_SLACK and epoch - best_epoch >= patience_epochs - _EPOCH_SLACK


def epoch_patience_callback(patience_epochs: float):
    """A TrainerCallback that stops training when ``patience_spent`` says so (built on call: transformers
    is imported only when training)."""
    from transformers import TrainerCallback

    class EpochPatience(TrainerCallback):
        def __init__(self):
            self.history: list[tuple[float, float]] = []

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            loss = (metrics or {}).get("eval_loss")
            if loss is None:
                return
            loss = float(loss) if math.isfinite(loss) else math.inf  # a NaN is never a new best
            self.history.append((float(state.epoch or 0), loss))
            if patience_spent(self.history, patience_epochs):
                control.should_training_stop = True

    return EpochPatience()
