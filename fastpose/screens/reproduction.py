"""A run against its reproduction (``fastpose reproduce --check``): every number the original journaled, the
same number of the new run, and which differ. Built from the journal only.

A number is a value of the metric history, keyed by (metric, epoch, step, k), ``k`` counting repeats of one
key within a run. A resumed run counts with the runs it continued (a later run's value wins for a key):
reproduce trains the whole chain from scratch. Identical means equal (NaN equals NaN): no tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_CHAIN = 50


@dataclass
class Difference:
    name: str
    epoch: int | None
    step: int | None
    original: float | None  # None: the original has no such number
    reproduced: float | None  # None: the reproduction has none

    @property
    def delta(self) -> float | None:
        if self.original is None or self.reproduced is None:
            return None
        return self.reproduced - self.original


@dataclass
class CheckResult:
    total: int  # the numbers the original journaled
    identical: int
    differences: list[Difference] = field(default_factory=list)


def joined_history(reader: Any, run: Any) -> dict[tuple, float]:
    """``{(name, epoch, step, k): value}`` of ``run`` with the runs it was resumed from."""
    chain, parent = [run.id], run.parent_id
    while parent is not None and parent not in chain and len(chain) < MAX_CHAIN:
        chain.insert(0, parent)
        parent = reader.get_run(parent).parent_id
    out: dict[tuple, float] = {}
    for run_id in chain:
        seen: dict[tuple, int] = {}
        for p in reader.metric_history(run_id):
            key = (p.name, p.epoch, p.step)
            seen[key] = seen.get(key, 0) + 1
            out[key + (seen[key],)] = p.value
    return out


def _order(key: tuple) -> tuple:
    name, epoch, step, k = key
    return (name, -1 if epoch is None else epoch, -1 if step is None else step, k)


def check(reader: Any, original: Any, new: Any) -> CheckResult:
    """Every journaled number of ``original`` against ``new``'s (runs of one journal)."""
    a, b = joined_history(reader, original), joined_history(reader, reader.get_run(new.id))
    result = CheckResult(total=len(a), identical=0)
    for key in sorted(set(a) | set(b), key=_order):
        x, y = a.get(key), b.get(key)
        if x is not None and y is not None and (x == y or (x != x and y != y)):
            result.identical += 1
            continue
        result.differences.append(Difference(key[0], key[1], key[2], x, y))
    return result
