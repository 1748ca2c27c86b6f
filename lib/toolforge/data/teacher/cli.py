"""``python -m toolforge teacher label|synth``.

  teacher label --input QUERIES.jsonl --output LABELS.jsonl [--resume] [--models m1,m2]
  teacher synth --output QUERIES.jsonl --n N [--per-tool K] [--existing data/train.jsonl ...] [--resume]

Exit codes: 0 done, 2 usage error, 3 every slot dead (quotas, keys, models; resumable), 4 incomplete
(some queries failed or too few new queries; resumable), 5 the teacher cannot be reached (connection
refused or DNS failure on every slot: stopped at once; resumable), 130 interrupted (resumable).
"""
from __future__ import annotations

import argparse
import sys

from toolforge.config import ConfigError, comma_list, interruptible, load_config
from toolforge.examples import BadLine
from toolforge.registry import load_registry
from toolforge.data.teacher.backend import TeacherConfig
from toolforge.data.teacher.label import label_file
from toolforge.data.teacher.pool import EXIT_INTERRUPTED
from toolforge.data.teacher.synth import STYLES, synth_file


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("teacher (defaults from TeacherConfig; --config YAML overrides them)")
    g.add_argument("--config", help="YAML file of TeacherConfig fields")
    g.add_argument("--backend", choices=["auto", "gemini", "openai"])
    g.add_argument("--models", type=comma_list, help="comma-separated, e.g. gemini-2.5-flash,gemini-2.5-flash-lite")
    g.add_argument("--base-url", dest="base_url", help="openai: the server's /v1 URL; gemini: an endpoint "
                                                       "in place of $GOOGLE_GEMINI_BASE_URL")
    g.add_argument("--api-version", dest="api_version", help="gemini API version (default v1beta; v1 for endpoints that serve only v1)")
    g.add_argument("--timeout", dest="timeout_s", type=float, help="seconds per request")
    g.add_argument("--min-gap", dest="min_gap_s", type=float, help="seconds between two requests of a slot")
    g.add_argument("--backoff", dest="base_backoff_s", type=float, help="first backoff in seconds")
    g.add_argument("--max-backoff", dest="max_backoff_s", type=float)
    g.add_argument("--max-attempts", dest="max_attempts", type=int, help="per query, over transient errors")
    g.add_argument("--workers", type=int, help="concurrent requests (0: one per slot, at most 8)")
    p.add_argument("--registry", help="tools YAML (default: the built-in registry)")
    p.add_argument("--resume", action="store_true", help="continue an existing output instead of refusing it")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m toolforge teacher", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="action", required=True)
    label = sub.add_parser("label", help="label queries with the teacher's tool calls")
    label.add_argument("--input", required=True, help="JSONL, one object with a 'query' field a line")
    label.add_argument("--output", required=True, help="JSONL examples with source 'teacher'")
    _common(label)
    synth = sub.add_parser("synth", help="ask the teacher for new, deduplicated queries")
    synth.add_argument("--output", required=True, help="JSONL of {query, tool, style, job}")
    synth.add_argument("--n", type=int, default=500, help="distinct queries to write (default 500)")
    synth.add_argument("--per-tool", dest="per_tool", type=int,
                       help="queries per tool instead of --n (n = K x number of tools)")
    synth.add_argument("--tools", type=comma_list, help="only these tools (comma-separated)")
    synth.add_argument("--styles", type=comma_list, help=f"only these styles, of {', '.join(STYLES)}")
    synth.add_argument("--existing", nargs="*", default=[], help="data files whose queries are not repeated")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--batch", type=int, default=10, help="queries asked per request (at most)")
    synth.add_argument("--temperature", type=float, default=1.0)
    _common(synth)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    with interruptible():
        try:
            return _run(args)
        except KeyboardInterrupt:  # before or after the run loop, which handles its own
            print(f"teacher {args.action}: interrupted; run again with --resume", file=sys.stderr)
            return EXIT_INTERRUPTED


def _run(args: argparse.Namespace) -> int:
    fields = {f: getattr(args, f) for f in ("backend", "models", "base_url", "api_version", "timeout_s",
                                           "min_gap_s", "base_backoff_s", "max_backoff_s", "max_attempts",
                                           "workers") if getattr(args, f) is not None}
    try:
        cfg = load_config(TeacherConfig, args.config, **fields)
        registry = load_registry(args.registry)
        if args.action == "label":
            report = label_file(args.input, args.output, cfg, resume=args.resume, registry=registry,
                                progress=args.progress)
        else:
            tools = args.tools or registry.names
            n = args.per_tool * len(tools) if args.per_tool else args.n
            report = synth_file(args.output, n, cfg, seed=args.seed, existing=args.existing, tools=args.tools,
                                styles=args.styles, batch_size=args.batch, temperature=args.temperature,
                                resume=args.resume, registry=registry, progress=args.progress)
    except (ConfigError, BadLine, OSError, ValueError) as e:  # OSError: a missing input, an existing output...
        print(f"teacher {args.action}: error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    return report.exit_code
