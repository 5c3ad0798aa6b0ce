"""metric_summaries: final and best value per (run, metric), backfilled from the history.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

When = sa.DateTime(timezone=True)


def upgrade() -> None:
    summaries = op.create_table(
        "metric_summaries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("direction", sa.String(3), nullable=False),
        sa.Column("final", sa.Float(), nullable=True),
        sa.Column("final_epoch", sa.Integer(), nullable=True),
        sa.Column("final_step", sa.Integer(), nullable=True),
        sa.Column("best", sa.Float(), nullable=True),
        sa.Column("best_epoch", sa.Integer(), nullable=True),
        sa.Column("best_step", sa.Integer(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("updated_at", When, nullable=False),
        sa.CheckConstraint("direction IN ('min', 'max')", name="ck_metric_summaries_direction"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_metric_summaries_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_metric_summaries"),
        sa.UniqueConstraint("run_id", "name", name="uq_metric_summaries_run_id_name"),
    )
    _backfill(summaries)


def _backfill(summaries: sa.Table) -> None:
    """One summary per (run, metric) already in the history: final = last logged, best by direction."""
    from fastpose.metrics import direction as direction_of
    from fastpose.metrics import is_better

    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT run_id, name, epoch, step, value FROM metrics ORDER BY run_id, name, id")
    )
    now = datetime.now(timezone.utc)
    batch: list[dict] = []
    current: dict | None = None
    for run_id, name, epoch, step, value in rows:
        if current is None or (current["run_id"], current["name"]) != (run_id, name):
            if current is not None:
                batch.append(current)
            current = {
                "run_id": run_id, "name": name, "direction": direction_of(name), "count": 0,
                "best": value, "best_epoch": epoch, "best_step": step, "updated_at": now,
            }
        elif is_better(name, value, current["best"]):
            current.update(best=value, best_epoch=epoch, best_step=step)
        current.update(final=value, final_epoch=epoch, final_step=step, count=current["count"] + 1)
        if len(batch) >= 5000:
            op.bulk_insert(summaries, batch)
            batch = []
    if current is not None:
        batch.append(current)
    if batch:
        op.bulk_insert(summaries, batch)


def downgrade() -> None:
    op.drop_table("metric_summaries")
