"""Query synthesis: ask the teacher for diverse user queries per tool and per style, deduplicated
against existing data files and against themselves.

Jobs are a fixed, seeded plan of (tool, style, persona) requests, each asking for a handful of
queries as a JSON list. Each new query is appended (with its job number) as soon as it arrives, so
--resume skips the jobs already answered and stops once ``n`` distinct queries exist.
"""
from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from toolforge.registry import Registry
from toolforge.data.templates.noise import normalize
from toolforge.data.teacher.backend import Backend, TeacherConfig
from toolforge.data.teacher.pool import RunReport, Slot
from toolforge.data.teacher.session import Session
from toolforge.data.teacher.store import AppendLog, prepare_output, read_rows

# style -> what the queries must be like ({tool} is the tool's name and description).
STYLES: dict[str, str] = {
    "single": "that each need exactly one call of the tool {tool}, with every argument it needs given in the message",
    "chain": "that each ask for two or three things in one message, one of them needing the tool {tool} and "
             "the others needing other tools (or {tool} again), so the assistant must chain several calls",
    "no_tool": "that mention the subject or words of the tool {tool} but need no tool at all: the assistant "
               "can answer from its own knowledge (explanations, opinions, writing help, how something works)",
    "ambiguous": "that sit on the border between the tool {tool} and a neighbouring tool or no tool, where "
                 "only a careful reading of the label policy decides",
    "edge": "that need the tool {tool} but are awkward: typos, slang, no punctuation, very short or very long, "
            "indirect phrasing, a polite preamble, or another language mixed in",
}
GENERAL_STYLE = ("chit_chat", "that need no tool at all: greetings, small talk, writing, coding, maths "
                              "reasoning without numbers to compute, advice and opinions")
PERSONAS = ["a student", "a traveller", "a home cook", "a software developer", "a retiree", "a small-business owner",
            "a sports fan", "a parent", "a researcher", "a non-native English speaker", "a teenager",
            "a journalist", "a nurse on a night shift", "a gardener", "an investor"]

PROMPT = """\
You write realistic test messages for the tool router of an AI assistant. The assistant's tools:
{tools}

Write {k} different messages that {persona} might type to the assistant, {style}.
Vary the length, tone and wording; use varied, concrete names, places, numbers, dates and languages; \
each message stands on its own. Do not number them.
Answer with a JSON array of {k} strings and nothing else."""


@dataclass(frozen=True)
class SynthJob:
    tool: str | None
    style: str
    persona: str
    k: int

    def prompt(self, registry: Registry) -> str:
        if self.tool is None:
            style = GENERAL_STYLE[1]
        else:
            tool = registry[self.tool]
            style = STYLES[self.style].format(tool=f"{tool.name} ({tool.description.rstrip('.')})")
        return PROMPT.format(tools=registry.describe(), k=self.k, persona=self.persona, style=style)


def plan_jobs(n: int, seed: int, registry: Registry, tools: Sequence[str] | None = None,
              styles: Sequence[str] | None = None, batch_size: int = 10, slack: int = 3) -> list[SynthJob]:
    """A seeded plan of requests covering every (tool, style) pair, plus general no-tool chat, with
    ``slack`` times more requests than ``n`` needs, as some answers repeat earlier queries."""
    tools = list(tools or registry.names)
    styles = list(styles or STYLES)
    unknown = [t for t in tools if t not in registry] + [s for s in styles if s not in STYLES]
    if unknown:
        raise ValueError(f"unknown tools/styles {unknown}; styles: {list(STYLES)}")
    pairs: list[tuple[str | None, str]] = [(t, s) for t in tools for s in styles]
    pairs.append((None, GENERAL_STYLE[0]))
    k = max(3, min(batch_size, math.ceil(n / len(pairs))))
    rng = random.Random(seed)
    rng.shuffle(pairs)
    return [SynthJob(tool, style, rng.choice(PERSONAS), k)
            for j in range(slack * math.ceil(n / k))
            for tool, style in [pairs[j % len(pairs)]]]


