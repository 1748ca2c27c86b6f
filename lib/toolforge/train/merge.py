"""``python -m toolforge merge runs/<arm> OUT_DIR``: a run's LoRA adapter merged into its base, as a
standalone model + tokenizer."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from toolforge.run import copy_model_files


def merge(run_dir: str | Path, out_dir: str | Path, dtype: str = "auto") -> Path:
    """Write the run's adapter merged into its base as a standalone model + tokenizer in ``out_dir``."""
    import torch

    from toolforge.model import load_for_inference

    torch_dtype = None if dtype == "auto" else getattr(torch, dtype)
    model, tokenizer = load_for_inference(run_dir, device="cpu", dtype=torch_dtype)
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    copy_model_files(run_dir, out_dir)  # the tokens it may write and the tools it was trained on
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="toolforge merge",
                                     description="Merge a run's LoRA adapter into its base: a standalone model.")
    parser.add_argument("run_dir", help="runs/<arm>/ (with adapter/ and arm.yaml)")
    parser.add_argument("out_dir", help="where to write the merged model and tokenizer")
    parser.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                        help="weights' dtype (auto: float32 on a CPU)")
    args = parser.parse_args(argv)
    try:
        out = merge(args.run_dir, args.out_dir, args.dtype)
    except (FileNotFoundError, ValueError) as e:
        print(f"toolforge merge: {e}", file=sys.stderr)
        return 2
    print(f"merge: wrote {out}")
    return 0
