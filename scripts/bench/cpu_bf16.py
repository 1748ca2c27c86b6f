"""float32 against bfloat16 for the main job's CPU arm: its training step and its frozen-layer pass, 2 threads.

    python scripts/bench/cpu_bf16.py [fp32] [bf16] [bf16w]       # under flock /work/cpu.lock

The arm is configs/arms/gemma270m-cpu-demo.yaml (LoRA r32 on the top 9 layers, softmax over the data's
tokens, batch 8); 200 seeded train examples. Per mode: the frozen layers' forward over the 200 examples
(CPU and wall seconds an example) and 8 optimizer steps after a warm-up (CPU and wall seconds a step), and
the losses of the 9 steps, so that the modes can be compared. Modes: ``fp32`` the float32 model; ``bf16``
the float32 model under ``torch.autocast("cpu", bfloat16)`` (what ``mixed_precision: bf16`` does on a CPU
that multiplies bfloat16 natively); ``bf16w`` the base model loaded in bfloat16, LoRA in float32.
"""
from __future__ import annotations

import contextlib
import json
import sys
import time

import torch
from peft import get_peft_model

from toolforge.examples import read_examples, seeded_sample
from toolforge.model import load_base_model
from toolforge.paths import REPO_ROOT
from toolforge.train.arm import load_arm
from toolforge.train.encoding import PadCollator, encode_examples
from toolforge.train.frozen_layers import lower_layer_states
from toolforge.train.loss import answer_loss, data_vocabulary
from toolforge.train.trainer import lora_config


def measure(mode: str, arm) -> dict:
    base, tokenizer = load_base_model("embedded:gemma-3-270m", "none", "cpu",
                                      torch.bfloat16 if mode == "bf16w" else torch.float32)
    rows = encode_examples(seeded_sample(read_examples(REPO_ROOT / "data" / "train.jsonl"), 200, 0), tokenizer, arm)
    for i, row in enumerate(rows):
        row["row"] = i
    depth = len(base.model.layers)
    first = depth - arm.lora_layers
    context = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if mode == "bf16" else contextlib.nullcontext
    cpu, wall = time.process_time(), time.perf_counter()
    with context():
        states = lower_layer_states(base, rows, first, batch_size=16, progress=False)
    frozen = {"frozen_cpu_s_per_example": (time.process_time() - cpu) / len(rows),
              "frozen_wall_s_per_example": (time.perf_counter() - wall) / len(rows)}
    model = get_peft_model(base, lora_config(arm, first, depth))
    model.train()
    collate = PadCollator(tokenizer.pad_token_id, frozen_states=states, first_trained_layer=first)
    vocabulary = data_vocabulary(rows)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    cpu_times, wall_times, losses = [], [], []
    for i in range(9):
        batch = collate(rows[i * arm.batch_size:(i + 1) * arm.batch_size])
        cpu, wall = time.process_time(), time.perf_counter()
        with context():
            loss = answer_loss(model, batch, vocabulary=vocabulary)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i:  # the first step warms up
            cpu_times.append(time.process_time() - cpu)
            wall_times.append(time.perf_counter() - wall)
        losses.append(round(loss.item(), 4))
    result = {"mode": mode, **{k: round(v, 4) for k, v in frozen.items()},
              "step_cpu_s": round(sum(cpu_times) / len(cpu_times), 3),
              "step_wall_s": round(sum(wall_times) / len(wall_times), 3), "losses": losses}
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    torch.set_num_threads(2)
    arm = load_arm(REPO_ROOT / "configs" / "arms" / "gemma270m-cpu-demo.yaml")
    for mode in sys.argv[1:] or ["fp32", "bf16", "bf16w"]:
        measure(mode, arm)


if __name__ == "__main__":
    main()
