"""An arm: one training recipe (model, LoRA, optimisation, data, prompt), one YAML file in configs/arms/.

Its name is its output folder: ``runs/<name>/``. An arm names the arm it changes and only what it
changes (as alignment-handbook's recipes do)::

    base: gemma270m-full      # configs/arms/gemma270m-full.yaml, beside this file
    name: gemma270m-r8
    lora_r: 8
    lora_alpha: 16

``load_arm`` resolves the chain (the base's base, ..., then ArmConfig's defaults under all). The notebook
02_train_qlora's ``parameters`` cell holds ArmConfig's fields with its defaults; its papermill parameters
are the resolved arm (``arm_parameters``), which is also what ``runs/<arm>/arm.yaml`` holds.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from toolforge.config import ConfigError, from_dict, read_yaml, to_dict
from toolforge.model import EMBEDDED_MODEL
from toolforge.paths import DEFAULT_ARM, data_dir, repo_path, runs_dir
from toolforge.registry import DEFAULT_REGISTRY_PATH
from toolforge.prompt import PROMPT_STYLES

MIXED_PRECISIONS = ("auto", "bf16", "fp16", "no")
LOSS_VOCABULARIES = ("full", "data")


@dataclass
class ArmConfig:
    name: str = DEFAULT_ARM                 # arm name = output folder runs/<name>/ and W&B run name
    model: str = EMBEDDED_MODEL              # HF id, local folder, or embedded:gemma-3-270m (offline default)
    registry: str = ""                       # the tools: a registry YAML (python -m toolforge tools import); "" = the
                                             # built-in nine. The run keeps a copy; its router routes over these only
    data_dir: str = ""                       # "" = auto: $TOOLFORGE_DATA, Kaggle input, or the repo's data/
    output_root: str = ""                    # "" = auto: $TOOLFORGE_RUNS, /kaggle/working/runs, or runs/
    max_train_examples: int = 0              # 0 = the whole train split; else a seeded subset (data-size arms)
    max_eval_examples: int = 0               # 0 = the whole val split for validation loss
    prompt_style: str = "tools"              # "tools": tool list in the system prompt; "bare": none
    quantization: str = "auto"               # "auto": 4-bit NF4 on CUDA, none on CPU; or "4bit" / "none"
    mixed_precision: str = "auto"            # "auto": bf16 on Ampere+, fp16 on older GPUs (T4), none on CPU;
                                             # or "bf16" / "fp16" / "no" (fp16 on an H100 rehearses a T4 run)
    lora_r: int = 64
    lora_alpha: int = 128
    lora_dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: [
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    loss_vocabulary: str = "full"            # "full": the softmax over every token; "data": over the tokens of the
                                             # train and val examples only (Gemma's 262k -> ~10k: a cheaper LM
                                             # head), and the router then writes only those (vocabulary.json)
    lora_layers: int = 0                     # 0 = LoRA on every layer; N = on the top N only, and the frozen
                                             # layers below run once per example (not per epoch), same loss
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    epochs: float = 3.0
    batch_size: int = 16                     # per device
    length_group: int = 16                   # batches are cut from groups of this many batches' examples sorted by
                                             # length, then shuffled (train.schedule): little padding, no run of
                                             # long or short batches; 1 = random batches
    gradient_accumulation_steps: int = 1     # effective batch = batch_size * this * gpus
    gpus: int = 1                            # processes, one per GPU (DDP through accelerate launch; the train
                                             # command starts them itself); with --device cpu, CPU processes
    max_steps: int = -1                      # > 0 caps training steps (the CPU demo arm)
    max_seq_length: int = 512                # longer examples are left out (and counted), never cut mid-answer
    share_prompt_prefix: bool = True         # run the tokens every example of a batch starts with (the system
                                             # prompt) once per batch, not once per example; same loss
    gradient_checkpointing: bool = False     # trades speed for memory: on for 7B QLoRA on a T4, off for small models
    eval_steps: int = 50                     # validation loss every N steps; best checkpoint kept
    early_stopping_epochs: float = 1.0       # stop after this many epochs without a new best validation loss,
                                             # never inside the first epoch; 0 = off (the best checkpoint is kept)
    logging_steps: int = 10                  # training loss logged every N steps
    seed: int = 42
    wandb_project: str = "toolforge"         # used only when WANDB_API_KEY or WANDB_MODE is set

    def validate(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            raise ConfigError(f"name: {self.name!r} must be letters, digits, '.', '_' or '-' (it names a folder)")
        if self.prompt_style not in PROMPT_STYLES:
            raise ConfigError(f"prompt_style: {self.prompt_style!r} is not one of {list(PROMPT_STYLES)}")
        if self.loss_vocabulary not in LOSS_VOCABULARIES:
            raise ConfigError(f"loss_vocabulary: {self.loss_vocabulary!r} is not one of {list(LOSS_VOCABULARIES)}")
        if self.quantization not in ("auto", "4bit", "none"):
            raise ConfigError(f"quantization: {self.quantization!r} is not one of ['auto', '4bit', 'none']")
        if self.mixed_precision not in MIXED_PRECISIONS:
            raise ConfigError(f"mixed_precision: {self.mixed_precision!r} is not one of {list(MIXED_PRECISIONS)}")
        for key in ("lora_r", "lora_alpha", "batch_size", "gradient_accumulation_steps", "max_seq_length",
                    "eval_steps", "logging_steps", "epochs", "gpus", "length_group"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key}: must be positive, got {getattr(self, key)}")
        for key in ("max_train_examples", "max_eval_examples", "early_stopping_epochs", "lora_layers"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key}: must be 0 or more, got {getattr(self, key)}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        if not self.target_modules:
            raise ConfigError("target_modules: needs at least one module name, e.g. q_proj")
        if not 0 <= self.lora_dropout < 1:
            raise ConfigError(f"lora_dropout: must be in [0, 1), got {self.lora_dropout}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate: must be positive, got {self.learning_rate}")

    @property
    def run_dir(self) -> Path:
        return runs_dir(self.output_root or None) / self.name

    @property
    def data_path(self) -> Path:
        return data_dir(repo_path(self.data_dir) if self.data_dir else None)

    @property
    def registry_path(self) -> Path:
        """The registry file the arm trains on (the built-in tools.yaml when none is named)."""
        return repo_path(self.registry) if self.registry else DEFAULT_REGISTRY_PATH


BASE_KEY = "base"


def _read_arm_file(path: Path) -> dict[str, Any]:
    """One arm file's own keys, checked (unknown keys, types) and named by that file."""
    values = read_yaml(path) or {}  # a syntax error names the file, line and column
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level")
    from_dict(ArmConfig, {k: v for k, v in values.items() if k != BASE_KEY}, str(path))
    base = values.get(BASE_KEY)
    if base is not None and not (isinstance(base, str) and base):
        raise ConfigError(f"{path}: base: expected the name of an arm beside this file, got {base!r}")
    return values


