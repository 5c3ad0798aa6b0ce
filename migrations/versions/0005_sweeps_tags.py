"""Sweeps, sweep cells and run tags (studies as commands).

- ``sweeps``: one row per sweep (``fastpose sweep FILE.toml``): its unique id text, the expanded sweep file
  (base config, axes, tags, launcher resources) as JSON, the file it came from.
- ``sweep_runs``: which run is which cell of which sweep. ``cell`` is the canonical JSON of the cell's axis
  values, ``group_key`` the same without the seed axes; a cell's retries and resumed continuations are all
  rows with the same (sweep_id, cell).
- ``run_tags``: free tags on runs (``train --tag``, ``journal tag``), every sweep cell carries its sweep's id.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sweeps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_sweeps"),
        sa.UniqueConstraint("name", name="uq_sweeps_name"),
    )
    op.create_table(
        "sweep_runs",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("sweep_id", sa.Integer(), nullable=False),
        sa.Column("cell", sa.String(1000), nullable=False),
        sa.Column("group_key", sa.String(1000), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_sweep_runs_run_id_runs", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(
            ["sweep_id"], ["sweeps.id"], name="fk_sweep_runs_sweep_id_sweeps", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("run_id", name="pk_sweep_runs"),
    )
    op.create_index("ix_sweep_runs_sweep_id_cell", "sweep_runs", ["sweep_id", "cell"])
    op.create_table(
        "run_tags",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(100), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_tags_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("run_id", "tag", name="pk_run_tags"),
    )
    op.create_index("ix_run_tags_tag", "run_tags", ["tag"])


def downgrade() -> None:
    op.drop_table("run_tags")
    op.drop_table("sweep_runs")
    op.drop_table("sweeps")
