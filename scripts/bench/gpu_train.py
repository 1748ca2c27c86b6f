"""Training speed on a GPU, in one command (the device tool gives 600 s a call):

    source scripts/machine/env.sh && python3 scripts/bench/gpu_train.py --out $OUT

1. step:   median step time (fwd + bwd + AdamW, after warm-up, torch.cuda.synchronize) of the default
           model with gemma270m-full's LoRA, bf16, on real training batches, for several batch sizes,
           with and without the shared prompt prefix: tokens/s = non-pad tokens of a batch / median step.
2. full:   notebook 02 under papermill for configs/arms/gemma270m-full.yaml (whole train split, 3 epochs):
           its metrics.json (tokens/s over the whole trainer.train(), validation excluded; eval loss).
3. qlora:  the same arm in 4-bit NF4 (QLoRA, bf16 compute), 60 steps, through toolforge.train.job.
4. plain:  the same arm without the shared prompt prefix (padded batches only), 60 steps.
5. t4:     a T4 rehearsal: QLoRA + fp16 mixed precision + gradient checkpointing, 20 steps (checks the
           fp16 grad-scaler path with float32 adapters; its speed means nothing on an H100).

Each part's figures go to $OUT/results.json as soon as it ends; a table is printed last.
``--smoke`` runs every part tiny (on a CPU too) to check the script before spending GPU time.
"""
from __future__ import annotations

import argparse
import json
import dataclasses
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "lib"))

from toolforge.train.arm import load_arm  # noqa: E402
from toolforge.config import to_dict  # noqa: E402
from toolforge.examples import read_examples  # noqa: E402
from toolforge.model import load_base_model  # noqa: E402
from toolforge.registry import load_registry  # noqa: E402
from toolforge.train.encoding import PadCollator, encode_examples  # noqa: E402
from toolforge.train.loss import answer_loss  # noqa: E402
from toolforge.train.precision import precision_plan  # noqa: E402
from toolforge.train.job import train  # noqa: E402

FULL_ARM = REPO / "configs" / "arms" / "gemma270m-full.yaml"
METRIC_KEYS = ("train_tokens_per_s", "computed_tokens_per_s", "wall_time_s", "train_time_s", "eval_time_s",
               "peak_memory_gb", "best_eval_loss", "best_step", "steps", "epochs", "n_train_examples", "device")


def step_benchmark(arm, device: str, batch_sizes: list[int], warmup: int, timed: int) -> list[dict]:
    """Median fwd+bwd+optimizer step time on real batches (random examples of the train split)."""
    from peft import LoraConfig, get_peft_model

    plan = precision_plan(device, "none", "auto")
    model, tokenizer = load_base_model(arm.model, "none", device, plan.dtype)
    model = get_peft_model(model, LoraConfig(r=arm.lora_r, lora_alpha=arm.lora_alpha, lora_dropout=arm.lora_dropout,
                                             target_modules=list(arm.target_modules), task_type="CAUSAL_LM"))
    model.train()
    rows = encode_examples(read_examples(arm.data_path / "train.jsonl"), tokenizer, arm, load_registry())
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-5, fused=device.startswith("cuda"))
    autocast = torch.autocast("cuda", dtype=plan.dtype) if device.startswith("cuda") else torch.autocast("cpu", enabled=False)
    generator = torch.Generator().manual_seed(0)
    results = []
    for share in (True, False):
        collate = PadCollator(tokenizer.pad_token_id, 8, share_prefix=share)
        for batch_size in batch_sizes:
            if device.startswith("cuda"):
                torch.cuda.reset_peak_memory_stats()
            times, tokens = [], []
            for i in range(warmup + timed):
                pick = torch.randperm(len(rows), generator=generator)[:batch_size].tolist()
                batch = collate([rows[j] for j in pick])
                batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                sync(device)
                start = time.perf_counter()
                with autocast:
                    loss = answer_loss(model, batch)
                loss.backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                sync(device)
                if i >= warmup:
                    times.append(time.perf_counter() - start)
                    tokens.append(int(batch["attention_mask"].sum()))
            median = statistics.median(times)
            results.append({"share_prefix": share, "batch_size": batch_size, "median_step_s": round(median, 4),
                            "tokens_per_step": round(statistics.mean(tokens)),
                            "tokens_per_s": round(statistics.mean(tokens) / median),
                            "peak_memory_gb": round(peak_memory_gb(device), 2)})
            print("step", results[-1], flush=True)
    del model, optimizer
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    return results


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def peak_memory_gb(device: str) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.startswith("cuda") else 0.0


