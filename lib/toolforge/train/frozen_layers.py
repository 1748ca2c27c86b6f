"""LoRA on the upper layers only, with the frozen lower layers run once per example, not once per epoch.

With ``lora_layers`` = N (fewer than the model's decoder layers), only the top N layers get LoRA. The
layers below then have no trainable parameter and no dropout: their output for an example is the same
at every step of every epoch. ``lower_layer_states`` runs them once over all the examples (no gradient,
no graph) and keeps each example's hidden states where the first trained layer takes them; training
then feeds those states in place of the token embeddings and runs only the upper layers
(``skipping_lower_layers``). Loss and gradients are those of the whole model (tests/test_frozen_layers.py
pins it on a tiny Gemma 3), at the cost of the upper layers only.

It works through the model's own forward: the lower layers are swapped for pass-through modules for the
duration of a call, so masks, rotary embeddings and layer types are computed as the model computes them.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator


def decoder(model):
    """The decoder stack (embeddings, layers, final norm) of a causal LM, through a PEFT wrapper."""
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    return causal_lm.base_model


def first_trained_layer(model, lora_layers: int) -> int:
    """Index of the lowest layer that gets LoRA when only the top ``lora_layers`` do (0: all of them)."""
    depth = len(decoder(model).layers)
    return 0 if lora_layers <= 0 or lora_layers >= depth else depth - lora_layers


def _pass_through():
    import torch

    class PassThrough(torch.nn.Module):
        """A decoder layer that returns its input: the layers whose output is already known."""

        def forward(self, hidden_states, *args, **kwargs):
            return hidden_states

    return PassThrough()


@contextmanager
def _layers_replaced(backbone, indices: range) -> Iterator[None]:
    layers = backbone.layers
    originals = {i: layers[i] for i in indices}
    try:
        for i in indices:
            layers[i] = _pass_through()
        yield
    finally:
        for i, layer in originals.items():
            layers[i] = layer


@contextmanager
def skipping_lower_layers(model, first_trained: int) -> Iterator[None]:
    """Within this block the model's layers below ``first_trained`` pass their input through: call it with
    ``inputs_embeds`` = the states ``lower_layer_states`` computed."""
    with _layers_replaced(decoder(model), range(first_trained)):
        yield


def lower_layer_states(model, rows: list[dict[str, Any]], first_trained: int, batch_size: int = 16,
                       progress: bool = True) -> list:
    """For each row (``input_ids``), the hidden states entering layer ``first_trained``: a float tensor
    [tokens, hidden], computed without gradient, in batches of rows of similar length."""
    import torch
    from tqdm.auto import tqdm

    backbone = decoder(model)
    boundary: list = []
    # The output of layer first_trained - 1 is captured; the layers above it are skipped.
    hook = backbone.layers[first_trained - 1].register_forward_hook(lambda module, args, output: boundary.append(output))
    order = sorted(range(len(rows)), key=lambda i: len(rows[i]["input_ids"]))
    states: list = [None] * len(rows)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _layers_replaced(backbone, range(first_trained, len(backbone.layers))):
            for start in tqdm(range(0, len(order), batch_size), desc=f"frozen layers 0-{first_trained - 1}",
                              unit="batch", disable=not progress):
                chunk = order[start:start + batch_size]
                lengths = [len(rows[i]["input_ids"]) for i in chunk]
                input_ids = torch.zeros((len(chunk), max(lengths)), dtype=torch.long)
                attention_mask = torch.zeros_like(input_ids)
                for j, i in enumerate(chunk):
                    input_ids[j, :lengths[j]] = torch.tensor(rows[i]["input_ids"])
                    attention_mask[j, :lengths[j]] = 1
                boundary.clear()
                backbone(input_ids=input_ids.to(backbone.device), attention_mask=attention_mask.to(backbone.device),
                         use_cache=False)
                for j, i in enumerate(chunk):
                    states[i] = boundary[0][j, :lengths[j]].detach().cpu()
    finally:
        hook.remove()
        model.train(was_training)
    return states
