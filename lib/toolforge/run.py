"""A run folder, ``runs/<arm>/``: the one module that knows its files.

Training writes a run, routing and evaluation read it, the jobs tabulate it; each asks ``RunDir`` rather
than spelling out a file name::

    runs/<arm>/
      arm.yaml            the resolved arm (train.arm.ArmConfig); written last: its presence says the run is whole
      adapter/            the PEFT adapter and its tokenizer (the best checkpoint)
      metrics.json        loss histories, wall time, tokens/s, peak memory, device
      vocabulary.json     the tokens the router may write (arms with loss_vocabulary: data; route.vocabulary)
      registry.yaml       the tools it was trained on (a copy of the arm's registry): routing always uses these
      router-<quant>.gguf the run exported for llama.cpp (train.export); used while newer than the adapter
      router-<quant>.vocabulary.gguf  the same layers with an output layer of the vocabulary's tokens only,
                          derived from it by the llama.cpp backend on first use (``vocabulary_gguf_path``)
      loss_curves.png     02's plot
      eval/               03's results.json, summary.md, plots, errors and predictions
      notebooks/          the executed notebooks of the jobs that made it
      FAILED.txt          an ablation arm that failed, and why
      .partial/           a run being trained; moved into place all or nothing by ``commit``

A model folder that is not a run (a merged model, the folder of a GGUF file) carries a vocabulary file
the same way, and its registry: ``read_vocabulary``, ``registry_path`` and ``copy_model_files`` take any
model reference.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Sequence

from toolforge.config import ConfigError, read_yaml

VOCABULARY_FILE = "vocabulary.json"
REGISTRY_FILE = "registry.yaml"
# Files a model folder carries beside its weights, which a merge or an export copies along.
MODEL_FILES = (VOCABULARY_FILE, REGISTRY_FILE)
DEFAULT_QUANT = "q8_0"   # the GGUF a CPU router serves from


class RunDir:
    """The files of one run folder (which need not exist yet)."""

    ARM = "arm.yaml"
    ADAPTER = "adapter"
    METRICS = "metrics.json"
    EVAL = "eval"
    NOTEBOOKS = "notebooks"
    LOSS_CURVES = "loss_curves.png"
    FAILED = "FAILED.txt"
    STAGING = ".partial"
    # What a training writes, moved into place by commit in this order: arm.yaml last.
    TRAINED = (ADAPTER, METRICS, VOCABULARY_FILE, REGISTRY_FILE, ARM)

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def name(self) -> str:
        return self.path.name

    # -- the files -----------------------------------------------------------------------------------
    @property
    def arm_file(self) -> Path:
        return self.path / self.ARM

    @property
    def adapter(self) -> Path:
        return self.path / self.ADAPTER

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS

    @property
    def vocabulary_file(self) -> Path:
        return self.path / VOCABULARY_FILE

    @property
    def eval_dir(self) -> Path:
        return self.path / self.EVAL

    @property
    def results_file(self) -> Path:
        return self.eval_dir / "results.json"

    @property
    def notebooks_dir(self) -> Path:
        return self.path / self.NOTEBOOKS

    @property
    def loss_curves(self) -> Path:
        return self.path / self.LOSS_CURVES

    @property
    def failed_file(self) -> Path:
        return self.path / self.FAILED

    @property
    def staging(self) -> Path:
        return self.path / self.STAGING

    def gguf(self, quant: str = DEFAULT_QUANT) -> Path:
        """Where ``export`` writes the run's GGUF by default, and where the model router looks for it."""
        return self.path / f"router-{quant}.gguf"

    # -- reading ---------------------------------------------------------------------------------------
    def is_trained(self) -> bool:
        """A whole run: an adapter and the arm.yaml written after it."""
        return self.arm_file.is_file() and (self.adapter / "adapter_config.json").is_file()

    def arm_values(self) -> dict[str, Any]:
        """arm.yaml's fields as written (``train.arm.load_arm`` checks them against ArmConfig); ConfigError
        naming the file when it is missing or not a mapping."""
        if not self.arm_file.is_file():
            raise ConfigError(f"{self.arm_file}: missing; {self.path} is not a finished run")
        values = read_yaml(self.arm_file)
        if not isinstance(values, dict):
            raise ConfigError(f"{self.arm_file}: expected a mapping of fields at the top level")
        return values

    def base_model(self) -> str:
        """The model the adapter was trained on (arm.yaml's ``model``)."""
        model = self.arm_values().get("model")
        if not isinstance(model, str) or not model:
            raise ConfigError(f"{self.arm_file}: has no 'model' naming the base of the adapter")
        return model

    def prompt_style(self, default: str = "tools") -> str:
        """The prompt style the run was trained with; ``default`` for a folder without arm.yaml."""
        if not self.arm_file.is_file():
            return default
        return str(self.arm_values().get("prompt_style", default))

    def metrics(self) -> dict[str, Any]:
        """metrics.json, or {} before training."""
        return _read_json(self.metrics_file)

    def results(self) -> dict[str, Any]:
        """eval/results.json, or {} before evaluation."""
        return _read_json(self.results_file)

    def fresh_gguf(self, quant: str = DEFAULT_QUANT) -> Path | None:
        """The run's exported GGUF while it is newer than the adapter; an older one belongs to an earlier
        training of the run and is ignored (said once on stderr)."""
        exported = self.gguf(quant)
        if not exported.is_file() or not self.adapter.is_dir():
            return None
        if exported.stat().st_mtime < max((f.stat().st_mtime for f in self.adapter.iterdir()), default=0):
            print(f"router: {exported} is older than the adapter it was exported from; using torch "
                  f"(python -m toolforge export {self.path} to refresh it)", file=sys.stderr)
            return None
        return exported

    # -- writing ---------------------------------------------------------------------------------------
    def commit(self) -> None:
        """Move a finished training from ``staging`` into the run folder, replacing an earlier run there.

        The old arm.yaml goes first and the new one comes last, so that whatever stops this midway the
        folder never holds one arm's settings beside another's adapter: either a whole run or no arm.yaml
        (which every reader refuses). The old run's evaluation goes too: it judged the old adapter. A
        training without a vocabulary (or registry) file removes an earlier run's; a missing adapter or
        metrics stops here.
        """
        staging = self.staging
        self.arm_file.unlink(missing_ok=True)
        shutil.rmtree(self.eval_dir, ignore_errors=True)
        for name in self.TRAINED:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            if name in MODEL_FILES and not (staging / name).exists():
                target.unlink(missing_ok=True)
                continue
            (staging / name).replace(target)
        shutil.rmtree(staging)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


