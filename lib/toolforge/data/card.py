"""What a build says about itself: ``summary`` (a few lines for the terminal and the notebook) and
``data_card`` (DATA_CARD.md: sizes, categories, tools, sources, drops, hard_test, noise, templates,
registers, pools, the label policy and the canonical units)."""
from __future__ import annotations

import random
from collections import Counter
from pathlib import Path
from typing import Sequence

from toolforge.data.splits import DATASET_SPLITS, HARD_TEST_CAP, HARD_TEST_SHARE, OTHER_HUMAN_SETS, DatasetBuild, hard_kinds
from toolforge.data.templates import GENERATOR_RULES, UNITS, load_pools, load_templates
from toolforge.data.templates.pools import TEMPLATE_DIR
from toolforge.data.templates.slot_pools import pool_kind
from toolforge.examples import CHAIN, NO_TOOL, Example
from toolforge.markdown import markdown_table
from toolforge.registry import Registry, load_registry, tool_names

def _count_table(first: str, groups: dict[str, list[Example]], key, total: bool = True) -> str:
    """Rows: the values ``key(example)`` lists; columns: the groups and their sum. ``total`` adds a
    last row of sums (meaningless where one example counts under several values)."""
    counts = {name: Counter(v for e in examples for v in key(e)) for name, examples in groups.items()}
    values = sorted(set().union(*counts.values()))
    rows = [[v] + [counts[g][v] for g in groups] + [sum(counts[g][v] for g in groups)] for v in values]
    if total:
        sums = [sum(counts[g].values()) for g in groups]
        rows.append(["**total**"] + sums + [sum(sums)])
    return markdown_table([first, *groups, "total"], rows)


SHOWN_BAD_LINES = 20  # skipped lines listed by summary(); the rest are counted


def summary(dataset: DatasetBuild) -> str:
    """A few lines for the terminal and the notebook: sizes, drops and their reasons."""
    r = dataset.report
    sizes = ", ".join(f"{name} {len(dataset.splits[name])}" for name in DATASET_SPLITS)
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


def _pool_size(pool) -> int:
    return (pool["range"][1] - pool["range"][0]) // pool.get("step", 1) + 1 if pool_kind(pool) == "range" else len(pool)


