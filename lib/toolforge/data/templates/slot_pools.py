"""The pools a template file declares, and how a slot draws its value from them: data for a new
tool's templates without writing a frame (``slots.py``).

A file's ``pools:`` maps a name to one of:

- a **list of values**: ``room: [kitchen, living room]``; ``{room}`` is one of them (a number stays a
  number in a call whose argument is exactly the slot);
- a **list of records** (mappings with the same keys): ``duration: [{text: five minutes, seconds: 300}]``;
  ``{duration.text}`` in a phrasing and ``{duration.seconds}`` in a call come from ONE record drawn for
  the example, so linked values stay together (a field may hold a list, for an array argument);
- an **integer range**: ``brightness: {range: [1, 100]}`` (optionally ``step: 5``), drawn uniformly; an
  int in a call whose argument is exactly the slot.

(The built-in ``pools.yaml`` also has tables of canonical value -> the ways people write it; a slot
draws one of their keys.)

A second, different value of a pool: ``{room2}`` (``{room3}``, ``{duration2.text}``), when no pool has
that name, draws from ``room`` a value this example has not drawn yet ("the kitchen and the hall").

A file's ``verbatim:`` lists the pools whose words a label copies as the user typed them (a message's
text, a contact's name): surface noise never re-cases them.

In a registry's own template folder a file may use the pools of the folder's other files
(``share_pools``): chains.yaml and no_tool.yaml draw rooms from the pool set_lights.yaml declares.
"""
from __future__ import annotations

import random
import re
from typing import Any, Callable

_NUMBERED = re.compile(r"(\w*?)([2-9])")


def pool_kind(pool: Any) -> str:
    """'values', 'records', 'range' or 'table' (a built-in mapping of canonical value -> surface forms)."""
    if isinstance(pool, dict):
        return "range" if "range" in pool else "table"
    if isinstance(pool, list) and pool and all(isinstance(item, dict) for item in pool):
        return "records"
    return "values"


def check_pools(pools: Any, where: str) -> dict[str, Any]:
    """The file's pools, or ValueError naming the pool and what is wrong with it."""
    if not isinstance(pools, dict):
        raise ValueError(f"{where}: pools must map a name to a list, a list of records or {{range: [lo, hi]}}")
    for name, pool in pools.items():
        at = f"{where}: pool {name!r}"
        kind = pool_kind(pool)
        if kind == "range":
            lo_hi, step = pool.get("range"), pool.get("step", 1)
            if set(pool) - {"range", "step"}:
                raise ValueError(f"{at}: a range takes only 'range' and 'step', got {sorted(pool)}")
            if (not isinstance(lo_hi, list) or len(lo_hi) != 2 or not all(_is_int(v) for v in lo_hi)
                    or lo_hi[0] > lo_hi[1] or not _is_int(step) or step < 1):
                raise ValueError(f"{at}: write a range as {{range: [lo, hi]}} with whole numbers lo <= hi "
                                 f"(and a whole step of 1 or more), got {pool!r}")
        elif kind == "records":
            fields = set(pool[0])
            for i, record in enumerate(pool):
                if set(record) != fields:
                    raise ValueError(f"{at}: record {i} has fields {sorted(record)}, the first has {sorted(fields)}")
        elif kind == "values" and (not isinstance(pool, list) or not pool
                                   or any(isinstance(v, (dict, list)) or v is None for v in pool)):
            raise ValueError(f"{at}: a pool is a non-empty list of values, a list of records (all mappings) "
                             f"or {{range: [lo, hi]}}, got {pool!r}")
    return pools


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def base_pool(name: str, has_pool: Callable[[str], bool]) -> str:
    """The pool a slot's name (the part before any '.') draws from: itself, or ``room`` for ``room2``."""
    numbered = _NUMBERED.fullmatch(name)
    if not has_pool(name) and numbered and has_pool(numbered.group(1)):
        return numbered.group(1)
    return name


