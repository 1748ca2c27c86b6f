"""What a built dataset is: its four splits, how hard_test is chosen, the hand-written sets beside them,
and what a build reports. The builder (``build``) makes one; the data card (``card``) describes it."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from toolforge.examples import CHAIN, BadLine, Example

DATASET_SPLITS = ("train", "val", "test", "hard_test")
VAL_SHARE = TEST_SHARE = 0.10
# hard_test: for each kind, this share of the examples of that kind, at most HARD_TEST_CAP of them, in this
# order (an example already taken for an earlier kind is not drawn again). The kinds after chain3 and before
# chain are what routers miss on requests written outside the project (templates.generator.chain_tags):
# a page to read with another request, wikipedia beside web_search, a definition beside a translation,
# a later call named first ("before you do A, do B"), and small talk (no tool).
HARD_TEST_KINDS = ("chain3", "url_plus", "same_family", "define_translate", "order", "small_talk",
                   "chain", "hard_negative", "policy", "non_english", "typos")
HARD_TEST_SHARE, HARD_TEST_CAP = 0.25, 70
HUMAN_EVAL = "human_eval.jsonl"
# Further hand-written sets beside human_eval.jsonl: never trained on, so their near-duplicate keys are banned too.
OTHER_HUMAN_SETS = ("human_eval_2.jsonl",)


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
class DatasetBuild:
    """What a build made: the four splits, the hand-written set beside them and the build's report."""
    splits: dict[str, list[Example]]
    human_eval: list[Example]
    report: BuildReport

    @property
    def all_examples(self) -> list[Example]:
        return [e for name in DATASET_SPLITS for e in self.splits[name]]


def hard_kinds(example: Example) -> set[str]:
    kinds = set(example.meta.get("tags", ()))
    if example.category == CHAIN:
        kinds.add("chain")
    return kinds
