"""The answer-only loss: causal-LM cross-entropy over the trained tokens, computing logits only there.

Gemma 3 has 262,144 tokens: full logits of a 300-token example cost more than the whole 270M
transformer, while the answer is about 20 of its 300 tokens.
"""
from __future__ import annotations

from typing import Any

from .encoding import IGNORE_INDEX


def answer_loss(model, inputs: dict[str, Any], num_items_in_batch=None):
    """Causal-LM cross-entropy over the trained (answer) tokens only, projecting onto the vocabulary only
    the positions that predict one. Equal to the model's own loss, at a fraction of the LM-head cost.

    With ``shared_prefix_len`` = P in the batch, the first P tokens (the same in every row) run once,
    and the rows' own tokens attend to that one copy through the KV cache. Causal attention makes the
    prefix's states the same in every row, so loss and gradients are the full batch's (with one LoRA
    dropout mask on the prefix, shared by the rows).

    ``num_items_in_batch`` (the trained tokens of the whole accumulated batch, from the Trainer) makes
    gradient accumulation exact; without it the mean over this batch is returned.
    """
    import torch
    import torch.nn.functional as F
    from torch.nn.parallel import DistributedDataParallel

    if isinstance(model, DistributedDataParallel):
        # DDP averages the processes' gradients only for what runs inside its own forward (that call
        # arms its gradient hooks), and this loss calls the backbone directly: run all of it in there.
        return inside_ddp_forward(model, answer_loss, inputs, num_items_in_batch)
    causal_lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = causal_lm.base_model
    input_ids, attention_mask = inputs["input_ids"], inputs.get("attention_mask")
    prefix_len = int(inputs.get("shared_prefix_len", 0))
    if prefix_len > 0:
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
    logits = causal_lm.get_output_embeddings()(hidden[:, :-1][trained])
    softcap = getattr(causal_lm.config.get_text_config(), "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    loss_sum = F.cross_entropy(logits.float(), targets[trained], reduction="sum")
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
