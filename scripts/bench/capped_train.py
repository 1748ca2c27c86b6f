"""``python -m toolforge train`` with this process's GPU memory capped: the 2x T4 rehearsal (a T4 has 15 GB).

    accelerate launch --multi_gpu --num_processes 2 scripts/bench/capped_train.py --config ARM [--key value ...]

GPU_MEMORY_GB (default 15) caps each process on its own GPU (LOCAL_RANK, set by the launcher) through
torch.cuda.set_per_process_memory_fraction: an allocation past the cap fails as out of memory, as it
would on a T4. Used by scripts/bench/ddp.sh; without a GPU it is plain ``toolforge train``.
"""
import os
import sys

import torch

from toolforge.cli import main

if torch.cuda.is_available():
    device = int(os.environ.get("LOCAL_RANK", 0))
    cap = float(os.environ.get("GPU_MEMORY_GB", "15")) * 2**30
    torch.cuda.set_per_process_memory_fraction(cap / torch.cuda.get_device_properties(device).total_memory, device)
sys.exit(main(["train", *sys.argv[1:]]))