def arm_values(path: str | Path) -> dict[str, Any]:
    """The fields an arm file sets, over those of its base, its base's base, ...: the resolved arm's
    values (without ArmConfig's defaults). A base is ``<name>.yaml`` in the same folder."""
    path = Path(path)
    chain: list[Path] = []
    values: dict[str, Any] = {}
    while True:
        if not path.is_file():
            if not chain:
                raise ConfigError(f"config file not found: {path}")
            raise ConfigError(f"{chain[-1]}: base: no arm {path.stem!r} ({path} does not exist)")
        if path.resolve() in [p.resolve() for p in chain]:
            cycle = " -> ".join(p.stem for p in [*chain, path])
            raise ConfigError(f"{chain[0]}: base: the arms inherit in a cycle: {cycle}")
        chain.append(path)
        own = _read_arm_file(path)
        values = {**own, **values}  # what the child sets wins over its base
        if own.get(BASE_KEY) is None:
            break
        path = path.parent / f"{own[BASE_KEY]}.yaml"
    values.pop(BASE_KEY, None)
    return values


def load_arm(path: str | Path | None = None, **overrides) -> ArmConfig:
    """ArmConfig's defaults, under the arm file's chain of bases (``arm_values``), under ``overrides``."""
    values = arm_values(path) if path is not None else {}
    return from_dict(ArmConfig, {**values, **overrides}, str(path) if path is not None else "config")


def arm_parameters(arm_path: str | Path) -> tuple[ArmConfig, dict[str, Any]]:
    """Resolve and validate an arm (unknown keys and bad values fail here, before any notebook runs) and
    return it with 02_train_qlora's papermill parameters: the resolved arm, every field."""
    arm = load_arm(arm_path)
    return arm, to_dict(arm)

