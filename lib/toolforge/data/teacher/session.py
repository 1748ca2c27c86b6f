"""What labelling and synthesis share: a teacher session set up from a config (the backend, the pool of
key x model slots, a progress bar) that runs jobs on the pool and records what happened in a report."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from tqdm.auto import tqdm

from toolforge.registry import Registry, load_registry
from toolforge.data.teacher.backend import Backend, SlotError, TeacherConfig, make_backend, resolve_backend
from toolforge.data.teacher.pool import Pool, RunOutcome, RunReport, Slot, make_slots, run_jobs

MAX_WORKERS = 8  # concurrent requests when the config says 0: one per slot, at most this many


@dataclass
class Session:
    cfg: TeacherConfig
    registry: Registry
    backend: Backend
    pool: Pool

    @classmethod
    def open(cls, cfg: TeacherConfig | None = None, registry: Registry | None = None,
             backend: Backend | None = None, env: Mapping[str, str] | None = None) -> "Session":
        """The backend the config (and environment) names, or ``backend``; ConfigError when none is set up."""
        cfg = cfg or TeacherConfig()
        registry = registry or load_registry()
        name, keys, models = resolve_backend(cfg, env)
        backend = backend or make_backend(name, cfg, registry, env)
        pool = Pool(make_slots(keys, models), cfg.min_gap_s, cfg.base_backoff_s, cfg.max_backoff_s)
        return cls(cfg, registry, backend, pool)

    def progress_bar(self, desc: str, total: int, initial: int = 0, enabled: bool = True) -> tqdm:
        return tqdm(total=total, initial=initial, desc=desc, unit="q", disable=not enabled, file=sys.stderr)

    def dead_slots(self) -> str:
        """'1/4': dead slots of all, for a progress bar."""
        return f"{len(self.pool.dead())}/{len(self.pool.slots)}"

    def run(self, jobs: Sequence[Any], attempt: Callable[[Slot, Any], Any], handle: Callable[[int, Slot, Any], bool],
            report: RunReport, *, on_error: Callable[[], None] = lambda: None,
            should_stop: Callable[[], bool] = lambda: False) -> RunOutcome:
        """``run_jobs`` on the pool, with request errors counted in ``report`` (then ``on_error()``) and
        the outcome recorded in it."""
        def count(index: int, slot: Slot, error: SlotError) -> None:
            report.count_error(error)
            on_error()

        workers = self.cfg.workers or min(len(self.pool.slots), MAX_WORKERS)
        outcome = run_jobs(jobs, self.pool, attempt, handle, workers=workers, max_attempts=self.cfg.max_attempts,
                           on_error=count, should_stop=should_stop)
        report.record(outcome, self.pool)
        return outcome
