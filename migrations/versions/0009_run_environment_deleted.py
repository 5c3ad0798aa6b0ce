"""runs.environment and runs.deleted_at: what changes a run's numbers besides its config and code, and a
run deleted from the listings with its files still on disk.

``environment`` (JSON, null for older runs): threads (torch intra- and inter-op, ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS``), the device and its name, the precision actually used, the ``torch.backends`` flags that
matter, and the versions of torch, Lightning, numpy, CUDA and cuDNN. ``deleted_at`` (null: not deleted):
``fastpose journal rm`` sets it, ``journal restore`` clears it, ``journal gc`` removes what it left. Two
columns added in place: SQLite adds a column without copying the table.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("environment", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_runs_deleted_at", "runs", ["deleted_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_deleted_at", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("deleted_at")
        batch.drop_column("environment")
