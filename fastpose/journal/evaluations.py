"""Evaluations in the journal (revision 0006): ``fastpose eval`` records one per checkpoint and split.

Torch-free, like the rest of ``fastpose.journal``. ``record_evaluation`` writes through a ``JournalStore``;
``list_evaluations`` reads through any ``JournalReader`` (the stdlib-sqlite3 reader of ``journal show`` or the
SQLAlchemy store), with the same SQL.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from fastpose.journal.records import to_utc


@dataclass(frozen=True)
class EvaluationRecord:
    id: int
    run_id: int
    created_at: datetime
    checkpoint: str
    split: str
    dataset: str
    data_root: str | None
    num_images: int
    metrics: dict[str, float]  # NaN where the journal holds null
    plot_path: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "run_id": self.run_id, "created_at": self.created_at.isoformat(),
                "checkpoint": self.checkpoint, "split": self.split, "dataset": self.dataset,
                "data_root": self.data_root, "num_images": self.num_images,
                "metrics": {k: (None if v != v else v) for k, v in self.metrics.items()}, "plot_path": self.plot_path}


def _storable(metrics: dict[str, float]) -> dict[str, float | None]:
    return {str(k): (None if v is None or not math.isfinite(float(v)) else float(v)) for k, v in metrics.items()}


def record_evaluation(store: Any, run_id: int, *, checkpoint: str, split: str, dataset: str,
                      data_root: str | None, num_images: int, metrics: dict[str, float],
                      plot_path: str | None = None) -> EvaluationRecord:
    """Insert one evaluation of run ``run_id`` (a ``JournalStore``); returns it as a record."""
    import sqlalchemy as sa

    from fastpose.journal.models import Evaluation

    table = Evaluation.__table__
    now = datetime.now(timezone.utc)
    values = dict(run_id=run_id, created_at=now, checkpoint=checkpoint, split=split, dataset=dataset,
                  data_root=data_root, num_images=num_images, metrics=_storable(metrics), plot_path=plot_path)

    def work(conn: Any) -> int:
        store._require(conn, run_id)
        return int(conn.execute(sa.insert(table).values(**values)).inserted_primary_key[0])

    new_id = store._write(work)
    return EvaluationRecord(id=new_id, **{**values, "metrics": {k: (math.nan if v is None else v)
                                                                for k, v in values["metrics"].items()}})


def list_evaluations(reader: Any, run_id: int) -> list[EvaluationRecord]:
    """The evaluations of run ``run_id``, oldest first."""
    rows = reader._fetch(
        "SELECT id, run_id, created_at, checkpoint, split, dataset, data_root, num_images, metrics, plot_path "
        "FROM evaluations WHERE run_id = :r ORDER BY id", {"r": run_id})
    out = []
    for row in rows:
        metrics = row["metrics"]
        if isinstance(metrics, str):
            metrics = json.loads(metrics)
        out.append(EvaluationRecord(
            id=int(row["id"]), run_id=int(row["run_id"]), created_at=to_utc(row["created_at"]),
            checkpoint=row["checkpoint"], split=row["split"], dataset=row["dataset"], data_root=row["data_root"],
            num_images=int(row["num_images"]),
            metrics={k: (math.nan if v is None else float(v)) for k, v in (metrics or {}).items()},
            plot_path=row["plot_path"]))
    return out


