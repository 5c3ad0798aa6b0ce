"""journal_identity and the machine of each run.

- ``journal_identity``: one row holding the journal's UUID, written when the journal is created (or, for an
  older journal, when it is upgraded to this revision). Spool lines carry it, so a spool is replayed only into
  the journal it was written for.
- ``runs.machine_id`` and ``runs.pid_namespace``: where the run's process lives (``/etc/machine-id`` or the
  boot id, and the inode of ``/proc/self/ns/pid``). The process table decides whether a run is lost only when
  both match the reader's; otherwise the heartbeat does.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    identity = op.create_table(
        "journal_identity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("journal_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name="ck_journal_identity_single_row"),
        sa.PrimaryKeyConstraint("id", name="pk_journal_identity"),
    )
    op.bulk_insert(identity, [{"id": 1, "journal_id": str(uuid.uuid4()), "created_at": datetime.now(timezone.utc)}])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("machine_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("pid_namespace", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("pid_namespace")
        batch.drop_column("machine_id")
    op.drop_table("journal_identity")
