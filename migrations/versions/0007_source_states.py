"""source_states: the fastpose code a run ran (provenance that follows the code).

One row per run: fastpose's version, where the package was imported from, and, when that is a git checkout
(an editable install), its git state: commit, branch, dirty flag, diff, untracked files. ``same_as_cwd``: the
checkout is the run's working-directory repository, whose diff ``git_states`` already holds (not repeated).
A new table rather than columns on ``runs``/``git_states``: ``git_states`` is one row per run keyed by
``run_id``, and a new table costs no copy of the runs table on SQLite.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "source_states",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("fastpose_version", sa.String(64), nullable=True),
        sa.Column("location", sa.Text(), nullable=True),
        sa.Column("is_repo", sa.Boolean(), nullable=False),
        sa.Column("same_as_cwd", sa.Boolean(), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=True),
        sa.Column("branch", sa.String(255), nullable=True),
        sa.Column("dirty", sa.Boolean(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=True),
        sa.Column("untracked", sa.JSON(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_source_states_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", name="pk_source_states"),
    )


def downgrade() -> None:
    op.drop_table("source_states")
