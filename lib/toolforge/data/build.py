"""The dataset builder and the ``generate`` command.

    python -m toolforge generate [--n 10000] [--seed 0] [--out data] [--teacher auto|on|off] [--extra FILE ...]

It merges sources (templates, teacher label files, any extra file in the example format), validates
every call against the registry (invalid ones are dropped and their reasons counted), removes exact and
near duplicates (same ``normalize``d query) and anything that near-duplicates a hand-written query, takes
out a hard_test split (chains and edge cases), splits the rest train/val/test stratified by category,
and writes the splits and a data card. Every step is seeded: the same inputs give identical files.
"""
from __future__ import annotations

import random
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from toolforge.config import (INTERRUPTED, ConfigError, args_to_values, config_parser, from_dict, interruptible,
                              usage_error)
from toolforge.examples import BadLine, Example, iter_jsonl, jsonl_text, read_examples, write_files
from toolforge.paths import KAGGLE_INPUT, REPO_ROOT, data_dir, repo_path
from toolforge.registry import Registry, load_registry, tool_names
from toolforge.data.card import data_card, summary
from toolforge.data.splits import (DATASET_SPLITS, HARD_TEST_CAP, HARD_TEST_KINDS, HARD_TEST_SHARE, HUMAN_EVAL,
                                   OTHER_HUMAN_SETS, TEST_SHARE, VAL_SHARE, BuildReport, DatasetBuild, hard_kinds)
from toolforge.data.templates import DEFAULT_N, generate, normalize
from toolforge.data.templates.pools import TEMPLATE_DIR

DATA_CARD = "DATA_CARD.md"
KAGGLE_WORKING_DATA = Path("/kaggle/working/data")  # where the dataset goes on Kaggle (inputs are read-only)


@dataclass
class GenerateConfig:
    n_examples: int = DEFAULT_N       # template examples to generate (templates.DEFAULT_N)
    seed: int = 0                     # seeds generation and splitting: same seed, same files
    use_teacher: str = "auto"         # "auto": distil only when teacher keys exist; "on" / "off"
    teacher_queries: int = 1000       # queries to send the teacher when it runs
    out_dir: str = ""                 # "" = toolforge.paths.data_dir() (the repository's data/)
    extra_files: list[str] = field(default_factory=list)  # more labelled files in the example format
    strict: bool = False              # stop at the first bad line of an extra file instead of skipping it
    registry: str = ""                # a registry YAML (tools import); "" = the built-in nine tools
    templates: str = ""               # its template folder (<tool>.yaml, no_tool.yaml, chains.yaml); "" = the built-in
    human_sets: list[str] = field(default_factory=list)  # hand-written sets kept out of the splits; [] = data/human_eval*.jsonl

    def command(self, teacher_used: bool = False) -> str:
        """The command line that regenerates this dataset (for the data card; no output path)."""
        parts = [f"python -m toolforge generate --n {self.n_examples} --seed {self.seed}",
                 f"--teacher on --teacher-queries {self.teacher_queries}" if teacher_used else "--teacher off"]
        parts += [f"--extra {' '.join(self.extra_files)}"] if self.extra_files else []
        parts += [f"--registry {self.registry}"] if self.registry else []
        parts += [f"--templates {self.templates}"] if self.templates else []
        parts += [f"--human-sets {' '.join(self.human_sets)}"] if self.human_sets else []
        return " ".join(parts)

    def validate(self) -> None:
        if self.n_examples <= 0:
            raise ConfigError(f"n_examples: must be positive, got {self.n_examples}")
        if self.teacher_queries < 0:
            raise ConfigError(f"teacher_queries: must be 0 or more, got {self.teacher_queries}")
        if self.use_teacher not in ("auto", "on", "off"):
            raise ConfigError(f"use_teacher: {self.use_teacher!r} is not one of ['auto', 'on', 'off']")
        if self.registry and not repo_path(self.registry).is_file():
            raise ConfigError(f"registry: {self.registry} is not a file")
        if self.templates and not repo_path(self.templates).is_dir():
            raise ConfigError(f"templates: {self.templates} is not a folder")
        missing = [p for p in self.human_sets if not repo_path(p).is_file()]
        if missing:  # a set silently skipped would let its queries into the splits
            raise ConfigError(f"human_sets: no such file: {', '.join(missing)}")


