"""The dataset builder and the ``generate`` command.

    python -m toolforge generate [--n 10000] [--seed 0] [--out data] [--teacher auto|on|off] [--extra FILE ...]

It merges sources (templates, teacher label files, any extra file in the example format), validates
every call against the registry (invalid ones are dropped and their reasons counted), removes exact and
near duplicates (same ``normalize``d query) and anything that near-duplicates a hand-written query, takes
out a hard_test split (chains and edge cases), splits the rest train/val/test stratified by category,
and writes the splits and a data card. Every step is seeded: the same inputs give identical files.
"""
from __future__ import annotations

import argparse
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .config import ConfigError, from_dict
from .examples import CHAIN, NO_TOOL, BadLine, Example, iter_jsonl, jsonl_text, read_examples, write_files
from .paths import KAGGLE_INPUT, REPO_ROOT, data_dir
from .registry import Registry, load_registry, tool_names
from .templates import DEFAULT_N, GENERATOR_RULES, UNITS, generate, load_pools, load_templates, normalize

SPLITS = ("train", "val", "test", "hard_test")
VAL_SHARE = TEST_SHARE = 0.10
# hard_test: for each kind, this share of the examples of that kind, at most HARD_TEST_CAP of them.
HARD_TEST_KINDS = ("chain3", "chain", "hard_negative", "policy", "non_english", "typos")
HARD_TEST_SHARE, HARD_TEST_CAP = 0.3, 70
HUMAN_EVAL = "human_eval.jsonl"
# Further hand-written sets beside human_eval.jsonl: never trained on, so their near-duplicate keys are banned too.
OTHER_HUMAN_SETS = ("human_eval_2.jsonl",)
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

    def command(self, teacher_used: bool = False) -> str:
        """The command line that regenerates this dataset (for the data card; no output path)."""
        parts = [f"python -m toolforge generate --n {self.n_examples} --seed {self.seed}",
                 f"--teacher on --teacher-queries {self.teacher_queries}" if teacher_used else "--teacher off"]
        parts += [f"--extra {' '.join(self.extra_files)}"] if self.extra_files else []
        return " ".join(parts)

    def validate(self) -> None:
        if self.n_examples <= 0:
            raise ConfigError(f"n_examples: must be positive, got {self.n_examples}")
        if self.teacher_queries < 0:
            raise ConfigError(f"teacher_queries: must be 0 or more, got {self.teacher_queries}")
        if self.use_teacher not in ("auto", "on", "off"):
            raise ConfigError(f"use_teacher: {self.use_teacher!r} is not one of ['auto', 'on', 'off']")


@dataclass
class BuildReport:
    sources: Counter = field(default_factory=Counter)        # examples read, by source
    invalid: Counter = field(default_factory=Counter)        # dropped, by reason
    bad_lines: list[BadLine] = field(default_factory=list)   # unreadable lines of extra files
    exact_duplicates: int = 0
    near_duplicates: int = 0
    human_eval_overlap: int = 0                              # dropped: near-duplicate of a hand-written query
    teacher_agreement: dict[str, float | int] | None = None


@dataclass
class Dataset:
    splits: dict[str, list[Example]]
    human_eval: list[Example]
    report: BuildReport

    @property
    def all_examples(self) -> list[Example]:
        return [e for name in SPLITS for e in self.splits[name]]


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


def hard_kinds(example: Example) -> set[str]:
    kinds = set(example.meta.get("tags", ()))
    if example.category == CHAIN:
        kinds.add("chain")
    return kinds


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
                  strict: bool = False) -> Dataset:
    """Merge, validate, deduplicate and split. ``human_eval`` (a path) is read strictly: it is hand-written.
    No generated query near-duplicates it or the other hand-written sets beside it (OTHER_HUMAN_SETS)."""
    registry = registry or load_registry()
    report = BuildReport()
    examples = read_sources(template_examples, extra_files, registry, report, strict=strict)
    report.teacher_agreement = teacher_agreement(examples)
    human = read_examples(human_eval, registry) if human_eval else []
    others = [Path(human_eval).with_name(name) for name in OTHER_HUMAN_SETS] if human_eval else []
    banned = {normalize(e.query) for e in human} | human_keys(others)
    examples = deduplicate(examples, report, banned_keys=banned)
    rng = random.Random(seed)
    hard, rest = take_hard_test(examples, rng)
    splits = stratified_split(rest, rng)
    splits["hard_test"] = hard
    for name in SPLITS:
        splits[name].sort(key=lambda e: e.id)
    return Dataset(splits, human, report)


