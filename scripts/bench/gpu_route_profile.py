"""Where the time of one fast decode goes on a GPU: prefill, graph replay, the step loop, and a
torch.profiler table of one decode. Companion of bench_route.py (same --model/--random-weights).

    python scripts/bench/gpu_route_profile.py --model runs/bench-assets --random-weights
"""
from __future__ import annotations

import argparse
import time

import torch

from toolforge.route.backends.base import common_prefix

from toolforge.route.backends.torch_decoder import GreedyDecoder
from toolforge.prompt import build_messages


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="runs/bench-assets")
    p.add_argument("--random-weights", action="store_true")
    p.add_argument("--new-tokens", type=int, default=20)
    args = p.parse_args()
    from transformers import AutoConfig, AutoModelForCausalLM

    from toolforge.model import load_for_inference, load_tokenizer

    if args.random_weights:
        config = AutoConfig.from_pretrained(args.model)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16).cuda().eval()
        tokenizer = load_tokenizer(args.model, config.model_type)
    else:
        model, tokenizer = load_for_inference(args.model, device="cuda")

    def ids(q):
        return list(tokenizer.apply_chat_template(build_messages(q), add_generation_prompt=True, tokenize=True,
                                                  return_dict=False))
    prompt = ids("what's the weather in Paris tomorrow?")
    decoder = GreedyDecoder(model, [], prefix_ids=common_prefix(ids("a"), ids("b")), max_new_tokens=args.new_tokens,
                            max_prompt_tokens=len(prompt) + 8, cuda_graphs=True)

    def clock(fn, n=10):
        fn()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
        return (time.perf_counter() - start) / n * 1000

    with torch.inference_mode():
        print("decode (graphs) ms", round(clock(lambda: decoder.decode([prompt])), 2))
        print("prefill ms", round(clock(lambda: decoder._prefill([prompt])), 2))
        for key, graph in decoder._graphs.items():
            print(key, "graph replay ms", round(clock(graph.graph.replay, 50), 3))
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            decoder.decode([prompt])
            torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25))
    print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=15))


if __name__ == "__main__":
    main()
