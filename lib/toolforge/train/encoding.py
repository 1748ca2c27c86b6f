"""Examples as training rows, and rows as padded batches.

* Each example is tokenized once, as ``prompt`` (the chat template up to the model's turn) followed by
  ``answer<end_of_turn>``; labels are -100 except on the answer and its end-of-turn token, so the model
  learns the answer and to stop, nothing else.
* Batches are padded only to their longest row; ``PadCollator`` also finds the prefix every row of a
  batch shares (the system prompt), which ``loss.answer_loss`` then runs once per batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from toolforge.train.arm import ArmConfig
from toolforge.config import ConfigError
from toolforge.examples import Example
from toolforge.prompt import build_messages, format_answer
from toolforge.registry import Registry, load_registry

IGNORE_INDEX = -100


def encode_example(ex: Example, tokenizer, registry: Registry, style: str) -> dict[str, list[int]]:
    """``input_ids`` = prompt + answer + end-of-turn, ``labels`` = -100 on the prompt.

    The prompt is the chat template with the generation prompt, tokenized alone, exactly as at inference.
    The answer part is what the template puts after it for the assistant message, with the trailing
    whitespace after the end-of-turn token dropped (it is never generated).
    """
    answer = format_answer(ex.tool_calls)
    prompt = tokenizer.apply_chat_template(build_messages(ex.query, registry, style), tokenize=False,
                                           add_generation_prompt=True)
    full = tokenizer.apply_chat_template(build_messages(ex.query, registry, style, answer=answer), tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently with and without the answer; "
                         "cannot tell the answer's tokens apart")
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt):].rstrip(), add_special_tokens=False)["input_ids"]
    return {"input_ids": prompt_ids + answer_ids, "labels": [IGNORE_INDEX] * len(prompt_ids) + answer_ids}


def encode_examples(examples: list[Example], tokenizer, arm: ArmConfig, registry: Registry | None = None,
                    what: str = "train") -> list[dict[str, Any]]:
    """Encode all examples; those longer than ``max_seq_length`` are left out and counted (never truncated:
    a cut answer teaches the wrong thing)."""
    registry = registry or load_registry()
    rows = []
    for ex in examples:  # about 1,500 examples a second: no progress bar needed
        row = encode_example(ex, tokenizer, registry, arm.prompt_style)
        if len(row["input_ids"]) <= arm.max_seq_length:
            rows.append({**row, "length": len(row["input_ids"])})
    dropped = len(examples) - len(rows)
    if dropped:
        print(f"data: {dropped} of {len(examples)} {what} examples are longer than max_seq_length="
              f"{arm.max_seq_length} tokens and are left out")
    if not rows:
        raise ConfigError(f"max_seq_length: {arm.max_seq_length} leaves no {what} example")
    return rows


@dataclass
class PadCollator:
    """Right-pads a batch to its longest row (to a multiple of 8 on GPU, for the tensor cores).

    With ``share_prefix`` it also finds how many leading tokens all rows share (the chat template's
    start and the system prompt: about 265 of 300 tokens with the 'tools' prompt) as ``shared_prefix_len``,
    so that ``answer_loss`` runs them once per batch.
    """
    pad_token_id: int
    pad_to_multiple_of: int = 1
    share_prefix: bool = False
    # With LoRA on the upper layers only: row "row" -> its hidden states entering the first trained layer
    # (frozen_layers.lower_layer_states), batched as ``frozen_states`` in place of the lower layers' work.
    frozen_states: list | None = None
    first_trained_layer: int = 0

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        lengths = [len(r["input_ids"]) for r in rows]
        width = -(-max(lengths) // self.pad_to_multiple_of) * self.pad_to_multiple_of
        input_ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            input_ids[i, :lengths[i]] = torch.tensor(r["input_ids"])
            labels[i, :lengths[i]] = torch.tensor(r["labels"])
            attention_mask[i, :lengths[i]] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        if self.frozen_states is not None:
            states = [self.frozen_states[r["row"]] for r in rows]
            batch["frozen_states"] = torch.zeros((len(rows), width, states[0].shape[-1]), dtype=states[0].dtype)
            for i, state in enumerate(states):
                batch["frozen_states"][i, :lengths[i]] = state
            batch["first_trained_layer"] = self.first_trained_layer
        elif self.share_prefix and len(rows) > 1:
            batch["shared_prefix_len"] = shared_prefix_length(input_ids, min(lengths))
        return batch


def shared_prefix_length(input_ids, shortest: int) -> int:
    """How many leading tokens all rows have in common, leaving each row at least one token of its own."""
    same = (input_ids[:, :shortest - 1] == input_ids[:1, :shortest - 1]).all(dim=0)
    differs = (~same).nonzero()
    return int(differs[0, 0]) if len(differs) else shortest - 1
