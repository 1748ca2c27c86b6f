"""ToolForge: a small fine-tuned language model as an agent's tool router."""
from .examples import Example, read_examples, write_jsonl
from .prompt import format_answer, parse_answer
from .registry import Registry, load_registry

__version__ = "0.1.0"


def __getattr__(name):
    # Router pulls in torch lazily; importing toolforge stays cheap.
    if name == "Router":
        from .router import Router
        return Router
    raise AttributeError(name)


__all__ = ["Example", "Registry", "Router", "format_answer", "load_registry", "parse_answer",
           "read_examples", "write_jsonl"]
