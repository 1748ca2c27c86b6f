"""The answer-only loss: causal-LM cross-entropy over the trained tokens, computing logits only there.

Gemma 3 has 262,144 tokens: full logits of a 300-token example cost more than the whole 270M
transformer, while the answer is about 20 of its 300 tokens.
"""
from __future__ import annotations

from typing import Any

from toolforge.train.encoding import IGNORE_INDEX
from toolforge.train.frozen_layers import skipping_lower_layers


def answer_loss(model, inputs: dict[str, Any], num_items_in_batch=None, vocabulary=None):
    """Causal-LM cross-entropy over the trained (answer) tokens only, projecting onto the vocabulary only
    the positions that predict one. Equal to the model's own loss, at a fraction of the LM-head cost.

    With ``frozen_states`` in the batch (LoRA on the upper layers only), those states stand for the frozen
    lower layers' output and only the layers from ``first_trained_layer`` up run (``frozen_layers``).

    With ``shared_prefix_len`` = P in the batch, the first P tokens (the same in every row) run once,
    and the rows' own tokens attend to that one copy through the KV cache. Causal attention makes the
    prefix's states the same in every row, so loss and gradients are the full batch's (with one LoRA
    dropout mask on the prefix, shared by the rows).

    ``num_items_in_batch`` (the trained tokens of the whole accumulated batch, from the Trainer) makes
    gradient accumulation exact; without it the mean over this batch is returned.

    ``vocabulary`` (sorted token ids; every target must be one) restricts the softmax to those tokens:
    the cross-entropy of the logits over that subset, not over all 262k tokens (an arm's
    ``loss_vocabulary: data``). That is an approximation of the full loss, cheaper by the ratio of the
    sizes; whether the router it trains is as good is what evaluation measures.
    """
    import torch
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel):
        # DDP averages the processes' gradients only for what runs inside its own forward (that call
        # arms its gradient hooks), and this loss calls the backbone directly: run all of it in there.
        return inside_ddp_forward(model, answer_loss, inputs, num_items_in_batch, vocabulary)
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = causal_lm.base_model
    input_ids, attention_mask = inputs["input_ids"], inputs.get("attention_mask")
    prefix_len = int(inputs.get("shared_prefix_len", 0))
    if "frozen_states" in inputs:
        with skipping_lower_layers(model, inputs["first_trained_layer"]):
            hidden = backbone(inputs_embeds=inputs["frozen_states"], attention_mask=attention_mask,
                              use_cache=False).last_hidden_state
    elif prefix_len > 0:
        rows = input_ids.shape[0]
        prefix = backbone(input_ids=input_ids[:1, :prefix_len], use_cache=True)
        if prefix.past_key_values is None:  # gradient checkpointing drops the cache: prepare() never combines them
            raise RuntimeError("shared_prefix_len needs the KV cache, which gradient checkpointing turns off")
        prefix.past_key_values.batch_repeat_interleave(rows)
        own = backbone(input_ids=input_ids[:, prefix_len:], attention_mask=attention_mask,
                       past_key_values=prefix.past_key_values, use_cache=True)
        hidden = torch.cat([prefix.last_hidden_state.expand(rows, -1, -1), own.last_hidden_state], dim=1)
    else:
        hidden = backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
    targets = inputs["labels"][:, 1:]
    trained = targets != IGNORE_INDEX
    head, answer_targets = causal_lm.get_output_embeddings(), targets[trained]
    if vocabulary is None:
        logits = head(hidden[:, :-1][trained])
    else:
        logits = F.linear(hidden[:, :-1][trained], head.weight[vocabulary])
        positions = torch.searchsorted(vocabulary, answer_targets)
        if not torch.equal(vocabulary[positions.clamp(max=len(vocabulary) - 1)], answer_targets):
            raise ValueError("a trained token is not in the loss vocabulary")
        answer_targets = positions
    softcap = getattr(causal_lm.config.get_text_config(), "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    loss_sum = F.cross_entropy(logits.float(), answer_targets, reduction="sum")
    count = num_items_in_batch if num_items_in_batch is not None else trained.sum()
    return loss_sum / torch.as_tensor(count, device=loss_sum.device).clamp(min=1)


def inside_ddp_forward(ddp, fn, *args):
    """``fn(ddp.module, *args)``, run as the forward of ``ddp`` (a DistributedDataParallel), so that the
    gradients of everything ``fn`` computes are averaged over the processes."""
    module = ddp.module
    own = vars(module).get("forward")  # accelerate may have set one (its autocast wrapper): keep it
    module.forward = lambda *a: fn(module, *a)
    try:
        return ddp(*args)
    finally:
        if own is None:
            del module.forward
        else:
            module.forward = own


def data_vocabulary(rows: list[dict[str, Any]]):
    """The sorted token ids the rows contain (queries, prompts and answers): an arm's ``loss_vocabulary:
    data``. Every answer token is in it, and so is every query token an answer may copy."""
    import torch

    return torch.tensor(sorted({token for row in rows for token in row["input_ids"]}), dtype=torch.long)
