"""evaluations: a checkpoint of a run evaluated on a split (``fastpose eval``).

One row per evaluation, linked to its run: which checkpoint, split and dataset, how many images, the
NOCS-standard metrics as a JSON object (``{"10deg_5cm": 0.41, "10deg_5cm/mug": 0.3, ...}``; NaN stored as
null) and where the precision-recall plot was written.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checkpoint", sa.Text(), nullable=False),
        sa.Column("split", sa.String(32), nullable=False),
        sa.Column("dataset", sa.String(32), nullable=False),
        sa.Column("data_root", sa.Text(), nullable=True),
        sa.Column("num_images", sa.Integer(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("plot_path", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_evaluations_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
    )
    op.create_index("ix_evaluations_run_id", "evaluations", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_evaluations_run_id", table_name="evaluations")
    op.drop_table("evaluations")
