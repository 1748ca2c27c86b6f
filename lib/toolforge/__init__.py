"""ToolForge: a small fine-tuned language model as an agent's tool router.

The package mirrors the pipeline: ``data`` (01), ``train`` (02), ``route`` (the product), ``evaluate``
(03) and ``jobs`` (04 and the main job), over a small core (registry, examples, prompt, model, run
folder, config). ``toolforge.Router`` and ``toolforge.route_for_agent`` are what an agent uses.
"""
from toolforge.examples import Example, read_examples, write_jsonl
from toolforge.prompt import format_answer, parse_answer
from toolforge.registry import Registry, load_registry

__version__ = "0.1.0"


def __getattr__(name):
    # The router pulls in its backends lazily; importing toolforge stays cheap.
    if name == "Router":
        from toolforge.route.router import Router
        return Router
    if name == "route_for_agent":
        from toolforge.route.agent import route_for_agent
        return route_for_agent
    raise AttributeError(name)


__all__ = ["Example", "Registry", "Router", "format_answer", "load_registry", "parse_answer", "read_examples",
           "route_for_agent", "write_jsonl"]
