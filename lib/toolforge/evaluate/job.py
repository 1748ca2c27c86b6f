"""Evaluate routers on the held-out splits: metrics, plots, an error table and a summary.

``python -m toolforge evaluate [--run runs/<arm> | --arm NAME] [--routers model,heuristic,...]
[--splits test,hard_test,human_eval,human_eval_2] [--max-examples N] [--out DIR]`` (one option per
field of ``EvalConfig``, which is also 03_evaluate's parameters) writes to ``<run>/eval/`` (or ``--out``):

- results.json: ``{router: {split: {metric: value, ..., "per_tool": {...}}}}`` (toolforge.evaluate.metrics);
- summary.md: the comparison table across routers and splits, and what was skipped and why;
- confusion_<router>_<split>.png per router and split, tool_accuracy.png across them;
- errors.jsonl: every wrong answer (router, split, id, query, expected, predicted, error);
- predictions/<router>_<split>.jsonl: every answer, in the ``route`` command's format.

Predictions come from batched routing (the throughput figure); per-query latency is measured
separately, one query at a time after a warm-up, on the first ``latency_samples`` queries.

All or nothing: the files are written into a folder beside the output and replace it whole at the end,
so that an error or Ctrl-C (exit 130, even from a script that ignores it) leaves the last evaluation as
it was. The output is checked first: a file, an unwritable place or a folder holding files evaluate did
not write is refused before any routing. ``arm`` is a name (``runs/<arm>/``), never a path.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import secrets
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolforge.config import (INTERRUPTED, ConfigError, args_to_values, config_parser, dump_yaml, from_dict,
                              interruptible, usage_error)
from toolforge.examples import (BadLine, Example, check_output_path, read_examples, replace_folder, seeded_sample,
                                write_jsonl)
from toolforge.evaluate.metrics import compute_metrics, confusion, same_tools
from toolforge.evaluate.report import EVAL_SPLITS, plot_accuracy, plot_confusion, summary_table
from toolforge.paths import repo_path
from toolforge.registry import DEFAULT_REGISTRY_PATH, load_registry
from toolforge.route.result import RouterUnavailable
from toolforge.route.router import ROUTER_NAMES, BaseRouter, make_router
from toolforge.run import RunDir, registry_path

# Routers fitted on the data folder's train (and val) split: they are told where it is.
FITTED_ON_TRAIN = ("embedding", "keyword", "semantic_router", "setfit")
# The "auto" choices per device. On a CPU, four routers on every split take a few minutes on 2 cores
# with a seeded sample of 20 examples per split (the zero-shot base model, which rambles to the token
# cap, most); small batches, because a batch decodes until its longest answer ends.
AUTO = {"cpu": {"max_examples": 20, "batch_size": 8, "latency_samples": 3},
        "cuda": {"max_examples": 0, "batch_size": 64, "latency_samples": 50}}
def _option(default: Any, help: str, **kwargs) -> Any:
    """A field with its help line (the CLI's --help shows it)."""
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata={"help": help}, **kwargs)
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class EvalConfig:
    """What to evaluate and how: 03_evaluate's ``parameters`` and the ``evaluate`` command's options.

    ``None`` means "auto", and ``resolved()`` is the one place that decides it for this machine.
    """
    arm: str | None = _option(None, "the run to evaluate by name: runs/<arm>/; none: baselines only")
    run_dir: str | None = _option(None, "or the run folder itself (it must exist); default: runs/<arm>/")
    routers: list[str] | None = _option(None, f"comma-separated, from {','.join(ROUTER_NAMES)}; "
                                              "default: all, the model only where the run exists")
    splits: list[str] = _option(EVAL_SPLITS, "comma-separated names of files in the data folder, or JSONL paths "
                                             "(examples/home/eval.jsonl); a split without a file is skipped")
    max_examples: int | None = _option(None, "per split, a seeded sample (the same for every router); 0 = all; "
                                             "default: all on a GPU, 20 on a CPU")
    data_dir: str | None = _option(None, "the dataset folder; default: the run's (its arm's data_dir), else "
                                         "$TOOLFORGE_DATA, Kaggle input or data/")
    out_dir: str | None = _option(None, "output folder; default: <run>/eval/ (needed without a run)")
    device: str | None = _option(None, "default: cuda when available, else cpu")
    batch_size: int | None = _option(None, "queries per batch (the q/s figure); default: 64 on a GPU, 8 on a CPU")
    latency_samples: int | None = _option(None, "queries timed one at a time per split, after a warm-up; "
                                                "default: 50 on a GPU, 3 on a CPU")
    seed: int = _option(0, "the sampling seed")
    registry: str | None = _option(None, "the tools (a registry YAML); default: the run's own (its registry.yaml), "
                                         "else the built-in nine")

    def validate(self) -> None:
        if self.arm is not None and (not self.arm.strip() or Path(self.arm).name != self.arm or self.arm in (".", "..")
                                     or "\\" in self.arm):
            raise ConfigError(f"arm: {self.arm!r} is not an arm's name (runs/<arm>/); give a run folder with --run")
        unknown = sorted(set(self.routers or ()) - set(ROUTER_NAMES))
        if unknown:
            raise ConfigError(f"routers: unknown {unknown}; expected some of {list(ROUTER_NAMES)}")
        if not self.splits:
            raise ConfigError("splits: needs at least one split")
        for key in ("max_examples", "latency_samples"):
            if (getattr(self, key) or 0) < 0:
                raise ConfigError(f"{key}: must be 0 or more, got {getattr(self, key)}")
        if self.batch_size is not None and self.batch_size <= 0:
            raise ConfigError(f"batch_size: must be positive, got {self.batch_size}")

    def resolved(self) -> "EvalConfig":
        """A copy with every "auto" decided: the run folder, the routers, the output folder and the
        per-device sizes (resolving twice changes nothing). Raises ConfigError when the run named by run_dir is missing, when the model
        router is asked for without a run, or when there is nowhere to write."""
        from toolforge.model import default_device
        from toolforge.paths import data_dir, runs_dir

        run = Path(self.run_dir) if self.run_dir else runs_dir() / self.arm if self.arm else None
        if self.run_dir and not run.is_dir():
            raise ConfigError(f"run_dir: no run at {run}")
        has_run = run is not None and run.is_dir()
        routers = list(self.routers) if self.routers is not None else \
            [r for r in ROUTER_NAMES if r != "model" or has_run]
        if "model" in routers and not has_run:
            raise ConfigError(f"routers: 'model' needs a trained run: none at {run}" if run else
                              "routers: 'model' needs a trained run: give run_dir (or arm)")
        if not self.out_dir and not has_run:
            raise ConfigError("out_dir: needed when there is no run to write into" + (f" (none at {run})" if run else ""))
        device = self.device or default_device()
        auto = AUTO["cuda" if device.startswith("cuda") else "cpu"]
        own = registry_path(run) if has_run else None
        registry = str(repo_path(self.registry)) if self.registry else str(own or DEFAULT_REGISTRY_PATH)
        # the data: as given, else the run's own (its arm's data_dir: another registry's data), else data/
        data = self.data_dir or (RunDir(run).arm_values().get("data_dir") if has_run and RunDir(run).arm_file.is_file() else None)
        return dataclasses.replace(
            self, run_dir=str(run) if has_run else None, routers=routers, device=device, registry=registry,
            data_dir=str(data_dir(repo_path(data) if data else None)), out_dir=self.out_dir or str(run / "eval"),
            **{key: value if getattr(self, key) is None else getattr(self, key) for key, value in auto.items()})

    @property
    def output(self) -> Path:
        """The output folder (of a resolved config)."""
        return Path(self.out_dir)


