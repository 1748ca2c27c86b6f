"""What the teacher backends share: the config, a reply, the errors that steer the slot pool, and
the choice of backend (Gemini when keys are present, else an OpenAI-compatible endpoint)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from toolforge.config import ConfigError, comma_list
from toolforge.registry import Registry
from toolforge.data.teacher.keys import Key, find_keys

GEMINI_MODELS = ["gemini-2.5-flash", "gemini-2.5-flash-lite"]
OPENAI_BASE_URL_ENV = "TOOLFORGE_TEACHER_OPENAI_BASE_URL"
OPENAI_MODEL_ENV = "TOOLFORGE_TEACHER_OPENAI_MODEL"
OPENAI_KEY_PREFIX = "TOOLFORGE_TEACHER_OPENAI_API_KEY"


@dataclass
class TeacherConfig:
    backend: str = "auto"             # gemini | openai | auto (gemini when keys are found, else openai)
    models: list[str] = field(default_factory=list)  # empty: gemini's defaults / $TOOLFORGE_TEACHER_OPENAI_MODEL
    base_url: str | None = None       # openai: the server's /v1 URL; gemini: overrides $GOOGLE_GEMINI_BASE_URL
    # gemini: the SDK 3.x defaults to 'v1', which has rejected `tools` and `systemInstruction`
    # ("Unknown name ... Cannot find field"); v1beta has always taken them. None = the SDK's default.
    api_version: str | None = "v1beta"
    timeout_s: float = 60.0           # per request
    # Free-tier Gemini allows 10-15 requests a minute per key and model: one every 6 s stays under.
    min_gap_s: float = 6.0
    base_backoff_s: float = 2.0       # first backoff after a transient error; doubles per failure
    max_backoff_s: float = 120.0
    max_attempts: int = 8             # per job, over transient errors, before it counts as failed
    max_rejects: int = 2              # times a query is asked while its answers are rejected
    workers: int = 0                  # concurrent requests; 0 = one per slot, at most 8
    temperature: float = 0.0          # labelling; synthesis uses its own

    def validate(self) -> None:
        if self.backend not in ("auto", "gemini", "openai"):
            raise ConfigError(f"backend: expected gemini, openai or auto, got {self.backend!r}")
        for name in ("timeout_s", "min_gap_s", "base_backoff_s", "max_backoff_s"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: must be >= 0")
        if self.max_attempts < 1 or self.max_rejects < 1:
            raise ConfigError("max_attempts and max_rejects must be >= 1")
        if self.workers < 0:
            raise ConfigError(f"workers: must be 0 (one per slot) or more, got {self.workers}")


@dataclass
class Reply:
    """A teacher's answer: raw function calls (``arguments`` may be a JSON string from OpenAI-style
    servers) and any text. No calls means no tool."""
    calls: list[dict[str, Any]]
    text: str = ""


class SlotError(Exception):
    """A request failed in a way that says something about the slot.

    kind: 'transient' (per-minute 429, 5xx, timeout, unreadable body: back off, retry the job),
    'daily' (daily quota: the slot is dead until the quota resets), 'dead' (bad key, unknown
    model: dead for this run), 'unreachable' (connection refused, DNS failure: no answer can come
    from waiting, so the slot is dead for this run; when every slot is, the run stops at once) or
    'refused' (a 400 about this request: the job fails, the slot is fine; --resume asks again).
    ``retry_after`` is the server's own delay in seconds, if given.
    """

    def __init__(self, kind: str, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.kind, self.reason, self.retry_after = kind, reason, retry_after


def unreachable(url: str, error: BaseException) -> SlotError:
    """The SlotError for a request that could not connect to ``url`` at all."""
    return SlotError("unreachable", f"cannot connect to {url} ({error or type(error).__name__})")


class Backend(Protocol):
    name: str

    def label(self, key: Key | None, model: str, system: str, query: str) -> Reply: ...

    def generate(self, key: Key | None, model: str, prompt: str, temperature: float) -> str: ...


def resolve_backend(cfg: TeacherConfig, env: Mapping[str, str] | None = None) -> tuple[str, list[Key | None], list[str]]:
    """(backend name, keys, models) for ``cfg``; raises ConfigError saying what is missing."""
    env = os.environ if env is None else env
    backend = cfg.backend
    gemini_keys = find_keys("GEMINI_API_KEY", env) if backend in ("auto", "gemini") else []
    if backend == "auto":
        if gemini_keys:
            backend = "gemini"
        elif cfg.base_url or env.get(OPENAI_BASE_URL_ENV):
            backend = "openai"
        else:
            raise ConfigError(why_no_teacher())
    if backend == "gemini":
        if not gemini_keys:
            raise ConfigError("no Gemini key: set GEMINI_API_KEY, GEMINI_API_KEYS (comma-separated) "
                              "or GEMINI_API_KEY_1..N (Kaggle: add them as Secrets)")
        return backend, list(gemini_keys), list(cfg.models or GEMINI_MODELS)
    if not (cfg.base_url or env.get(OPENAI_BASE_URL_ENV)):
        raise ConfigError(f"the openai backend needs --base-url or ${OPENAI_BASE_URL_ENV}")
    models = list(cfg.models) or comma_list(env.get(OPENAI_MODEL_ENV))
    if not models:
        raise ConfigError(f"the openai backend needs --models or ${OPENAI_MODEL_ENV}")
    keys: list[Key | None] = list(find_keys(OPENAI_KEY_PREFIX, env, kaggle=False)) or [None]
    return backend, keys, models


def why_no_teacher() -> str:
    return (f"no teacher configured: no GEMINI_API_KEY / GEMINI_API_KEYS / GEMINI_API_KEY_1..N and no "
            f"${OPENAI_BASE_URL_ENV} for an OpenAI-compatible server")


def make_backend(name: str, cfg: TeacherConfig, registry: Registry,
                 env: Mapping[str, str] | None = None) -> Backend:
    env = os.environ if env is None else env
    if name == "gemini":
        from toolforge.data.teacher.gemini import GeminiBackend
        return GeminiBackend(cfg, registry)
    from toolforge.data.teacher.openai_compat import OpenAICompatBackend
    return OpenAICompatBackend(cfg, registry, cfg.base_url or env[OPENAI_BASE_URL_ENV])
