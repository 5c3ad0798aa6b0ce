"""runs.reproduces_id, gc_removals and untracked_files: a run that reproduces another, what ``journal gc``
removes (and has removed), and the untracked files a run's code had beside its commit and diff.

``runs.reproduces_id`` (null: none) links a run made by ``fastpose reproduce`` to the run it reproduces;
``ON DELETE SET NULL``, as ``parent_id``. ``gc_removals`` is gc's own journal, written before any file goes:
one row per run directory or checkpoint file it removes, ``done_at`` null until the file is gone, ``purge``
when the run's rows go after its files. A second gc finishes every row left undone. ``untracked_files``
holds the contents of a run's small untracked files (``tree``: ``cwd`` for the working directory's
repository, ``source`` for the fastpose checkout when it is another), so ``reproduce`` can restore them.
One column added in place (SQLite copies no table) and two new tables.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("reproduces_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_runs_reproduces_id_runs", "runs", ["reproduces_id"], ["id"], ondelete="SET NULL")
    op.create_index("ix_runs_reproduces_id", "runs", ["reproduces_id"])
    op.create_table(
        "gc_removals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=True),
        sa.Column("purge", sa.Boolean(), nullable=False),
        sa.Column("planned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("kind IN ('run_dir', 'checkpoint')", name="ck_gc_removals_kind"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_gc_removals_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_gc_removals"),
    )
    op.create_index("ix_gc_removals_run_id", "gc_removals", ["run_id"])
    op.create_index("ix_gc_removals_done_at", "gc_removals", ["done_at"])
    op.create_table(
        "untracked_files",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tree", sa.String(16), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mode", sa.Integer(), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.CheckConstraint("tree IN ('cwd', 'source')", name="ck_untracked_files_tree"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_untracked_files_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "tree", "path", name="pk_untracked_files"),
    )


def downgrade() -> None:
    op.drop_table("untracked_files")
    op.drop_index("ix_gc_removals_done_at", table_name="gc_removals")
    op.drop_index("ix_gc_removals_run_id", table_name="gc_removals")
    op.drop_table("gc_removals")
    op.drop_index("ix_runs_reproduces_id", table_name="runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("fk_runs_reproduces_id_runs", type_="foreignkey")
        batch.drop_column("reproduces_id")
