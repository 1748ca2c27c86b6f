"""For ``SMOKE=1 bash scripts/bench/ddp.sh`` on a CPU: a tiny Gemma 3 (tests/tiny_model.py) in DIR/model and
the first 64 train / 16 val examples of data/ in DIR/data, so that the benchmark's plumbing runs in minutes.

    python3 scripts/bench/ddp_smoke_data.py DIR
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))  # tiny_model, the tests' helper

from toolforge.examples import read_examples, write_jsonl
from toolforge.paths import data_dir
from tiny_model import tiny_gemma_dir

folder = Path(sys.argv[1])
tiny_gemma_dir(folder / "model")
for split, n in (("train", 64), ("val", 16)):
    write_jsonl(folder / "data" / f"{split}.jsonl", read_examples(data_dir() / f"{split}.jsonl")[:n])
print(f"bench_ddp: smoke model and data in {folder}")