# -- the vocabulary file of any model folder -----------------------------------------------------------

def model_file(model_ref: str | Path, name: str) -> Path | None:
    """A file a model carries (``MODEL_FILES``): in its folder (a run, a merged model), or beside its GGUF."""
    ref = Path(model_ref)
    folder = ref.parent if ref.suffix.lower() == ".gguf" else ref
    path = folder / name
    return path if path.is_file() else None


def vocabulary_path(model_ref: str | Path) -> Path | None:
    """The vocabulary file of a model: in its folder (a run, a merged model), or beside its GGUF file."""
    return model_file(model_ref, VOCABULARY_FILE)


def registry_path(model_ref: str | Path) -> Path | None:
    """The registry a model was trained on (its folder's registry.yaml); None: the built-in nine tools."""
    return model_file(model_ref, REGISTRY_FILE)


def vocabulary_gguf_path(gguf: str | Path) -> Path:
    """Where the llama.cpp backend keeps a GGUF's derivative whose output layer is the vocabulary's tokens
    only (``toolforge.route.backends.restricted_head``): beside it, ``<name>.vocabulary.gguf``."""
    gguf = Path(gguf)
    return gguf.with_name(gguf.stem + ".vocabulary.gguf")


def write_vocabulary(folder: str | Path, token_ids: Sequence[int]) -> Path:
    path = Path(folder) / VOCABULARY_FILE
    path.write_text(json.dumps({"token_ids": sorted(int(t) for t in token_ids)}) + "\n", encoding="utf-8")
    return path


def read_vocabulary(model_ref: str | Path, n_vocab: int | None = None) -> list[int] | None:
    """The token ids a model may write, or None for all of them. ValueError naming the file when it is
    not a vocabulary file, or (given ``n_vocab``) holds an id outside the model's vocabulary."""
    path = vocabulary_path(model_ref)
    if path is None:
        return None
    try:
        ids = json.loads(path.read_text(encoding="utf-8"))["token_ids"]
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{path}: not a vocabulary file ({e})") from None
    if not isinstance(ids, list) or not ids or not all(isinstance(t, int) and not isinstance(t, bool) and t >= 0
                                                       for t in ids):
        raise ValueError(f"{path}: token_ids must be a non-empty list of token ids")
    if n_vocab is not None and max(ids) >= n_vocab:
        raise ValueError(f"{path}: token id {max(ids)} is outside the model's vocabulary of {n_vocab:,} tokens "
                         "(the file belongs to another model)")
    return ids


def copy_model_files(model_ref: str | Path, folder: str | Path) -> list[Path]:
    """Copy a model's vocabulary and registry files into ``folder`` (where a merge or an export writes)."""
    copied = []
    for name in MODEL_FILES:
        source = model_file(model_ref, name)
        if source is None:
            continue
        target = Path(folder) / name
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        copied.append(target)
    return copied