def parse_query_list(text: str) -> list[str]:
    """The strings of the JSON array in ``text`` (code fences and prose around it tolerated)."""
    match = re.search(r"\[.*\]", text, re.S)
    if not match:
        raise ValueError("no JSON array in the answer")
    items = json.loads(match.group(0))
    if not isinstance(items, list):
        raise ValueError("the answer is not a JSON array")
    # Models sometimes number the strings themselves ("1. ...") despite being told not to.
    cleaned = (re.sub(r"^\s*\d+[.)]\s+", "", item).strip() for item in items if isinstance(item, str))
    return [item for item in cleaned if item]


def existing_queries(paths: Iterable[str | Path]) -> set[str]:
    """Near-duplicate keys of the queries of data files (any JSONL with a 'query' field)."""
    found: set[str] = set()
    for path in paths:
        found |= {normalize(obj["query"]) for _, obj in read_rows(Path(path))
                  if isinstance(obj.get("query"), str)}
    return found


@dataclass
class SynthReport(RunReport):
    n: int = 0                        # queries asked for
    written: int = 0                  # new queries written by this run
    earlier: int = 0                  # already in the output (resume)
    duplicates: int = 0               # proposed queries dropped as repeats
    unparseable: int = 0              # answers with no JSON list of strings

    @property
    def total(self) -> int:
        return self.written + self.earlier

    @property
    def complete(self) -> bool:
        return self.total >= self.n

    def summary(self) -> str:
        return "\n".join([
            f"teacher synth: {self.total}/{self.n} queries ({self.written} new, {self.earlier} earlier), "
            f"{self.duplicates} duplicates dropped, {self.unparseable} unparseable answers, "
            f"{self.failed} requests failed"] + self.status_lines())


def synth_file(output_path: str | Path, n: int, cfg: TeacherConfig | None = None, *, seed: int = 0,
               existing: Iterable[str | Path] = (), tools: Sequence[str] | None = None,
               styles: Sequence[str] | None = None, batch_size: int = 10, temperature: float = 1.0,
               resume: bool = False, registry: Registry | None = None, backend: Backend | None = None,
               env: Mapping[str, str] | None = None, progress: bool = True) -> SynthReport:
    """Write ``n`` distinct new queries to ``output_path``: {"query", "tool", "style", "job"} a line.
    A query is new when its near-duplicate key (``templates.noise.normalize``, the dataset builder's)
    is not among those of ``existing`` files and earlier answers: the builder would drop it anyway."""
    session = Session.open(cfg, registry, backend, env)
    cfg, registry = session.cfg, session.registry
    output = Path(output_path)

    report = SynthReport(n=n, output=output)
    seen = existing_queries(existing)
    done_jobs: set[int] = set()
    for obj in prepare_output(output, resume):
        seen.add(normalize(obj["query"]))
        done_jobs.add(obj.get("job", -1))
        report.earlier += 1

    jobs = plan_jobs(n, seed, registry, tools, styles, batch_size)
    pending = [j for j in range(len(jobs)) if j not in done_jobs]
    bar = session.progress_bar("teacher synth", n, initial=min(n, report.earlier), enabled=progress)
    unparseable: Counter = Counter()

    def attempt(slot: Slot, job_no: int) -> str:
        return session.backend.generate(slot.key, slot.model, jobs[job_no].prompt(registry), temperature)

    def handle(index: int, slot: Slot, text: str) -> bool:
        try:
            queries = parse_query_list(text)
        except ValueError:
            report.unparseable += 1
            unparseable[index] += 1
            return unparseable[index] >= cfg.max_rejects
        job = jobs[pending[index]]
        for query in queries:
            norm = normalize(query)
            if norm in seen or not norm:
                report.duplicates += 1
                continue
            if report.total >= n:
                break
            seen.add(norm)
            log.append({"query": query, "tool": job.tool, "style": job.style, "job": pending[index]})
            report.written += 1
            bar.update(1)
        bar.set_postfix(remaining=max(0, n - report.total), dead=session.dead_slots(), refresh=False)
        return True

    with AppendLog(output) as log:
        session.run(pending, attempt, handle, report, should_stop=lambda: report.total >= n)
    bar.close()
    return report
