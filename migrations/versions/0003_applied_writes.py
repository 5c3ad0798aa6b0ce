"""applied_writes: the ids of journal writes already applied, so a replayed spool applies each exactly once.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "applied_writes",
        sa.Column("write_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name="fk_applied_writes_run_id_runs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("write_id", name="pk_applied_writes"),
    )
    op.create_index("ix_applied_writes_run_id", "applied_writes", ["run_id"])


def downgrade() -> None:
    op.drop_table("applied_writes")