def default_human_eval_path(out_dir: Path) -> Path | None:
    """The out folder's own human_eval.jsonl, else the dataset's (data/ or the Kaggle input)."""
    for folder in (out_dir, data_dir(), REPO_ROOT / "data"):
        if (folder / HUMAN_EVAL).exists():
            return folder / HUMAN_EVAL
    return None


# -- writing --------------------------------------------------------------------------------------------------

def write_dataset(dataset: Dataset, out_dir: str | Path, human_eval_path: str | Path | None = None,
                  command: str = "python -m toolforge generate") -> Path:
    """Write the splits and the data card (and a copy of human_eval.jsonl when it lives elsewhere),
    all-or-nothing: a failure at any point leaves the folder's earlier dataset as it was."""
    out = Path(out_dir)
    files = {out / f"{name}.jsonl": jsonl_text(dataset.splits[name]) for name in SPLITS}
    if human_eval_path and Path(human_eval_path).resolve() != (out / HUMAN_EVAL).resolve():
        files[out / HUMAN_EVAL] = Path(human_eval_path).read_text(encoding="utf-8")
    files[out / DATA_CARD] = data_card(dataset, command)
    write_files(files)
    return out


def _table(header: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _count_table(first: str, groups: dict[str, list[Example]], key, total: bool = True) -> str:
    """Rows: the values ``key(example)`` lists; columns: the groups and their sum. ``total`` adds a
    last row of sums (meaningless where one example counts under several values)."""
    counts = {name: Counter(v for e in examples for v in key(e)) for name, examples in groups.items()}
    values = sorted(set().union(*counts.values()))
    rows = [[v] + [counts[g][v] for g in groups] + [sum(counts[g][v] for g in groups)] for v in values]
    if total:
        sums = [sum(counts[g].values()) for g in groups]
        rows.append(["**total**"] + sums + [sum(sums)])
    return _table([first, *groups, "total"], rows)


SHOWN_BAD_LINES = 20  # skipped lines listed by summary(); the rest are counted


def summary(dataset: Dataset) -> str:
    """A few lines for the terminal and the notebook: sizes, drops and their reasons."""
    r = dataset.report
    sizes = ", ".join(f"{name} {len(dataset.splits[name])}" for name in SPLITS)
    lines = [f"splits: {sizes}; human_eval {len(dataset.human_eval)}",
             f"sources: {dict(sorted(r.sources.items()))}",
             f"dropped: {sum(r.invalid.values())} invalid, {r.exact_duplicates} exact duplicates, "
             f"{r.near_duplicates} near duplicates, {r.human_eval_overlap} near hand-written queries"]
    lines += [f"  invalid x{n}: {reason}" for reason, n in r.invalid.most_common(10)]
    lines += [f"  skipped {bad}" for bad in r.bad_lines[:SHOWN_BAD_LINES]]  # file:line: reason
    if len(r.bad_lines) > SHOWN_BAD_LINES:
        lines.append(f"  ... and {len(r.bad_lines) - SHOWN_BAD_LINES} more skipped lines")
    if r.teacher_agreement is not None:
        a = r.teacher_agreement
        lines.append(f"teacher vs templates on {a['overlap']} shared queries: same tools {a['same_tools']:.1%}, "
                     f"identical calls {a['same_calls']:.1%}")
    return "\n".join(lines)


def data_card(dataset: Dataset, command: str = "python -m toolforge generate", registry: Registry | None = None) -> str:
    registry = registry or load_registry()
    splits = {name: dataset.splits[name] for name in SPLITS}
    with_human = {**splits, "human_eval": dataset.human_eval}
    r = dataset.report
    templates = load_templates(registry)
    pools = load_pools()
    pool_sizes = [["places", len(pools.places)], ["words", len(pools.words)], ["languages", len(pools.languages)],
                  ["translate texts", len(pools.phrases)],
                  ["units", sum(len(u) for u in pools.units.values())],
                  ["wikipedia subjects", sum(len(v) for v in pools.topics.values())],
                  ["url domains / paths", f"{len(pools['domain'])} / {len(pools['url_path'])}"]]
    drop_rows = [[reason, n] for reason, n in r.invalid.most_common()] or [["(none)", 0]]
    agreement = "No teacher labels in this build."
    if r.teacher_agreement is not None:
        a = r.teacher_agreement
        agreement = (f"On {a['overlap']} queries labelled by both (same normalised query): same tool sequence "
                     f"{a['same_tools']:.1%}, identical calls {a['same_calls']:.1%}.")
    units = _table(["dimension", "canonical units"], [[d, ", ".join(u)] for d, u in UNITS.items()])
    family_rows = [[cat, len(fams), sum(f.phrasing_count for f in fams),
                    ", ".join(sorted({f.confuses for f in fams if f.confuses})) or "-"]
                   for cat, fams in templates.by_category.items()]
    generated = [e for e in dataset.all_examples if e.source == "template"]
    chain_share = sum(e.category == CHAIN for e in generated) / max(1, len(generated))
    pairs = {(a["name"], b["name"]) for e in generated for a, b in zip(e.tool_calls, e.tool_calls[1:])}
    n_tools = len(registry.names)
    pairs_seen = sum(a != b for a, b in pairs)
    rules = "\n".join(f"- **{k}**: {v}" for k, v in GENERATOR_RULES.items())
    return f"""# ToolForge data card

Regenerate (byte-identical for the same seed and sources):

    {command}

or run notebooks/01_generate. One JSON object a line:
`{{"id", "query", "tool_calls": [{{"name", "arguments"}}], "source", "category", "meta"}}`; `tool_calls` is `[]`
for no tool and lists chains in the order to run them. `meta` (templates only) names the template, the
surface noise applied and the edge-case tags.

## Splits by category

{_count_table("category", with_human, lambda e: [e.category])}

human_eval.jsonl is written by hand (source "human"), never used for training, and no generated query
near-duplicates it or the other hand-written sets ({", ".join(OTHER_HUMAN_SETS)}). No two splits share a near-duplicate query (key: lower case, punctuation other than
arithmetic operators removed, whitespace collapsed, polite prefixes and fillers removed). Its queries
carry tags for what they test:

{_count_table("tag", {"human_eval": dataset.human_eval}, lambda e: e.meta.get("tags") or ["(none)"], total=False)}

## Calls per tool (a chain counts each of its calls)

{_count_table("tool", with_human, lambda e: tool_names(e.tool_calls) or [NO_TOOL])}

## Sources

{_count_table("source", with_human, lambda e: [e.source])}

## Build

{_table(["dropped as invalid (reason)", "count"], drop_rows)}

Exact duplicates removed: {r.exact_duplicates}. Near duplicates removed: {r.near_duplicates}.
Removed as near-duplicates of hand-written queries (human_eval and {", ".join(OTHER_HUMAN_SETS)}): {r.human_eval_overlap}. Unreadable lines in extra files: {len(r.bad_lines)}.

Teacher/template agreement: {agreement}

## hard_test

Chains of 2-3 calls and edge cases, taken out before the train/val/test split: per kind, {HARD_TEST_SHARE:.0%}
of the examples of that kind, at most {HARD_TEST_CAP}. An example may have several kinds.

{_count_table("kind", {"hard_test": splits["hard_test"], "train+val+test": splits["train"] + splits["val"] + splits["test"]}, lambda e: sorted(hard_kinds(e)) or ["(plain)"], total=False)}

## Surface noise (template examples)

Casing (lower, upper, capitalised), missing final punctuation, chat shorthand (`slang`: "rn", "u",
"gonna"), one typo or several (`typos_heavy`: 3-4 slips, real misspellings first), polite prefixes and
fillers, closing thanks; non-English phrasings for weather and translate (`non_english` tag). Slots
copied verbatim into labels (translate text, URLs, written expressions) are never re-cased.

{_count_table("noise", splits, lambda e: e.meta.get("noise") or ["(none)"], total=False)}

## Templates: families x registers x slots x noise

Each template query is one intent family (its own frames and calls) said in one register, with slot values
from the pools and surface noise. Hard negatives are families that use a tool's words but need another
tool or none (column "hard negatives for": the tools whose words they use).

{_table(["category", "families", "phrasings", "hard negatives for"], family_rows)}

{_count_table("register", splits, lambda e: [e.meta["register"]] if e.source == "template" and e.category != CHAIN else [], total=False)}

Chains: {chain_share:.1%} of the template examples. Written as one request (chains.yaml families, such as parts
that refer back: "... and what time is it there") or composed: one clause per call, in a plan that covers
every ordered pair of distinct tools ({pairs_seen} of {n_tools * (n_tools - 1)} pairs occur), same-tool repeats and
triples, joined by {len(templates.connectors.get(2, []))} two-call and {len(templates.connectors.get(3, []))} three-call connectors (some name the
calls out of run order: "X, but first Y").

{_table(["pool", "size"], pool_sizes)}

## Label policy

From the tool registry (lib/toolforge/tools.yaml):

{registry.label_policy()}

Canonical argument values (lib/toolforge/templates/slots.py):

{rules}

### Canonical units (unit_converter `from` / `to`)

{units}
"""


def sample_per_category(examples: list[Example], k: int = 3, seed: int = 0) -> list[list[str]]:
    """``k`` seeded examples of each category as [category, query, answer] rows, for a quick look."""
    from .prompt import format_answer

    rng = random.Random(seed)
    by_category: dict[str, list[Example]] = {}
    for example in examples:
        by_category.setdefault(example.category, []).append(example)
    return [[category, e.query, format_answer(e.tool_calls)]
            for category in sorted(by_category) for e in rng.sample(by_category[category], min(k, len(by_category[category])))]


# -- the command ----------------------------------------------------------------------------------------------

def maybe_teacher_file(config: GenerateConfig, out_dir: Path, avoid: list[Path] = ()) -> Path | None:
    """Teacher labels when the teacher runs (``toolforge.teacher.maybe_distil``), else None. The teacher
    does not write queries already in the ``avoid`` files (the human eval set)."""
    if config.use_teacher == "off":
        return None
    try:
        from .teacher import maybe_distil
    except ModuleNotFoundError as e:
        if not (e.name or "").startswith("toolforge.teacher"):
            raise
        print("teacher: toolforge.teacher is not available in this checkout; using templates only")
        return None
    enabled = {"auto": "auto", "on": True}[config.use_teacher]
    path = maybe_distil(out_dir=out_dir / "teacher", n_queries=config.teacher_queries, seed=config.seed,
                        enabled=enabled, existing=list(avoid))
    return Path(path) if path else None


def output_dir(config: GenerateConfig, base_dir: str | Path | None = None) -> Path:
    """Where the dataset goes: ``out_dir`` (relative to ``base_dir`` when given), else ``data_dir()``;
    on Kaggle, where the attached dataset is read-only, /kaggle/working/data instead."""
    out = data_dir(config.out_dir or None)
    if KAGGLE_INPUT in out.parents:
        return KAGGLE_WORKING_DATA
    return Path(base_dir) / out if base_dir and not out.is_absolute() else out


def run(config: GenerateConfig, progress: bool = True, base_dir: str | Path | None = None) -> Dataset:
    """Generate templates, add teacher and extra files, build and write the dataset (all its files or
    none: a failure leaves an earlier dataset in the folder as it was)."""
    out = output_dir(config, base_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"out_dir: {out} is a file, not a folder")
    template_examples = generate(config.n_examples, config.seed, progress=progress)
    extra = [Path(p) for p in config.extra_files]
    human_path = default_human_eval_path(out)
    teacher = maybe_teacher_file(config, out, avoid=[human_path] if human_path else [])
    if teacher:
        extra.append(teacher)
    dataset = build_dataset(template_examples, extra, human_eval=human_path, seed=config.seed, strict=config.strict)
    write_dataset(dataset, out, human_eval_path=human_path, command=config.command(teacher_used=bool(teacher)))
    return dataset


def main(argv: list[str] | None = None) -> int:
    defaults = GenerateConfig()
    parser = argparse.ArgumentParser(prog="python -m toolforge generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=defaults.n_examples, help="template examples (default %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--out", default=defaults.out_dir, help="output folder (default: the repository's data/)")
    parser.add_argument("--teacher", choices=["auto", "on", "off"], default=defaults.use_teacher,
                        help="distil from a teacher model: auto = only when API keys exist")
    parser.add_argument("--teacher-queries", type=int, default=defaults.teacher_queries)
    parser.add_argument("--extra", nargs="*", default=[], metavar="FILE", help="more labelled files (example format)")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad line of an extra file")
    args = parser.parse_args(argv)
    try:
        config = from_dict(GenerateConfig, {"n_examples": args.n, "seed": args.seed, "out_dir": args.out,
                                            "use_teacher": args.teacher, "teacher_queries": args.teacher_queries,
                                            "extra_files": args.extra, "strict": args.strict}, "command line")
        dataset = run(config)
    except (BadLine, ConfigError, OSError) as e:  # each names its file (and line, field)
        print(f"generate: {e}")
        return 1
    except KeyboardInterrupt:
        print("generate: interrupted; the dataset in the output folder is unchanged")
        return 130
    print(summary(dataset))
    print(f"wrote {output_dir(config)}")
    return 0
