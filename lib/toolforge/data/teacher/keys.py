"""API keys for the teacher, from the environment or Kaggle Secrets, never shown.

A key travels as a ``Key``: its ``str``/``repr`` is the mask (``key#2``), so a key that ends up in an
f-string, a log line, a traceback or a dataclass repr prints as its mask. Only the backends read
``Key.secret``, to put it in a request header.
"""
from __future__ import annotations

import os
import re
from typing import Mapping

from toolforge.config import comma_list
from toolforge.paths import on_kaggle


class Key:
    __slots__ = ("secret", "label")

    def __init__(self, secret: str, label: str):
        self.secret, self.label = secret, label

    def __repr__(self) -> str:
        return self.label

    __str__ = __repr__

    def scrub(self, text: str) -> str:
        """``text`` with this key replaced by its mask (for a server message that echoes it)."""
        return text.replace(self.secret, self.label)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and other.secret == self.secret

    def __hash__(self) -> int:
        return hash(self.secret)


def _numbered(env: Mapping[str, str], prefix: str) -> list[str]:
    pattern = re.compile(rf"^{prefix}_(\d+)$")
    found = sorted((int(m.group(1)), v) for k, v in env.items() if (m := pattern.match(k)))
    return [v for _, v in found]


def key_values(env: Mapping[str, str], prefix: str) -> list[str]:
    """``PREFIX``, ``PREFIXS`` (comma-separated) and ``PREFIX_1..N``, in that order."""
    return comma_list(env.get(prefix)) + comma_list(env.get(prefix + "S")) + _numbered(env, prefix)


def _kaggle_values(prefix: str) -> list[str]:
    """The same names from Kaggle Secrets (only on Kaggle; a missing secret is simply absent)."""
    from toolforge.data.publish import kaggle_secret

    names = [prefix, prefix + "S"] + [f"{prefix}_{i}" for i in range(1, 11)]
    return [value for name in names for value in comma_list(kaggle_secret(name))]


def find_keys(prefix: str = "GEMINI_API_KEY", env: Mapping[str, str] | None = None,
              kaggle: bool | None = None) -> list[Key]:
    """Distinct keys, masked as key#1, key#2, ... in the order found."""
    env = os.environ if env is None else env
    values = key_values(env, prefix)
    if not values and (on_kaggle() if kaggle is None else kaggle):
        values = _kaggle_values(prefix)
    unique = list(dict.fromkeys(values))
    return [Key(v, f"key#{i}") for i, v in enumerate(unique, 1)]