def load_split(path: Path, max_examples: int = 0, seed: int = 0, registry=None) -> tuple[list[Example], list[BadLine]]:
    """The examples of a split (bad lines reported, not fatal), sampled down to ``max_examples``."""
    errors: list[BadLine] = []
    examples = read_examples(path, registry, strict=False, errors=errors)
    return seeded_sample(examples, max_examples, seed), errors


def build_router(kind: str, config: EvalConfig) -> BaseRouter:
    """A router of the resolved config, over its registry (ValueError where the router cannot route those
    tools: the heuristic knows only the built-in nine; a model only the tools it was trained on)."""
    registry = load_registry(config.registry)
    if kind in ("model", "zero_shot"):
        return make_router(kind, config.run_dir if kind == "model" else None, registry=registry,
                           device=config.device, batch_size=config.batch_size)
    if kind in FITTED_ON_TRAIN:
        data = Path(config.data_dir)
        return make_router(kind, train_path=data / "train.jsonl", val_path=data / "val.jsonl", registry=registry)
    return make_router(kind, registry=registry)


def evaluate_router(router: BaseRouter, examples: list[Example], config: EvalConfig, tools: list[str]):
    """(metrics, results) of one router on one split's examples."""
    queries = [ex.query for ex in examples]
    start = time.perf_counter()
    results = router.route_batch(queries, batch_size=config.batch_size, progress=len(queries) > config.batch_size)
    throughput = len(queries) / (time.perf_counter() - start) if queries else None
    timed = queries[:config.latency_samples]
    latencies = []
    if timed:
        router.route(timed[0])  # warm-up (first-call allocations, CUDA graph capture)
        latencies = [router.route(q).latency_ms for q in timed]
    metrics = compute_metrics([ex.tool_calls for ex in examples], [r.tool_calls for r in results],
                              [r.error_kind for r in results], tools=tools,
                              extracts_arguments=router.extracts_arguments, produces_text=router.produces_text,
                              latencies_ms=latencies, throughput_qps=throughput, queries=queries)
    return metrics, results