# -- building -------------------------------------------------------------------------------------------------

def _reason_kind(reason: str) -> str:
    """A countable reason: the message without its "call N: " prefix."""
    return reason.split(": ", 1)[1] if reason.startswith("call ") else reason


def read_sources(template_examples: Iterable[Example], extra_files: Iterable[str | Path], registry: Registry,
                 report: BuildReport, strict: bool = False) -> list[Example]:
    """All examples whose calls validate; the rest are counted in ``report`` (strict: BadLine raised)."""
    kept = []
    for example in template_examples:
        reason = registry.check_calls(example.tool_calls)
        if reason:
            report.invalid[_reason_kind(reason)] += 1
        else:
            kept.append(example)
    for path in extra_files:
        errors: list[BadLine] = []
        kept += read_examples(path, registry, strict=strict, errors=errors)
        report.bad_lines += errors
        for bad in errors:
            report.invalid[_reason_kind(bad.reason)] += 1
    report.sources.update(e.source for e in kept)
    return kept


def teacher_agreement(examples: list[Example]) -> dict[str, float | int] | None:
    """On queries both the teacher and the templates labelled (same normalised query): the share
    with the same tool sequence and the share with identical calls. None without teacher examples."""
    templates = {normalize(e.query): e for e in examples if e.source == "template"}
    pairs = [(templates[normalize(e.query)], e) for e in examples
             if e.source == "teacher" and normalize(e.query) in templates]
    if not any(e.source == "teacher" for e in examples):
        return None
    n = len(pairs)
    same_tools = sum(tool_names(a.tool_calls) == tool_names(b.tool_calls) for a, b in pairs)
    same_calls = sum(a.tool_calls == b.tool_calls for a, b in pairs)
    return {"overlap": n, "same_tools": same_tools / n if n else 0.0, "same_calls": same_calls / n if n else 0.0}


def deduplicate(examples: list[Example], report: BuildReport, banned_keys: set[str] = frozenset()) -> list[Example]:
    """Keep the first example of each near-duplicate key (sources earlier in the list win), and none
    whose key is banned (the human_eval queries)."""
    seen_queries: set[str] = set()
    seen_keys: set[str] = set()
    kept = []
    for example in examples:
        key = normalize(example.query)
        if example.query in seen_queries:
            report.exact_duplicates += 1
        elif key in seen_keys:
            report.near_duplicates += 1
        elif key in banned_keys:
            report.human_eval_overlap += 1
        else:
            kept.append(example)
        seen_queries.add(example.query)
        seen_keys.add(key)
    return kept


def take_hard_test(examples: list[Example], rng: random.Random) -> tuple[list[Example], list[Example]]:
    """(hard_test, rest): per kind in HARD_TEST_KINDS, a seeded sample of the examples of that kind."""
    chosen: set[int] = set()
    for kind in HARD_TEST_KINDS:
        candidates = [i for i, e in enumerate(examples) if kind in hard_kinds(e) and i not in chosen]
        k = min(HARD_TEST_CAP, round(HARD_TEST_SHARE * len(candidates)))
        chosen.update(rng.sample(candidates, k))
    hard = [e for i, e in enumerate(examples) if i in chosen]
    rest = [e for i, e in enumerate(examples) if i not in chosen]
    return hard, rest


