"""What the answer grammar costs per decoded token on this CPU, with the real Gemma 3 tokenizer.

    nice -n 10 .venv/bin/python scripts/bench/grammar.py [--answers 256] [--batch 1 8 32] [--model]

Walks real answers (data/test.jsonl, written by format_answer and tokenized as the model writes them,
ending with <end_of_turn>) through the decoder's grammar hook exactly as GreedyDecoder calls it:
``choose(logits)`` on (batch, 262144) float32 logits, then ``advance(tokens)``, once with logits
whose argmax is the answer's token (a trained router: the grammar only checks it) and once with random
logits (the worst case: every row computes and applies its full mask). It times both per decoding
step and per token (a row's step) next to the plain argmax, the one-off costs (the GBNF text, llguidance's view of the
vocabulary, the compiled grammar), and checks that every answer's tokens stay allowed. ``--model``
also decodes a few queries with the embedded Gemma 3 270M with and without the grammar, to put the
cost next to a model step's. CPU timings move with the machine's load, printed alongside.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def walk(constraint, answers: list[list[int]], batch: int, vocab: int, stop: int, agree: bool) -> dict:
    """Feed the answers through the hook ``batch`` rows at a time: ``choose`` on random logits (where
    ``agree``, the answer's token is the logits' argmax, as with a trained router; else it almost never
    is, the worst case: every row's full mask), then ``advance``. Microseconds per step and token."""
    from toolforge.route.grammar import allowed_tokens, allows

    choose_us, argmax_us, advance_us, tokens, refused = [], [], [], 0, 0
    for first in range(0, len(answers) - batch + 1, batch):
        rows_answers = answers[first:first + batch]
        rows = constraint.start(batch)
        for step in range(max(map(len, rows_answers))):
            chosen = [a[step] if step < len(a) else stop for a in rows_answers]
            live = [i for i, a in enumerate(rows_answers) if step < len(a)]
            refused += sum(not allows(rows.matchers[i], chosen[i], vocab)   # (a stop token after a complete
                           and not allowed_tokens(rows.matchers[i], vocab)[chosen[i]] for i in live)  # answer)
            logits = torch.randn(batch, vocab)
            if agree:
                logits[range(batch), chosen] = 10.0
            start = time.perf_counter()
            logits.argmax(-1).tolist()          # what the decoder does without the grammar, paired
            argmax_us.append((time.perf_counter() - start) * 1e6)
            start = time.perf_counter()
            picked = rows.choose(logits)
            choose_us.append((time.perf_counter() - start) * 1e6)
            if agree:
                assert [picked[i] for i in live] == [chosen[i] for i in live]
            tokens += len(live)
            start = time.perf_counter()
            rows.advance(chosen)
            advance_us.append((time.perf_counter() - start) * 1e6)
    # the grammar's own cost: choose + advance, less the argmax the decoder would do anyway
    extra = [c + a - g for c, a, g in zip(choose_us, advance_us, argmax_us)]
    return {"batch": batch, "model_agrees": agree, "steps": len(extra), "tokens": tokens,
            "refused_tokens": refused, "argmax_us_p50": statistics.median(argmax_us),
            "choose_us_p50": statistics.median(choose_us), "advance_us_p50": statistics.median(advance_us),
            "extra_us_p50": statistics.median(extra), "extra_us_mean": statistics.mean(extra),
            "extra_us_per_token": sum(extra) / tokens}


def model_steps(tokenizer, stops, constraint, queries: list[str], max_new: int, rounds: int = 3) -> dict:
    """ms per generated token of the embedded base model, one query at a time, without and with the
    grammar, in alternating rounds (the machine's load moves): the median round of each."""
    from toolforge.route.backends.base import common_prefix
    from toolforge.route.backends.torch_decoder import GreedyDecoder
    from toolforge.model import load_for_inference
    from toolforge.prompt import build_messages

    model, _ = load_for_inference("embedded:gemma-3-270m", device="cpu")
    prompts = [tokenizer.apply_chat_template(build_messages(q), add_generation_prompt=True, tokenize=True,
                                             return_dict=False) for q in queries]
    prefix = common_prefix(prompts[0], prompts[1])
    decoders = {label: GreedyDecoder(model, stops, prefix_ids=prefix, max_new_tokens=max_new, constraint=hook)
                for label, hook in (("without", None), ("with", constraint))}
    per_round: dict[str, list[float]] = {label: [] for label in decoders}
    for _ in range(rounds):
        for label, decoder in decoders.items():
            decoder.decode([prompts[0]])  # warm
            start, n = time.perf_counter(), 0
            for prompt in prompts:
                n += len(decoder.decode([prompt])[0])
            per_round[label].append((time.perf_counter() - start) * 1000 / n)
    return {label: {"ms_per_token": statistics.median(v), "rounds": v} for label, v in per_round.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answers", type=int, default=256, help="test answers to walk (default 256)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8, 32], help="batch sizes (default 1 8 32)")
    parser.add_argument("--model", action="store_true", help="also time the embedded model's decode steps")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    from toolforge.examples import iter_jsonl
    from toolforge.route.grammar import AnswerConstraint, answer_gbnf
    from toolforge.model import load_embedded_tokenizer, stop_token_ids
    from toolforge.prompt import format_answer

    torch.set_num_threads(1)
    report: dict = {"load_average": os.getloadavg(), "cpu_count": os.cpu_count()}
    start = time.perf_counter()
    tokenizer = load_embedded_tokenizer()
    stops = stop_token_ids(tokenizer)
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    report["tokenizer_load_s"] = time.perf_counter() - start

    start = time.perf_counter()
    gbnf = answer_gbnf()
    report["gbnf_build_ms"] = (time.perf_counter() - start) * 1000
    report["gbnf_chars"] = len(gbnf)
    start = time.perf_counter()
    constraint = AnswerConstraint(tokenizer, stops)
    report["constraint_build_s"] = time.perf_counter() - start   # vocabulary + grammar, once per process
    start = time.perf_counter()
    AnswerConstraint(tokenizer, stops)
    report["constraint_rebuild_s"] = time.perf_counter() - start  # vocabulary cached: the grammar only

    rows = [row for _, row in iter_jsonl(ROOT / "data" / "test.jsonl")][:args.answers]
    answers = [tokenizer.encode(format_answer(r["tool_calls"]), add_special_tokens=False) + [end_of_turn]
               for r in rows]
    vocab = len(tokenizer)
    report["answers"] = len(answers)
    report["answer_tokens_mean"] = statistics.mean(map(len, answers))
    report["walks"] = []
    for batch in args.batch:
        for agree in (True, False):
            report["walks"].append(walk(constraint, answers, batch, vocab, end_of_turn, agree))
    if args.model:
        queries = [r["query"] for r in rows[:8]]
        report["model"] = model_steps(tokenizer, stops, constraint, queries, max_new=24)

    print(f"load average {report['load_average'][0]:.1f} on {report['cpu_count']} cores; one torch thread")
    print(f"one-off: tokenizer {report['tokenizer_load_s']:.1f} s, GBNF text {report['gbnf_build_ms']:.0f} ms "
          f"({report['gbnf_chars']} chars), constraint {report['constraint_build_s']:.1f} s "
          f"(again in the same process: {report['constraint_rebuild_s'] * 1000:.0f} ms)")
    print(f"{report['answers']} test answers, {report['answer_tokens_mean']:.1f} tokens each on average")
    print("the grammar's cost = choose + advance - the plain argmax (paired, same logits), in microseconds")
    print("batch | model's token | steps | tokens | refused | argmax p50 | choose p50 | advance p50 "
          "| cost p50 / mean a step | cost a token")
    for w in report["walks"]:
        print(f"{w['batch']:5d} | {'its argmax' if w['model_agrees'] else 'random':13s} | {w['steps']:5d} | "
              f"{w['tokens']:6d} | {w['refused_tokens']:7d} | {w['argmax_us_p50']:10.0f} | {w['choose_us_p50']:10.0f} | "
              f"{w['advance_us_p50']:11.0f} | {w['extra_us_p50']:9.0f} / {w['extra_us_mean']:<10.0f} | "
              f"{w['extra_us_per_token']:12.0f}")
    if args.model:
        m = report["model"]
        print(f"embedded Gemma 3 270M, one query at a time: {m['without']['ms_per_token']:.1f} ms/token without "
              f"the grammar, {m['with']['ms_per_token']:.1f} ms/token with it")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 1 if any(w["refused_tokens"] for w in report["walks"]) else 0


if __name__ == "__main__":
    sys.exit(main())
