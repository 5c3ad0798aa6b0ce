"""Shared formatting for every screen and face: values, durations, bytes, sparklines, the metric catalogue's
order and direction (re-exported from ``fastpose.metrics``, the one place they are defined), run labels,
statuses. Plain strings out; no rich, so any face (terminal, Markdown, HTML) uses the same words."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Sequence

from fastpose.journal.records import RunRecord
from fastpose.metrics import (  # noqa: F401 - re-exported: the faces' one import for metric order and direction
    DEFAULT_MONITOR, STANDARD_VAL, comparable_across, direction, is_better, metric_group, metric_order, natural_key,
    primary_metric, run_primary,
)


SPARK_CHARS = "▁▂▃▄▅▆▇█"


STATUS_STYLE = {
    "running": "bold cyan",
    "completed": "green",
    "crashed": "bold red",
    "interrupted": "yellow",
    "diverged": "magenta",
    "lost": "dim red",
}


def sparkline(values: Sequence[float], width: int | None = 40) -> str:
    """``▁▂▄█``-style line of ``values`` (NaN/inf as a space), resampled to at most ``width`` cells."""
    vals = [float(v) for v in values]
    if width and len(vals) > width:  # mean of equal-sized buckets keeps the shape
        buckets = [vals[i * len(vals) // width : (i + 1) * len(vals) // width] for i in range(width)]
        vals = [_mean(b) for b in buckets]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        return " " * len(vals)
    lo, hi = min(finite), max(finite)
    span = hi - lo
    out = []
    for v in vals:
        if not math.isfinite(v):
            out.append(" ")
        elif span == 0:
            out.append(SPARK_CHARS[len(SPARK_CHARS) // 2])
        else:
            out.append(SPARK_CHARS[min(len(SPARK_CHARS) - 1, int((v - lo) / span * len(SPARK_CHARS)))])
    return "".join(out)


def _mean(bucket: list[float]) -> float:
    finite = [v for v in bucket if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def fmt_value(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.4g}"
    return f"{value:.3e}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def local(dt: datetime | None) -> datetime | None:
    return None if dt is None else dt.astimezone()


def short_metric(name: str) -> str:
    return name.split("/", 1)[-1]


def last_traceback_line(run: RunRecord) -> str | None:
    """A crashed run's one line: the traceback's last line (the exception, module-qualified), or the journaled
    reason where that is not the exception raised last (a full disk found deeper in the chain of causes)."""
    if run.status != "crashed":
        return None
    lines = [ln for ln in (run.traceback or "").strip().splitlines() if ln.strip()]
    raised = lines[-1].strip() if lines else ""
    if raised and (not run.error_type or raised.split(":", 1)[0].endswith(run.error_type)):
        return raised
    message = (run.error_message or "").strip().splitlines()
    return f"{run.error_type or 'Error'}: {message[0] if message else ''}".strip()


def diff_stat(diff: str | None) -> list[tuple[str, int, int]]:
    """``[(path, added, removed)]`` from a unified diff."""
    stats: dict[str, list[int]] = {}
    current = None
    for line in (diff or "").splitlines():
        m = re.match(r"diff --git a/(.*?) b/(.*)$", line)
        if m:
            current = m.group(2)
            stats[current] = [0, 0]
        elif current is None or line.startswith(("+++", "---")):
            continue
        elif line.startswith("+"):
            stats[current][0] += 1
        elif line.startswith("-"):
            stats[current][1] += 1
    return [(path, a, r) for path, (a, r) in stats.items()]


_LABEL = re.compile(r"^\d\d-\d\d-\d\d/\d\d-\d\d-(?P<rest>.*)$")


def label_parts(run: RunRecord) -> list[str] | None:
    """``[DATASET, BACKBONE, WEIGHTS(, N)]`` of a label ``YY-MM-DD/HH-MM-NAME-DATASET-BACKBONE-WEIGHTS(-N)``;
    None for a label not in that form (the whole label is then shown)."""
    m = _LABEL.match(run.label)
    if not m or not m.group("rest").startswith(run.name + "-"):
        return None
    return m.group("rest")[len(run.name) + 1 :].split("-")


def differing_labels(runs: list[RunRecord]) -> dict[int, tuple[str, str]]:
    """What each run's label adds to its NAME, time and day, as ``(suffix, parts)``: a same-minute suffix
    (``-2``) always, and the label parts that are not the same for every run shown (dataset, backbone,
    weights). A label not in the lab's form is shown whole, as ``parts``."""
    labels = {r.id: label_parts(r) for r in runs}
    parsed = [p for p in labels.values() if p is not None]
    varying = [i for i in range(3) if len({tuple(p[i : i + 1]) for p in parsed}) > 1]
    out = {}
    for run in runs:
        p = labels[run.id]
        if p is None:
            out[run.id] = ("", run.label)
        else:
            suffix = "".join(f"-{v}" for v in p[3:])
            out[run.id] = (suffix, "-".join(p[i] for i in varying if i < len(p)))
    return out


def fmt_bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def arrow(name: str) -> str:
    """``↓`` for a metric where lower is better, else ``↑``."""
    return "↓" if direction(name) == "min" else "↑"


def json_num(value: float | None) -> float | None:
    """A number for JSON: None for a missing or non-finite value (JSON has no NaN)."""
    return value if value is not None and math.isfinite(value) else None