def stratified_split(examples: list[Example], rng: random.Random) -> dict[str, list[Example]]:
    """train/val/test about 80/10/10 within every category."""
    splits: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    by_category: dict[str, list[Example]] = {}
    for example in examples:
        by_category.setdefault(example.category, []).append(example)
    for category in sorted(by_category):
        group = by_category[category]
        rng.shuffle(group)
        n_val, n_test = round(VAL_SHARE * len(group)), round(TEST_SHARE * len(group))
        splits["val"] += group[:n_val]
        splits["test"] += group[n_val:n_val + n_test]
        splits["train"] += group[n_val + n_test:]
    return splits


def human_keys(paths: Iterable[str | Path]) -> set[str]:
    """The near-duplicate keys of every query in hand-written sets (their labels are not needed here,
    so a set still being written, with a bad line, does not stop a build)."""
    return {normalize(obj["query"]) for path in paths if Path(path).exists() for _, obj in iter_jsonl(path)
            if isinstance(obj, dict) and isinstance(obj.get("query"), str)}


def build_dataset(template_examples: Iterable[Example], extra_files: Iterable[str | Path] = (),
                  human_eval: str | Path | None = None, registry: Registry | None = None, seed: int = 0,
                  strict: bool = False, human_sets: Iterable[str | Path] = ()) -> DatasetBuild:
    """Merge, validate, deduplicate and split. ``human_eval`` (a path) is read strictly: it is hand-written.
    No generated query near-duplicates it or the other hand-written sets beside it (OTHER_HUMAN_SETS), nor
    a query of ``human_sets`` (only their queries' keys are read)."""
    registry = registry or load_registry()
    report = BuildReport()
    examples = read_sources(template_examples, extra_files, registry, report, strict=strict)
    report.teacher_agreement = teacher_agreement(examples)
    human = read_examples(human_eval, registry) if human_eval else []
    others = [Path(human_eval).with_name(name) for name in OTHER_HUMAN_SETS] if human_eval else []
    banned = {normalize(e.query) for e in human} | human_keys(others) | human_keys(human_sets)
    examples = deduplicate(examples, report, banned_keys=banned)
    rng = random.Random(seed)
    hard, rest = take_hard_test(examples, rng)
    splits = stratified_split(rest, rng)
    splits["hard_test"] = hard
    for name in DATASET_SPLITS:
        splits[name].sort(key=lambda e: e.id)
    return DatasetBuild(splits, human, report)


def default_human_eval_path(out_dir: Path) -> Path | None:
    """The out folder's own human_eval.jsonl, else the dataset's (data/ or the Kaggle input)."""
    for folder in (out_dir, data_dir(), REPO_ROOT / "data"):
        if (folder / HUMAN_EVAL).exists():
            return folder / HUMAN_EVAL
    return None


# -- writing --------------------------------------------------------------------------------------------------

def write_dataset(dataset: DatasetBuild, out_dir: str | Path, human_eval_path: str | Path | None = None,
                  command: str = "python -m toolforge generate", registry: Registry | None = None,
                  template_dir: str | Path | None = None, human_sets: Iterable[str] = ()) -> Path:
    """Write the splits and the data card (and a copy of human_eval.jsonl when it lives elsewhere),
    all-or-nothing: a failure at any point leaves the folder's earlier dataset as it was."""
    out = Path(out_dir)
    files = {out / f"{name}.jsonl": jsonl_text(dataset.splits[name]) for name in DATASET_SPLITS}
    if human_eval_path and Path(human_eval_path).resolve() != (out / HUMAN_EVAL).resolve():
        files[out / HUMAN_EVAL] = Path(human_eval_path).read_text(encoding="utf-8")
    files[out / DATA_CARD] = data_card(dataset, command, registry, template_dir, list(human_sets))
    write_files(files)
    return out


# -- the command ----------------------------------------------------------------------------------------------

