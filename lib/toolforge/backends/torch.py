"""The torch backend: transformers loads the model, ``toolforge.inference.GreedyDecoder`` decodes.

Works with any run folder, merged model, HF folder or id, and the embedded GGUF (dequantised by
transformers). The shared system prompt's KV is prefilled once (the decoder's prefix).
"""
from __future__ import annotations

from typing import Callable, Sequence

from ..prompt import build_messages, format_answer
from . import Messages


class TorchBackend:
    def __init__(self, model_ref: str, messages_for: Callable[[str], Messages], *, device: str | None = None,
                 dtype=None, max_new_tokens: int | None = None, cuda_graphs: bool | None = None,
                 speculative: bool = False, registry=None, prompt_style: str = "tools"):
        import torch

        from ..inference import DEFAULT_MAX_NEW_TOKENS, GreedyDecoder, common_prefix
        from ..router import RouterUnavailable

        if device and device.startswith("cuda") and not torch.cuda.is_available():
            raise RouterUnavailable(f"device {device!r} requested but no CUDA GPU is available")
        try:
            from ..model import load_for_inference, stop_token_ids
            model, tokenizer = load_for_inference(model_ref, device=device, dtype=dtype)
            stops = stop_token_ids(tokenizer)
        except (OSError, ValueError) as e:  # no weights, a broken run folder, an unreachable hub id
            raise RouterUnavailable(f"cannot load {model_ref}: {e}") from e
        self.messages_for = messages_for
        self.registry, self.prompt_style = registry, prompt_style
        self.tokenizer = tokenizer
        prefix = common_prefix(self._prompt_ids("a"), self._prompt_ids("b"))
        self.decoder = GreedyDecoder(model, stops, prefix_ids=prefix,
                                     max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
                                     max_prompt_tokens=len(prefix) + 512, cuda_graphs=cuda_graphs,
                                     drafts=self._answer_skeletons() if speculative else None)

    def _answer_skeletons(self) -> list[list[int]]:
        """Token ids of one answer per tool with placeholder values (and of "none"), as the chat
        template writes an assistant turn: the decoder drafts the argument names and JSON
        punctuation from these."""
        prompt = self._prompt_ids("a")
        skeletons = []
        for tool in self.registry.tools.values():
            props = tool.parameters.get("properties", {})
            args = {name: _placeholder(props.get(name, {})) for name in tool.required}
            skeletons.append(format_answer([{"name": tool.name, "arguments": args}]))
        skeletons.append(format_answer([]))
        out = []
        for answer in skeletons:
            messages = build_messages("a", self.registry, self.prompt_style, answer=answer)
            ids = list(self.tokenizer.apply_chat_template(messages, tokenize=True, return_dict=False))
            if ids[:len(prompt)] == prompt:
                out.append(ids[len(prompt):])
        return out

    def _prompt_ids(self, query: str) -> list[int]:
        return list(self.tokenizer.apply_chat_template(self.messages_for(query), add_generation_prompt=True,
                                                       tokenize=True, return_dict=False))

    def complete(self, queries: Sequence[str]) -> list[str]:
        prompts = [self._prompt_ids(q) for q in queries]
        # A query longer than the cache allows keeps the prefix and its last tokens (the end of the
        # turn and the answer cue): rare, and better than failing the whole batch.
        limit, p = self.decoder.max_prompt_tokens, len(self.decoder.prefix_ids)
        prompts = [ids if len(ids) <= limit else ids[:p] + ids[-(limit - p):] for ids in prompts]
        outputs = self.decoder.decode(prompts)
        return [self.tokenizer.decode(ids, skip_special_tokens=True) for ids in outputs]


def _placeholder(schema: dict) -> object:
    if "enum" in schema:
        return schema["enum"][0]
    return 0 if schema.get("type") in ("number", "integer") else ""