def data_card(dataset: DatasetBuild, command: str = "python -m toolforge generate", registry: Registry | None = None,
              template_dir: str | Path | None = None, human_sets: Sequence[str] = ()) -> str:
    """The card; ``template_dir`` (None: the built-in) and ``human_sets`` (the hand-written sets a build kept
    out of the splits, said by name only: their queries are not described) for another registry's data."""
    registry = registry or load_registry()
    own = template_dir is not None and Path(template_dir).resolve() != TEMPLATE_DIR.resolve()
    splits = {name: dataset.splits[name] for name in DATASET_SPLITS}
    with_human = {**splits, "human_eval": dataset.human_eval} if dataset.human_eval or not own else splits
    r = dataset.report
    templates = load_templates(registry, Path(template_dir) if own else TEMPLATE_DIR)
    pools = load_pools()
    pool_sizes = [["places", len(pools.places)], ["words", len(pools.words)], ["languages", len(pools.languages)],
                  ["translate texts", len(pools.phrases)],
                  ["units", sum(len(u) for u in pools.units.values())],
                  ["wikipedia subjects", sum(len(v) for v in pools.topics.values())],
                  ["url domains / paths", f"{len(pools['domain'])} / {len(pools['url_path'])}"]]
    if own:   # the template folder's pools (values, records, range sizes)
        folder_pools: dict = {}
        for family in templates.families:
            for name, pool in family.pools.items():
                folder_pools.setdefault(name, pool)
        pool_sizes = [[f"{name} ({pool_kind(pool)})", _pool_size(pool)] for name, pool in folder_pools.items()]
    drop_rows = [[reason, n] for reason, n in r.invalid.most_common()] or [["(none)", 0]]
    agreement = "No teacher labels in this build."
    if r.teacher_agreement is not None:
        a = r.teacher_agreement
        agreement = (f"On {a['overlap']} queries labelled by both (same normalised query): same tool sequence "
                     f"{a['same_tools']:.1%}, identical calls {a['same_calls']:.1%}.")
    units = markdown_table(["dimension", "canonical units"], [[d, ", ".join(u)] for d, u in UNITS.items()])
    family_rows = [[cat, len(fams), sum(f.phrasing_count for f in fams),
                    ", ".join(sorted({f.confuses for f in fams if f.confuses})) or "-"]
                   for cat, fams in templates.by_category.items()]
    generated = [e for e in dataset.all_examples if e.source == "template"]
    chain_share = sum(e.category == CHAIN for e in generated) / max(1, len(generated))
    pairs = {(a["name"], b["name"]) for e in generated for a, b in zip(e.tool_calls, e.tool_calls[1:])}
    n_tools = len(registry.names)
    pairs_seen = sum(a != b for a, b in pairs)
    rules = "\n".join(f"- **{k}**: {v}" for k, v in GENERATOR_RULES.items())
    human = f"""human_eval.jsonl is written by hand (source "human"), never used for training, and no generated query
near-duplicates it or the other hand-written sets ({", ".join(OTHER_HUMAN_SETS)}). No two splits share a near-duplicate query (key: lower case, punctuation other than
arithmetic operators removed, whitespace collapsed, polite prefixes and fillers removed). Its queries
carry tags for what they test:

{_count_table("tag", {"human_eval": dataset.human_eval}, lambda e: e.meta.get("tags") or ["(none)"], total=False)}"""
    policy = f"""From the tool registry (lib/toolforge/tools.yaml):

{registry.label_policy()}

Canonical argument values (lib/toolforge/data/templates/pools.py):

{rules}

### Canonical units (unit_converter `from` / `to`)

{units}"""
    if own:
        human = (f"No generated query near-duplicates a query of the hand-written sets kept out of the splits "
                 f"({', '.join(human_sets) or 'none given'}; only their queries' near-duplicate keys are read). "
                 "No two splits share a near-duplicate query (key: lower case, punctuation other than arithmetic "
                 "operators removed, whitespace collapsed, polite prefixes and fillers removed).")
        policy = (f"The registry's tools ({', '.join(registry.names)}) and their `policy` lines:\n\n"
                  f"{registry.label_policy() or '(no policy lines in the registry)'}\n\nThe templates "
                  f"({Path(template_dir).as_posix()}) write every label; their files say the policy they follow.")
    return f"""# ToolForge data card

Regenerate (byte-identical for the same seed and sources):

    {command}

or run notebooks/01_generate. One JSON object a line:
`{{"id", "query", "tool_calls": [{{"name", "arguments"}}], "source", "category", "meta"}}`; `tool_calls` is `[]`
for no tool and lists chains in the order to run them. `meta` (templates only) names the template, the
surface noise applied and the edge-case tags.

## Splits by category

{_count_table("category", with_human, lambda e: [e.category])}

{human}

## Calls per tool (a chain counts each of its calls)

{_count_table("tool", with_human, lambda e: tool_names(e.tool_calls) or [NO_TOOL])}

## Sources

{_count_table("source", with_human, lambda e: [e.source])}

## Build

{markdown_table(["dropped as invalid (reason)", "count"], drop_rows)}

Exact duplicates removed: {r.exact_duplicates}. Near duplicates removed: {r.near_duplicates}.
Removed as near-duplicates of hand-written queries ({", ".join(human_sets) if own else "human_eval and " + ", ".join(OTHER_HUMAN_SETS)}): {r.human_eval_overlap}. Unreadable lines in extra files: {len(r.bad_lines)}.

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

{markdown_table(["category", "families", "phrasings", "hard negatives for"], family_rows)}

{_count_table("register", splits, lambda e: [e.meta["register"]] if "register" in e.meta and e.category != CHAIN else [], total=False)}

Chains: {chain_share:.1%} of the template examples. Written as one request (chains.yaml families, such as parts
that refer back: "... and what time is it there") or composed: one clause per call, in a plan that covers
every ordered pair of distinct tools ({pairs_seen} of {n_tools * (n_tools - 1)} pairs occur), same-tool repeats and
triples, joined by {len(templates.connectors.get(2, []))} two-call and {len(templates.connectors.get(3, []))} three-call connectors (some name the
calls out of run order: "X, but first Y").

{markdown_table(["pool", "size"], pool_sizes)}

## Label policy

{policy}
"""


def sample_per_category(examples: list[Example], k: int = 3, seed: int = 0) -> list[list[str]]:
    """``k`` seeded examples of each category as [category, query, answer] rows, for a quick look."""
    from toolforge.prompt import format_answer

    rng = random.Random(seed)
    by_category: dict[str, list[Example]] = {}
    for example in examples:
        by_category.setdefault(example.category, []).append(example)
    return [[category, e.query, format_answer(e.tool_calls)]
            for category in sorted(by_category) for e in rng.sample(by_category[category], min(k, len(by_category[category])))]
