"""The torch backend: transformers loads the model, ``toolforge.route.backends.torch_decoder.GreedyDecoder`` decodes.

Works with any run folder, merged model, HF folder or id, and the embedded GGUF (dequantised by
transformers). The shared system prompt's KV is prefilled once (the decoder's prefix). A router with a
vocabulary writes its tokens and each query's own (``toolforge.route.vocabulary``).
"""
from __future__ import annotations

from typing import Callable, Sequence

from toolforge.route.backends.base import Messages, common_prefix
from toolforge.route.result import DEFAULT_SPEC, AnswerSpec


class TorchBackend:
    def __init__(self, model_ref: str, messages_for: Callable[[str], Messages], *, device: str | None = None,
                 dtype=None, max_new_tokens: int, cuda_graphs: bool | None = None, compile: bool | None = None,
                 grammar: bool = True, registry=None, **_):
        import torch

        from toolforge.route.backends.torch_decoder import GreedyDecoder
        from toolforge.route.result import RouterUnavailable

        if device and device.startswith("cuda") and not torch.cuda.is_available():
            raise RouterUnavailable(f"device {device!r} requested but no CUDA GPU is available")
        try:
            from toolforge.model import load_for_inference, stop_token_ids
            from toolforge.run import read_vocabulary
            model, tokenizer = load_for_inference(model_ref, device=device, dtype=dtype)
            stops = stop_token_ids(tokenizer)
            config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
            vocabulary = read_vocabulary(model_ref, config.vocab_size)
        except (OSError, ValueError) as e:  # no weights, a broken run folder, an unreachable hub id
            raise RouterUnavailable(f"cannot load {model_ref}: {e}") from e
        self.messages_for = messages_for
        self.tokenizer = tokenizer
        self._special_ids = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special}
        prefix = common_prefix(self.prompt_ids("a"), self.prompt_ids("b"))
        constraint = None
        if grammar:  # answers only from the registry's grammar (toolforge.route.grammar)
            from toolforge.route.grammar import AnswerConstraint
            constraint = AnswerConstraint(tokenizer, stops, registry)
        self.decoder = GreedyDecoder(model, stops, prefix_ids=prefix, max_new_tokens=max_new_tokens,
                                     max_prompt_tokens=len(prefix) + 512, cuda_graphs=cuda_graphs,
                                     compile=compile, constraint=constraint, allowed_tokens=vocabulary)

    def control_tokens(self, text: str) -> set[str]:
        """The special tokens (e.g. ``<end_of_turn>``) the tokenizer would read in ``text``."""
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return {self.tokenizer.convert_ids_to_tokens(i) for i in ids if i in self._special_ids}

    def prompt_ids(self, query: str) -> list[int]:
        return list(self.tokenizer.apply_chat_template(self.messages_for(query), add_generation_prompt=True,
                                                       tokenize=True, return_dict=False))

    def complete(self, queries: Sequence[str], spec: AnswerSpec = DEFAULT_SPEC) -> list[str]:
        prompts = [self.prompt_ids(q) for q in queries]
        # A query longer than the cache allows keeps the prefix and its last tokens (the end of the
        # turn and the answer cue): rare, and better than failing the whole batch.
        limit, p = self.decoder.max_prompt_tokens, len(self.decoder.prefix_ids)
        prompts = [ids if len(ids) <= limit else ids[:p] + ids[-(limit - p):] for ids in prompts]
        own = None
        if self.decoder.vocabulary is not None:   # a query may copy its own words (toolforge.route.vocabulary)
            from toolforge.route.vocabulary import query_token_ids
            own = [query_token_ids(q, lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"])
                   for q in queries]
        outputs = self.decoder.decode(prompts, query_tokens=own, spec=spec)
        return [self.tokenizer.decode(ids, skip_special_tokens=True) for ids in outputs]