def draw_slots(rng: random.Random, keys: list[str], find_pool: Callable[[str], Any], values: dict[str, Any],
               family: str = "") -> None:
    """Fill ``values[key]`` for each slot key not already there (frames' values win), in key order.

    ``find_pool(name)`` returns the pool named ``name`` or raises KeyError saying where none was found.
    One record is drawn per slot name (``{duration.text}`` and ``{duration.seconds}`` share it), and the
    slots of one pool (``{room}``, ``{room2}``) draw distinct values. Errors name ``family``.
    """
    at = f"family {family}: " if family else ""
    def has_pool(name: str) -> bool:
        try:
            find_pool(name)
            return True
        except KeyError:
            return False

    drawn: dict[str, tuple[Any, str]] = {}   # slot name -> its value (a record for record pools), the pool's kind
    used: dict[str, list[Any]] = {}     # pool name -> what this example drew from it
    for key in keys:
        if key in values:
            continue
        name, _, field = key.partition(".")
        if name not in drawn:
            pool_name = base_pool(name, has_pool)
            pool = find_pool(pool_name)
            drawn[name] = (_draw(rng, pool, used.setdefault(pool_name, []), f"{at}slot {{{key}}} (pool {pool_name!r})"),
                           pool_kind(pool))
        value, kind = drawn[name]
        if kind == "records" and not field:
            raise KeyError(f"{at}slot {{{key}}}: pool {name!r} holds records; name a field: "
                           + ", ".join(f"{{{name}.{f}}}" for f in value))
        if kind != "records" and field:
            raise KeyError(f"{at}slot {{{key}}}: pool {name!r} holds plain values, not records with fields")
        if field and field not in value:
            raise KeyError(f"{at}slot {{{key}}}: the records of pool {name!r} have no field {field!r} "
                           f"(fields: {', '.join(value)})")
        values[key] = value[field] if field else value


def _draw(rng: random.Random, pool: Any, used: list[Any], what: str) -> Any:
    """One value of ``pool`` not in ``used`` (the first draw of a pool is the one plain ``pick`` makes)."""
    kind = pool_kind(pool)
    if kind == "range":
        (lo, hi), step = pool["range"], pool.get("step", 1)
        options = (hi - lo) // step + 1
        if len(used) >= options:
            raise KeyError(f"{what}: the range has only {options} values")
        while True:
            value = lo + step * rng.randrange(options)
            if value not in used:
                break
    else:
        items = sorted(pool) if kind == "table" else pool
        if not used:
            value = rng.choice(items)
        else:
            free = [i for i, item in enumerate(items) if item not in used]
            if not free:
                raise KeyError(f"{what}: the pool has only {len(items)} distinct values")
            value = items[rng.choice(free)]
    used.append(value)
    return value


def share_pools(families: list[Any]) -> None:
    """Give each family the pools of the other files of its folder, beside its own (its own win; of the
    others, the first file that declares a name, in load order). Verbatim pools stay verbatim."""
    folder: dict[str, Any] = {}
    verbatim: set[str] = set()
    for family in families:
        for name, pool in family.pools.items():
            if name not in folder:
                folder[name] = pool
                verbatim |= {name} & family.verbatim
    for family in families:
        own = set(family.pools)
        family.pools = {**folder, **family.pools}
        family.verbatim = family.verbatim | (verbatim - own)


def call_strings(value: Any) -> list[str]:
    """The strings of a call argument, inside arrays and nested objects too (where its slots are)."""
    if isinstance(value, str):
        return [value]
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    return [s for item in items for s in call_strings(item)]


def keep_verbatim(segments: list[tuple[str, str | None]], pools: dict[str, Any],
                  verbatim: frozenset[str]) -> list[tuple[str, str | None]]:
    """The segments of slots drawn from ``verbatim`` pools renamed "text", a ``noise.VERBATIM_SLOTS`` name:
    noise never re-cases them."""
    if not verbatim:
        return segments
    return [(text, "text" if slot and base_pool(slot.split(".")[0], pools.__contains__) in verbatim else slot)
            for text, slot in segments]
