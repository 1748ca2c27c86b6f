"""Teacher distillation: query synthesis and labelling by a stronger model (Gemini, or any
OpenAI-compatible server), with a pool of (key x model) slots, backoff, and kill-proof resume.

``python -m toolforge teacher label|synth`` is the command line; ``maybe_distil`` is what the
01_generate notebook calls.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from toolforge.config import ConfigError
from toolforge.registry import Registry
from toolforge.data.teacher.backend import TeacherConfig, resolve_backend
from toolforge.data.teacher.label import LabelReport, label_file
from toolforge.data.teacher.synth import SynthReport, synth_file

QUERIES_FILE, LABELS_FILE = "teacher_queries.jsonl", "teacher_labels.jsonl"


def maybe_distil(out_dir: str | Path, n_queries: int, seed: int, enabled: str | bool = "auto", *,
                 existing: Iterable[str | Path] = (), config: TeacherConfig | None = None,
                 registry: Registry | None = None, progress: bool = True) -> Path | None:
    """Synthesise ``n_queries`` queries for ``registry``'s tools (default: the built-in nine) and label them
    into ``out_dir/teacher_labels.jsonl``.

    ``existing``: data files whose queries synthesis must not repeat (e.g. the human eval set).

    Both steps resume where an earlier call stopped. With no teacher configured (no Gemini key, no
    ``$TOOLFORGE_TEACHER_OPENAI_BASE_URL``) and ``enabled="auto"``, prints one line saying why and
    returns None; ``enabled=True`` raises ConfigError instead; ``enabled=False`` always skips.
    Returns the labels file (possibly partial when every slot ran out of quota), or None.
    """
    if enabled not in ("auto", True, False):
        raise ValueError(f"enabled must be 'auto', True or False, got {enabled!r}")
    if enabled is False:
        print("teacher: skipped (disabled)")
        return None
    cfg = config or TeacherConfig()
    try:
        backend, keys, models = resolve_backend(cfg)
    except ConfigError as e:
        if enabled is True:
            raise
        print(f"teacher: skipped, {e}")
        return None
    print(f"teacher: {backend}, {len(keys)} key(s) x {', '.join(models)}")
    out = Path(out_dir)
    queries, labels = out / QUERIES_FILE, out / LABELS_FILE
    synth = synth_file(queries, n_queries, cfg, seed=seed, existing=existing, resume=True, registry=registry,
                       progress=progress)
    print(synth.summary())
    if synth.total == 0:
        return None
    report = label_file(queries, labels, cfg, resume=True, registry=registry, progress=progress)
    print(report.summary())
    if report.interrupted:
        raise KeyboardInterrupt
    return labels if labels.exists() else None


__all__ = ["LabelReport", "SynthReport", "TeacherConfig", "label_file", "maybe_distil", "synth_file"]