def load_splits(config: EvalConfig, notes: list[str]) -> dict[str, list[Example]]:
    """The (sampled) examples of each split that exists; a missing split or bad line becomes a note."""
    splits: dict[str, list[Example]] = {}
    registry = load_registry(config.registry)
    for split in config.splits:
        path = repo_path(split) if split.endswith(".jsonl") else Path(config.data_dir) / f"{split}.jsonl"
        split = Path(split).stem
        if not path.is_file():
            notes.append(f"split {split}: {path} not found, skipped")
            print(f"evaluate: split {split} skipped: {path} not found", file=sys.stderr)
            continue
        splits[split], bad = load_split(path, config.max_examples, config.seed, registry)
        notes += [f"split {split}: skipped bad line {b}" for b in bad]
    if not splits:
        raise FileNotFoundError(f"none of the splits {config.splits} exist in {config.data_dir}")
    return splits


# What evaluate writes in its folder. A folder that holds anything else is not evaluate's to replace.
EVAL_FILES = ("results.json", "summary.md", "errors.jsonl", "eval_config.yaml", "tool_accuracy.png", "confusion_*.png",
              "predictions")


def check_out_dir(out: Path) -> None:
    """ConfigError naming out_dir when ``out`` cannot become evaluate's folder: a file, a place that cannot
    be written, or a folder holding files that evaluate did not write."""
    try:
        if out.exists() and not out.is_dir():
            raise NotADirectoryError(f"{out} is a file, not a folder")
        check_output_path(out / "results.json")
    except OSError as e:
        raise ConfigError(f"out_dir: {e}") from None
    others = sorted(p.name for p in out.iterdir() if not any(fnmatch.fnmatch(p.name, f) for f in EVAL_FILES)) \
        if out.is_dir() else []
    if others:
        raise ConfigError(f"out_dir: {out} holds {', '.join(others[:3])}{' ...' if len(others) > 3 else ''}, which "
                          "evaluate did not write; give an evaluation's folder or a new one")


