"""sweep_claims: which process runs which cell of a sweep now (one claim per cell).

Two ``fastpose sweep`` processes of one sweep file (or two cluster jobs of one cell) must not train a cell
twice. A claim is a row keyed by (sweep_id, cell): inserting it is the one atomic step that only one process
wins, on SQLite and PostgreSQL alike. The row names its holder the way ``runs`` names a run's process (pid,
host, process start, machine id, PID namespace, heartbeat), so a claim whose holder is gone is taken over.
A new table: no existing row changes, and SQLite copies no table.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweep_claims",
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("cell", sa.String(1000), nullable=False),
        sa.Column("token", sa.String(36), nullable=False),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("job", sa.String(255), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(255), nullable=True),
        sa.Column("proc_start", sa.BigInteger(), nullable=True),
        sa.Column("machine_id", sa.String(64), nullable=True),
        sa.Column("pid_namespace", sa.BigInteger(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["sweep_id"], ["sweeps.id"], name="fk_sweep_claims_sweep_id_sweeps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("sweep_id", "cell", name="pk_sweep_claims"),
    )


def downgrade() -> None:
    op.drop_table("sweep_claims")
