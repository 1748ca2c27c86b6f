"""The calculator's frames: arithmetic shapes, percentages, tips, discounts, bills, roots, powers, averages."""
from __future__ import annotations

from toolforge.data.templates.pools import money, number, pct_fraction, pick, with_thousands
from toolforge.data.templates.slots import FRAMES, Frame, frame

# -- calculator -------------------------------------------------------------------------------------------

_OPS = {"*": ["times", "multiplied by", "x", "*", "×"], "/": ["divided by", "/", "over", "÷"],
        "+": ["plus", "+"], "-": ["minus", "-", "take away"]}


@frame
def arithmetic(rng, p):
    op = pick(rng, _OPS)
    a = with_thousands(rng, number(rng, 2, 9999, decimals=2))
    b = number(rng, 2, 999, decimals=1)
    sym = pick(rng, [s for s in _OPS[op] if len(s) == 1] or [op])
    words = [w for w in _OPS[op] if len(w) > 1] or [op]
    plain_a = a.replace(",", "")
    return {"a": a, "b": b, "op_sym": sym, "op_word": pick(rng, words), "expr": f"{plain_a} {op} {b}"}


@frame
def compound_expression(rng, p):
    """A written expression with parentheses or several operators; '^' is read as '**'."""
    n = [number(rng, 2, 99) for _ in range(3)]
    ops = [pick(rng, ["+", "-", "*", "/"]) for _ in range(2)]
    if rng.random() < 0.5:
        expr = f"({n[0]} {ops[0]} {n[1]}) {ops[1]} {n[2]}"
    elif rng.random() < 0.5:
        expr = f"{n[0]} {ops[0]} {n[1]} {ops[1]} {n[2]}"
    else:
        expr = f"{n[0]} {ops[0]} {n[1]} ** {rng.randint(2, 4)}"
    written = expr.replace("**", "^") if rng.random() < 0.6 else expr
    if rng.random() < 0.4:
        written = written.replace(" ", "")
    return {"written": written, "expr": expr}


@frame
def percent_of(rng, p):
    pct = number(rng, 1, 95, decimals=1) if rng.random() < 0.3 else str(rng.choice([5, 10, 12, 15, 18, 20, 25, 30, 40, 50, 60, 75]))
    base = with_thousands(rng, number(rng, 10, 5000, decimals=2))
    return {"pct": pct, "base": base, "expr": f"{pct_fraction(pct)} * {base.replace(',', '')}"}


@frame
def tip(rng, p):
    pct = str(rng.choice([10, 12, 15, 18, 20, 22, 25]))
    bill = money(rng, 12, 480)
    return {"pct": pct, "bill": bill, "tip_expr": f"{pct_fraction(pct)} * {bill}",
            "total_expr": f"{bill} + {pct_fraction(pct)} * {bill}"}


@frame
def discount(rng, p):
    pct = str(rng.choice([10, 15, 20, 25, 30, 35, 40, 50, 60, 70]))
    price = money(rng, 8, 1500)
    return {"pct": pct, "price": price, "expr": f"{price} - {pct_fraction(pct)} * {price}"}


def _money_and_count(money_key: str, money_range: tuple[int, int], count_key: str,
                     count_range: tuple[int, int], expression: str) -> Frame:
    """Word problems on an amount of money and a count ({item} comes from the shared pools)."""
    def draw(rng, p):
        amount, count = money(rng, *money_range), str(rng.randint(*count_range))
        return {money_key: amount, count_key: count, "expr": expression.format(money=amount, count=count)}
    return draw


FRAMES["split_bill"] = _money_and_count("total", (20, 900), "people", (2, 12), "{money} / {count}")
FRAMES["unit_price"] = _money_and_count("price", (1, 120), "count", (2, 24), "{count} * {money}")
FRAMES["savings"] = _money_and_count("amount", (20, 2000), "months", (2, 60), "{money} * {count}")


@frame
def change_due(rng, p):
    paid = str(rng.choice([10, 20, 50, 100, 200]))
    cost = f"{rng.randint(1, int(paid) - 1)}.{rng.randint(0, 99):02d}"
    return {"paid": paid, "cost": cost, "expr": f"{paid} - {cost}"}


@frame
def square_root(rng, p):
    n = str(rng.choice([rng.randint(2, 40) ** 2, rng.randint(2, 9999)]))
    return {"n": n, "expr": f"sqrt({n})"}


@frame
def power(rng, p):
    base = str(rng.randint(2, 99))
    exp = str(rng.randint(2, 12))
    return {"base": base, "exp": exp, "expr": f"{base} ** {exp}", "sq_expr": f"{base} ** 2",
            "cube_expr": f"{base} ** 3"}


@frame
def ratio_percent(rng, p):
    whole = rng.randint(20, 2000)
    part = str(rng.randint(1, whole))
    return {"part": part, "whole": str(whole), "expr": f"{part} / {whole} * 100"}


@frame
def average(rng, p):
    nums = [number(rng, 1, 300) for _ in range(rng.randint(3, 5))]
    listed = ", ".join(nums[:-1]) + pick(rng, [" and ", ", "]) + nums[-1]
    return {"numbers": listed, "expr": f"({' + '.join(nums)}) / {len(nums)}"}