def evaluate(config: EvalConfig) -> dict[str, dict[str, dict[str, Any]]]:
    """Run every router on every split and write the report files all or nothing (into a folder beside
    the output, which replaces it at the end); returns results.json's content."""
    config = config.resolved()
    out = config.output
    check_out_dir(out)
    staged = out.with_name(f".{out.name}.partial-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        staged.mkdir(parents=True)
        results = _write_evaluation(config, staged)
        replace_folder(staged, out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return results


def _write_evaluation(config: EvalConfig, out: Path) -> dict[str, dict[str, dict[str, Any]]]:
    from toolforge.paths import runs_dir

    tools = load_registry(config.registry).names
    notes: list[str] = []
    if config.arm and not config.run_dir:
        notes.append(f"router model: not evaluated: arm {config.arm!r} has no run in {runs_dir()}")
    splits = load_splits(config, notes)

    results: dict[str, dict[str, dict[str, Any]]] = {}
    errors: list[dict[str, Any]] = []
    for kind in config.routers:
        try:
            router = build_router(kind, config)
        except ValueError as e:   # it cannot route these tools (the heuristic, for another registry)
            notes.append(f"router {kind}: not evaluated: {e}")
            print(f"evaluate: router {kind} skipped: {e}", file=sys.stderr)
            continue
        try:
            start = time.perf_counter()
            router.load()
            # What it took to get the router ready here (a model load, an index built, a classifier trained
            # or read from the cache), and for the routers that learn from the train split, the training or
            # fitting time itself (measured when they fitted, which may be an earlier run's cache).
            ready = {"load_seconds": time.perf_counter() - start, "fit_seconds": getattr(router, "fit_seconds", None)}
        except RouterUnavailable as e:
            notes.append(f"router {kind}: not evaluated: {e}")
            print(f"evaluate: router {kind} skipped: {e}", file=sys.stderr)
            continue
        results[kind] = {}
        for split, examples in splits.items():
            metrics, routed = evaluate_router(router, examples, config, tools)
            results[kind][split] = {**metrics, **ready}
            write_jsonl(out / "predictions" / f"{kind}_{split}.jsonl",
                        [{**r.to_json(ex.query), "id": ex.id, "expected": ex.tool_calls} for ex, r in zip(examples, routed)])
            errors += error_rows(kind, split, examples, routed, router.extracts_arguments)
            labels, matrix = confusion([ex.tool_calls for ex in examples], [r.tool_calls for r in routed],
                                       labels=[*tools, "no_tool", "chain"])
            plot_confusion(labels, matrix, out / f"confusion_{kind}_{split}.png", f"{kind} on {split}")
            print(f"evaluate: {kind} on {split}: tool accuracy {metrics['tool_accuracy']:.3f} (n={metrics['n']})",
                  file=sys.stderr)
        del router  # frees a model before the next one loads

    (out / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")
    write_jsonl(out / "errors.jsonl", errors)
    plot_accuracy({kind: {split: m.get("tool_accuracy") for split, m in by_split.items()}
                   for kind, by_split in results.items()}, out / "tool_accuracy.png", "Tool accuracy per router")
    (out / "summary.md").write_text(summary_markdown(results, config, notes), encoding="utf-8")
    dump_yaml(config, out / "eval_config.yaml")
    return results


def error_rows(kind: str, split: str, examples: list[Example], routed, check_arguments: bool) -> list[dict[str, Any]]:
    """Every answer that is wrong: wrong tools, a failure, or (where arguments are extracted) wrong arguments."""
    rows = []
    for ex, r in zip(examples, routed):
        wrong_tools = not same_tools(ex.tool_calls, r.tool_calls)
        if wrong_tools or (check_arguments and r.tool_calls != ex.tool_calls):
            rows.append({"router": kind, "split": split, "id": ex.id, "query": ex.query, "expected": ex.tool_calls,
                         "predicted": r.tool_calls, "error": r.error or ("wrong tools" if wrong_tools else "wrong arguments"),
                         "raw": r.raw})
    return rows


def summary_markdown(results, config: EvalConfig, notes: list[str]) -> str:
    import platform

    import torch

    where = torch.cuda.get_device_name(0) if config.device.startswith("cuda") and torch.cuda.is_available() else \
        f"CPU ({platform.processor() or platform.machine()}, torch threads: {torch.get_num_threads()})"
    text = [f"# Evaluation{': ' + Path(config.run_dir).name if config.run_dir else ' (baselines)'}", "",
            summary_table(results), "",
            f"Measured on {where}. Percentages of the split's examples; `n/a`: not applicable (no chain in the "
            "split; argument and schema metrics of routers that pick tools only (embedding, semantic_router, "
            "setfit); JSON validity of routers that write no text; fitting time of routers that learn nothing "
            "from the data or whose time is not measured here). Latency: one query at a time, "
            f"{config.latency_samples} queries per split after a warm-up; q/s: batched ({config.batch_size} a batch).",
            "", "Per-tool F1 and every other figure: results.json. Wrong answers: errors.jsonl."]
    if config.max_examples:
        text += ["", f"Each split sampled to at most {config.max_examples} examples (seed {config.seed})."]
    if notes:
        text += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(text) + "\n"


# -- command line -----------------------------------------------------------------------------

# The short flags the README and scripts use, beside the ones named after the fields.
CLI_ALIASES = {"run_dir": ["--run"], "out_dir": ["--out"]}


def build_parser():
    """One option per EvalConfig field (``config.config_parser``)."""
    return config_parser(EvalConfig, "python -m toolforge evaluate", __doc__.split("\n\n")[0], aliases=CLI_ALIASES)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with interruptible():   # Ctrl-C stops it even from a script that started it with SIGINT ignored
            config = from_dict(EvalConfig, args_to_values(EvalConfig, args), "command line").resolved()
            evaluate(config)
    except (ValueError, FileNotFoundError) as e:
        return usage_error("evaluate", e)
    except KeyboardInterrupt:
        print("evaluate: interrupted; the output folder is as it was", file=sys.stderr)
        return INTERRUPTED
    print(f"evaluate: wrote {config.output}/results.json and summary.md", file=sys.stderr)
    print((config.output / "summary.md").read_text(encoding="utf-8"))
    return 0