def picked(metrics: dict) -> dict:
    return {k: metrics.get(k) for k in METRIC_KEYS}


def run_train(arm, device: str) -> dict:
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    return picked(train(arm, device))


def run_notebook(arm_path: Path, out: Path, overrides: dict, runs: Path) -> dict:
    """Notebook 02 under papermill, as `papermill -f arm.yaml` would run it (jupytext .py -> .ipynb first)."""
    import jupytext
    import papermill

    nb = jupytext.read(REPO / "notebooks" / "02_train_qlora.py")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = out / "02_train_qlora.in.ipynb"
    jupytext.write(nb, source, fmt="ipynb")
    import yaml

    parameters = {**yaml.safe_load(arm_path.read_text()), **overrides, "output_root": str(runs)}
    executed = out / f"02_train_qlora.{parameters['name']}.ipynb"
    papermill.execute_notebook(str(source), str(executed), parameters=parameters, kernel_name="python3",
                               cwd=str(REPO / "notebooks"), progress_bar=False, log_output=True)
    source.unlink()
    return picked(json.loads((runs / parameters["name"] / "metrics.json").read_text()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", default="step,full,qlora,plain,t4")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the script (CPU is fine)")
    parser.add_argument("--model", help="override the arm's model (e.g. a tiny local folder with --smoke)")
    parser.add_argument("--data_dir", help="override the arm's data_dir")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    runs = Path("/tmp/bench-runs")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    overrides = {k: v for k, v in (("model", args.model), ("data_dir", args.data_dir)) if v}
    if args.smoke:
        overrides.update(max_steps=4, eval_steps=2, max_train_examples=64, max_eval_examples=16, batch_size=8)
    arm = load_arm(FULL_ARM, output_root=str(runs), **overrides)
    import peft
    import transformers
    import trl

    results: dict = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                     "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                                  "trl": trl.__version__, "peft": peft.__version__},
                     "arm": to_dict(arm)}
    print(json.dumps(results["versions"]), results["device"], flush=True)

    def record(part: str, fn) -> None:
        start = time.perf_counter()
        try:
            results[part] = fn()
        except Exception as e:  # one part failing must not lose the others' figures
            traceback.print_exc()
            results[part] = {"error": f"{type(e).__name__}: {e}"[:500]}
        results.setdefault("part_seconds", {})[part] = round(time.perf_counter() - start, 1)
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        print(f"== {part} done in {results['part_seconds'][part]} s: {json.dumps(results[part])[:600]}", flush=True)

    def variant(**changes):
        return dataclasses.replace(arm, **changes)

    parts = args.parts.split(",")
    short = {} if args.smoke else {"max_steps": 60, "eval_steps": 30}
    if "step" in parts:
        record("step", lambda: step_benchmark(arm, device, [8] if args.smoke else [32, 64, 128],
                                              1 if args.smoke else 3, 2 if args.smoke else 10))
    if "full" in parts:
        record("full", lambda: run_notebook(FULL_ARM, args.out, overrides, runs))
    if "qlora" in parts and device == "cuda":
        record("qlora", lambda: run_train(variant(quantization="4bit", name="gemma270m-full-qlora", **short), device))
    if "plain" in parts:
        record("plain", lambda: run_train(variant(share_prompt_prefix=False, name="gemma270m-full-plain", **short),
                                          device))
    if "t4" in parts and device == "cuda":
        record("t4", lambda: run_train(variant(quantization="4bit", mixed_precision="fp16", gradient_checkpointing=True,
                                               max_steps=20, eval_steps=10, batch_size=4, gradient_accumulation_steps=4,
                                               name="t4-rehearsal"), device))

    print("\n| part | tokens/s (examples) | computed tokens/s | wall s | train s | peak GB | best eval loss | steps |")
    print("|---|---|---|---|---|---|---|---|")
    for part in ("full", "qlora", "plain", "t4"):
        m = results.get(part)
        if m and "error" not in m:
            print(f"| {part} | {m['train_tokens_per_s']:,.0f} | {m['computed_tokens_per_s']:,.0f} | {m['wall_time_s']} | "
                  f"{m['train_time_s']} | {m['peak_memory_gb']} | {m['best_eval_loss']:.4f} | {m['steps']} |")
        elif m:
            print(f"| {part} | error: {m['error'][:80]} |")
    for s in results.get("step", []) if isinstance(results.get("step"), list) else []:
        print(f"step share={s['share_prefix']} batch={s['batch_size']}: median {s['median_step_s']} s, "
              f"{s['tokens_per_s']:,} tokens/s, peak {s['peak_memory_gb']} GB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
