"""Where a CPU training step's time goes, per recipe, in CPU seconds (load-independent on one thread).

    python scripts/bench/cpu_train.py [--threads 1] [--batches 2] [--batch-size 16] [--out FILE.json]

For each recipe below: the CPU time of one optimizer step (forward, backward and AdamW over LoRA) on real
train batches of the default model, after one warm-up batch, divided into the seconds one example costs.
Measured with time.process_time() on a fixed thread count, so other jobs on the machine slow the wall
clock but hardly the figures (on one thread, CPU time is the work done). Recipes, each adding one change:

  demo-old      the old CPU demo arm: tool list in the prompt (shared prefix run once per batch),
                LoRA r16 on all 18 layers, softmax over all 262,144 tokens
  bare          + no tool list in the prompt
  data-vocab    + the softmax over the train examples' tokens only (loss_vocabulary: data)
  top6-cached   + LoRA on the top 6 layers, the 12 below run once per example (lora_layers: 6);
                the one-off cost of those 12 layers is given per example too
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

from toolforge.train.arm import ArmConfig  # noqa: E402
from toolforge.train.encoding import PadCollator, encode_examples  # noqa: E402
from toolforge.examples import read_examples, seeded_sample  # noqa: E402
from toolforge.train.frozen_layers import lower_layer_states  # noqa: E402
from toolforge.train.loss import answer_loss, data_vocabulary  # noqa: E402
from toolforge.model import load_base_model  # noqa: E402
from toolforge.train.job import lora_config  # noqa: E402

RECIPES = {
    "demo-old": dict(prompt_style="tools", loss_vocabulary="full", lora_layers=0, lora_r=16, lora_alpha=32),
    "bare": dict(prompt_style="bare", loss_vocabulary="full", lora_layers=0, lora_r=16, lora_alpha=32),
    "data-vocab": dict(prompt_style="bare", loss_vocabulary="data", lora_layers=0, lora_r=16, lora_alpha=32),
    "top6-cached": dict(prompt_style="bare", loss_vocabulary="data", lora_layers=6, lora_r=16, lora_alpha=32),
}


def measure(name: str, arm: ArmConfig, base, tokenizer, examples, batches: int, batch_size: int) -> dict:
    from peft import get_peft_model

    rows = encode_examples(examples, tokenizer, arm)
    rows = sorted(rows, key=lambda r: r["length"])[len(rows) // 4:][:batch_size * (batches + 1)]  # typical lengths
    for i, row in enumerate(rows):
        row["row"] = i
    depth = len(base.model.layers)
    first = depth - arm.lora_layers if arm.lora_layers else 0
    result = {"recipe": name, "tokens_per_example": sum(r["length"] for r in rows) / len(rows)}
    states = None
    if first:
        start = time.process_time()
        states = lower_layer_states(base, rows, first, batch_size=batch_size, progress=False)
        result["once_cpu_s_per_example"] = (time.process_time() - start) / len(rows)
    model = get_peft_model(base, lora_config(arm, first, depth))
    model.train()
    vocabulary = data_vocabulary(rows) if arm.loss_vocabulary == "data" else None
    collate = PadCollator(tokenizer.pad_token_id, share_prefix=arm.share_prompt_prefix and not first,
                          frozen_states=states, first_trained_layer=first)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    times = []
    for i in range(batches + 1):
        batch = collate(rows[i * batch_size:(i + 1) * batch_size])
        start = time.process_time()
        answer_loss(model, batch, vocabulary=vocabulary).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:  # the first batch warms up
            times.append(time.process_time() - start)
    model.unload()  # the base model again, for the next recipe
    result["step_cpu_s_per_example"] = sum(times) / len(times) / batch_size
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batches", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--out", help="write the figures here as JSON")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base, tokenizer = load_base_model("embedded:gemma-3-270m", "none", "cpu", torch.float32)
    examples = seeded_sample(read_examples(REPO / "data" / "train.jsonl"), 400, 0)
    results = [measure(name, ArmConfig(**RECIPES[name]), base, tokenizer, examples, args.batches, args.batch_size)
               for name in args.recipes.split(",")]
    if args.out:
        Path(args.out).write_text(json.dumps({"threads": args.threads, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
