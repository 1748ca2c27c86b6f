"""Label queries with the teacher: each query with the registry's tools, the calls that come back
become the example's tool_calls (a text-only answer means no tool).

A call naming an unknown tool, with arguments that fail the tool's schema or that are not JSON is
rejected and counted, never written. A rejected query is asked again up to ``max_rejects`` times in
all; when every answer was rejected it goes to the rejects file beside the output
(``LABELS.rejected.jsonl``) and --resume does not ask it again (delete that file to re-ask them).
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from toolforge.examples import Example, parse_example, read_queries
from toolforge.registry import Registry
from toolforge.data.templates.noise import normalize
from toolforge.data.teacher.backend import Backend, Reply, TeacherConfig
from toolforge.data.teacher.pool import RunReport, Slot
from toolforge.data.teacher.session import Session
from toolforge.data.teacher.store import AppendLog, prepare_output

SYSTEM_PROMPT = """\
You are the tool router of an AI assistant. For the user's message, call the tool or tools the \
assistant must run to answer it, with their arguments; when no tool is needed, answer in one short \
sentence of plain text and call nothing.

Rules:
- Call a tool only when the answer needs it. Chit-chat, writing, coding, explanations, opinions, \
advice and messages that merely mention a tool's words need no tool.
- A message asking for several things gets one call per thing, in the order the user asked; the \
same tool may be called more than once.
- Take arguments from the message, written as each tool's parameter descriptions say.

Label policy, per tool and outcome:
{policy}
"""


def system_prompt(registry: Registry) -> str:
    return SYSTEM_PROMPT.format(policy=registry.label_policy())


def example_id(query: str) -> str:
    return "teacher-" + hashlib.sha1(query.encode("utf-8")).hexdigest()[:12]


def to_tool_calls(reply: Reply, registry: Registry) -> tuple[list[dict[str, Any]] | None, str, str]:
    """(tool_calls, "", "") for an acceptable reply, else (None, reject kind, reason)."""
    calls = []
    for raw in reply.calls:
        name, args = raw.get("name"), raw.get("arguments")
        if isinstance(args, str):  # OpenAI-style servers send the arguments as a JSON string
            try:
                args = json.loads(args) if args.strip() else {}
            except json.JSONDecodeError as e:
                return None, "malformed_arguments", f"{name}: arguments are not JSON ({e.msg})"
        call = {"name": name, "arguments": {} if args is None else args}
        if name not in registry:
            return None, "unknown_tool", f"unknown tool {name!r}"
        reason = registry.check_call(call)
        if reason:
            return None, "invalid_arguments", reason
        calls.append(call)
    if not calls and not reply.text.strip():
        return None, "empty_answer", "neither a call nor text (blocked or cut off)"
    return calls, "", ""


@dataclass
class LabelReport(RunReport):
    labelled: int = 0                 # written by this run
    earlier: int = 0                  # already in the output (resume)
    rejected: Counter = field(default_factory=Counter)  # answers rejected, by kind (every attempt)
    rejected_queries: int = 0         # queries given up on after max_rejects rejected answers
    remaining: int = 0                # never asked or not finished
    duplicates: int = 0               # input lines repeating an earlier query

    @property
    def complete(self) -> bool:
        return not (self.failed or self.remaining)

    def summary(self) -> str:
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items())) or "none"
        return "\n".join([
            f"teacher label: {self.labelled} labelled ({self.earlier} earlier), {self.rejected_queries} queries "
            f"rejected, {self.failed} failed, {self.remaining} remaining, {self.duplicates} duplicate input "
            f"lines skipped", f"  rejected answers: {rejected}"] + self.status_lines())


def rejects_path(output: Path) -> Path:
    """LABELS.jsonl -> LABELS.rejected.jsonl"""
    return output.with_name(output.stem + ".rejected.jsonl")


def label_file(input_path: str | Path, output_path: str | Path, cfg: TeacherConfig | None = None, *,
               resume: bool = False, registry: Registry | None = None, backend: Backend | None = None,
               env: Mapping[str, str] | None = None, progress: bool = True) -> LabelReport:
    """Label every query of ``input_path`` (JSONL with a 'query' field) into ``output_path``. Queries
    are told apart by the dataset builder's near-duplicate key (``templates.noise.normalize``): a
    query the builder would drop as a repeat is not asked."""
    session = Session.open(cfg, registry, backend, env)
    cfg, registry = session.cfg, session.registry
    output, rejects = Path(output_path), rejects_path(Path(output_path))
    rows = read_queries(input_path)

    report = LabelReport(output=output)
    done: set[str] = set()
    for obj in prepare_output(output, resume):
        done.add(normalize(parse_example(obj, registry).query))
        report.earlier += 1
    done |= {normalize(obj["query"]) for obj in prepare_output(rejects, resume) if "query" in obj}

    todo: list[tuple[int, dict[str, Any]]] = []
    seen: set[str] = set()
    for line_no, row in enumerate(rows, 1):
        norm = normalize(row["query"])
        if norm in seen:
            report.duplicates += 1
            continue
        seen.add(norm)
        if norm not in done:
            todo.append((line_no, row))

    system = system_prompt(registry)
    rejected_times: Counter = Counter()
    bar = session.progress_bar("teacher label", len(todo), enabled=progress)

    def show() -> None:
        bar.set_postfix(labelled=report.labelled, remaining=len(todo) - bar.n, dead=session.dead_slots(),
                        refresh=False)

    def attempt(slot: Slot, job: tuple[int, dict[str, Any]]) -> Reply:
        return session.backend.label(slot.key, slot.model, system, job[1]["query"])

    def handle(index: int, slot: Slot, reply: Reply) -> bool:
        line_no, row = todo[index]
        calls, kind, reason = to_tool_calls(reply, registry)
        if calls is None:
            report.rejected[kind] += 1
            rejected_times[index] += 1
            if rejected_times[index] < cfg.max_rejects:
                return False
            rejected_log.append({"query": row["query"], "line": line_no, "kind": kind, "reason": reason,
                                 "model": slot.model, "answer": _answer_for_log(reply)})
            report.rejected_queries += 1
        else:
            # what synthesis asked for, kept to compare with the label (a measure of teacher noise)
            meta = {"model": slot.model, **{f"synth_{k}": row[k] for k in ("tool", "style") if row.get(k)}}
            example = Example(id=example_id(row["query"]), query=row["query"], tool_calls=calls,
                              source="teacher", meta=meta)
            labels.append(example.to_json())
            report.labelled += 1
        bar.update(1)
        show()
        return True

    with AppendLog(output) as labels, AppendLog(rejects) as rejected_log:
        outcome = session.run(todo, attempt, handle, report, on_error=show)
    bar.close()
    report.remaining = len(outcome.remaining)
    if rejects.exists() and rejects.stat().st_size == 0:
        rejects.unlink()
    return report


def _answer_for_log(reply: Reply) -> Any:
    return {"calls": reply.calls, "text": reply.text[:300]} if reply.calls else reply.text[:300]