def maybe_teacher_file(config: GenerateConfig, out_dir: Path, avoid: list[Path] = (), registry: Registry | None = None) -> Path | None:
    """Teacher labels for ``registry``'s tools when the teacher runs (``toolforge.data.teacher.maybe_distil``),
    else None. The teacher does not write queries already in the ``avoid`` files (the hand-written sets)."""
    if config.use_teacher == "off":
        return None
    try:
        from toolforge.data.teacher import maybe_distil
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("toolforge.data.teacher"):
            raise
        print("teacher: toolforge.data.teacher is not available in this checkout; using templates only")
        return None
    enabled = {"auto": "auto", "on": True}[config.use_teacher]
    path = maybe_distil(out_dir=out_dir / "teacher", n_queries=config.teacher_queries, seed=config.seed,
                        enabled=enabled, existing=list(avoid), registry=registry)
    return Path(path) if path else None


def output_dir(config: GenerateConfig, base_dir: str | Path | None = None) -> Path:
    """Where the dataset goes: ``out_dir`` (relative to ``base_dir`` when given), else ``data_dir()``;
    on Kaggle, where the attached dataset is read-only, /kaggle/working/data instead."""
    out = data_dir(config.out_dir or None)
    if KAGGLE_INPUT in out.parents:
        return KAGGLE_WORKING_DATA
    return Path(base_dir) / out if base_dir and not out.is_absolute() else out


def run(config: GenerateConfig, progress: bool = True, base_dir: str | Path | None = None) -> DatasetBuild:
    """Generate templates, add teacher and extra files, build and write the dataset (all its files or
    none: a failure leaves an earlier dataset in the folder as it was)."""
    out = output_dir(config, base_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir: {out} is a file, not a folder")
    registry = load_registry(repo_path(config.registry) if config.registry else None)
    template_dir = repo_path(config.templates) if config.templates else None
    human_sets = [repo_path(p) for p in config.human_sets]   # paths from here or from the repository root
    try:
        template_examples = generate(config.n_examples, config.seed, registry, progress, template_dir or TEMPLATE_DIR)
    except (KeyError, ValueError) as e:   # a template file's mistake, named by file and family
        raise ConfigError(f"templates: {e.args[0] if isinstance(e, KeyError) else e}") from None
    extra = [Path(p) for p in config.extra_files]
    # The built-in registry's hand-written sets are data/human_eval*.jsonl; given sets are only kept out.
    human_path = default_human_eval_path(out) if not (config.human_sets or config.registry) else None
    avoid = [human_path] if human_path else human_sets
    teacher = maybe_teacher_file(config, out, avoid=avoid, registry=registry)
    if teacher:
        extra.append(teacher)
    dataset = build_dataset(template_examples, extra, human_eval=human_path, registry=registry, seed=config.seed,
                            strict=config.strict, human_sets=human_sets)
    write_dataset(dataset, out, human_eval_path=human_path, command=config.command(teacher_used=bool(teacher)),
                  registry=registry, template_dir=template_dir, human_sets=config.human_sets)   # the card names them as given
    return dataset


# The flags the data card's command and the README use, beside the ones named after the fields.
CLI_ALIASES = {"n_examples": ["--n"], "out_dir": ["--out"], "use_teacher": ["--teacher"], "extra_files": ["--extra"]}


def main(argv: list[str] | None = None) -> int:
    parser = config_parser(GenerateConfig, "python -m toolforge generate", __doc__.split("\n\n")[0], aliases=CLI_ALIASES)
    args = parser.parse_args(argv)
    try:
        with interruptible():   # Ctrl-C stops it even from a script that started it with SIGINT ignored
            config = from_dict(GenerateConfig, args_to_values(GenerateConfig, args), "command line")
            dataset = run(config)
    except ConfigError as e:  # names the field (or file)
        return usage_error("generate", e)
    except (BadLine, OSError) as e:  # each names its file (and line)
        print(f"generate: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("generate: interrupted; the dataset in the output folder is unchanged", file=sys.stderr)
        return INTERRUPTED
    print(summary(dataset))
    print(f"wrote {output_dir(config)}")
    return 0
