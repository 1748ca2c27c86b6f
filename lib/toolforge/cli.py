"""``python -m toolforge <command> ...`` (also installed as ``toolforge``).

Each command lives in its own module with a ``main(argv)``; this file only dispatches, importing a
command's module when it runs, so that ``route --router heuristic`` never loads torch.
"""
from __future__ import annotations

import importlib
import sys

# command -> (module with main(argv), one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "generate": ("toolforge.data.build", "generate template data, merge sources and write the splits + data card"),
    "teacher": ("toolforge.data.teacher.cli", "distil from a teacher model: 'teacher label' / 'teacher synth'"),
    "train": ("toolforge.train.job", "fine-tune a router for one arm (LoRA on CPU, QLoRA on CUDA)"),
    "merge": ("toolforge.train.merge", "merge a run's adapter into a standalone model (use: merge RUN_DIR OUT_DIR)"),
    "route": ("toolforge.route.cli", "route queries with a model, heuristic or embedding router"),
    "serve": ("toolforge.route.serve", "serve the router as an OpenAI-compatible chat-completions endpoint"),
    "export": ("toolforge.train.export", "export a run as a GGUF file for llama.cpp (fast CPU routing)"),
    "evaluate": ("toolforge.evaluate.job", "evaluate routers on the test, hard_test and human_eval splits"),
    "ablation": ("toolforge.jobs.ablation", "run and aggregate a set of arms (02 then 03 per arm)"),
    "pipeline": ("toolforge.jobs.pipeline", "the main job: 01_generate -> 02_train_qlora -> 03_evaluate via papermill"),
    "tools": ("toolforge.jobs.tools", "bring your own tools: 'tools import FILE.json' (-> a registry), 'tools scaffold DIR'"),
    "publish": ("toolforge.data.publish", "stage data/ as a Kaggle Dataset and create/version it (--dry-run)"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: python -m toolforge <command> [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "'python -m toolforge <command> --help' for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"toolforge: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    entry = getattr(module, f"{command}_main", None) or module.main
    return int(entry(rest) or 0)
