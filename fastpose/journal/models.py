"""The journal schema as SQLAlchemy 2 typed ORM models: the single source the migrations must match.

Portable to SQLite and PostgreSQL (JSON, Text, timezone-aware DateTime). Every constraint and index is
named through the naming convention, so Alembic batch mode on SQLite and later revisions can refer to
them. ``tests/test_journal_migrations.py`` compares a migrated database with this metadata.

The store never hands these objects out: it reads and writes through their tables and returns frozen
records (``fastpose.journal.records``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

STATUSES = ("running", "completed", "crashed", "interrupted", "diverged", "lost")
DIRECTIONS = ("min", "max")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only makes INTEGER PRIMARY KEY an autoincrementing rowid; PostgreSQL gets a BIGINT for metrics.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
When = sa.DateTime(timezone=True)  # always written as UTC


def _in(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Run(Base):
    """One training run (or a resumed continuation of one, linked by ``parent_id``)."""

    __tablename__ = "runs"
    __table_args__ = (
        sa.CheckConstraint(f"status IN ({_in(STATUSES)})", name="status"),
        sa.Index(None, "started_at"),
        sa.Index(None, "name", "started_at"),
        sa.Index(None, "status"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    label: Mapped[str] = mapped_column(sa.String(255), index=True)  # YY-MM-DD/HH-MM-NAME-DATASET-BACKBONE-WEIGHTS
    status: Mapped[str] = mapped_column(sa.String(16), default="running")
    created_at: Mapped[datetime] = mapped_column(When)
    started_at: Mapped[datetime] = mapped_column(When)
    ended_at: Mapped[datetime | None] = mapped_column(When)
    heartbeat_at: Mapped[datetime | None] = mapped_column(When)
    pid: Mapped[int | None] = mapped_column(sa.Integer)
    host: Mapped[str | None] = mapped_column(sa.String(255))
    proc_start: Mapped[int | None] = mapped_column(sa.BigInteger)  # process start, ms since the epoch (psutil); older rows: /proc ticks (reader.same_start)
    username: Mapped[str | None] = mapped_column(sa.String(255))
    command: Mapped[str | None] = mapped_column(sa.Text)
    cwd: Mapped[str | None] = mapped_column(sa.Text)
    parent_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("runs.id", ondelete="SET NULL"), index=True
    )  # the run this one resumed
    config: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)  # RunConfig.to_dict()
    run_dir: Mapped[str | None] = mapped_column(sa.Text)
    checkpoint: Mapped[str | None] = mapped_column(sa.Text)  # checkpoint the run started from
    error_type: Mapped[str | None] = mapped_column(sa.String(255))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    traceback: Mapped[str | None] = mapped_column(sa.Text)
    epoch: Mapped[int | None] = mapped_column(sa.Integer)  # where it stopped (or is now)
    step: Mapped[int | None] = mapped_column(sa.Integer)
    python_version: Mapped[str | None] = mapped_column(sa.String(64))
    torch_version: Mapped[str | None] = mapped_column(sa.String(64))
    lightning_version: Mapped[str | None] = mapped_column(sa.String(64))
    # Where the process lives (revision 0004): /etc/machine-id (else the boot id) and the inode of
    # /proc/self/ns/pid. The process table decides "lost" only when both match the reader's.
    machine_id: Mapped[str | None] = mapped_column(sa.String(64))
    pid_namespace: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Revision 0009: what else changes the run's numbers (threads, device, precision, backend flags, versions),
    # and when `journal rm` deleted it (NULL: not deleted).
    environment: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    deleted_at: Mapped[datetime | None] = mapped_column(When, index=True)
    # Revision 0010: the run this one reproduces (`fastpose reproduce`).
    reproduces_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id", ondelete="SET NULL"), index=True)

    git: Mapped[GitStateRow | None] = relationship(back_populates="run", passive_deletes=True)


class GitStateRow(Base):
    """The source tree a run was started from (1:1 with its run)."""

    __tablename__ = "git_states"

    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    is_repo: Mapped[bool] = mapped_column(sa.Boolean)
    commit_sha: Mapped[str | None] = mapped_column(sa.String(64))
    branch: Mapped[str | None] = mapped_column(sa.String(255))  # None when HEAD is detached
    dirty: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    diff: Mapped[str | None] = mapped_column(sa.Text)  # staged + unstaged changes against HEAD
    untracked: Mapped[list[str] | None] = mapped_column(sa.JSON)
    message: Mapped[str | None] = mapped_column(sa.Text)  # commit message of HEAD
    error: Mapped[str | None] = mapped_column(sa.Text)  # why nothing was captured ("not a git repository")

    run: Mapped[Run] = relationship(back_populates="git")


class SourceStateRow(Base):
    """The fastpose code a run ran (revision 0007): version, where it was imported from, and the git state of
    that checkout when it is one (an editable install). ``same_as_cwd``: the checkout is the run's working
    directory repository; ``git_states`` holds its diff, not repeated here."""

    __tablename__ = "source_states"

    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    fastpose_version: Mapped[str | None] = mapped_column(sa.String(64))
    location: Mapped[str | None] = mapped_column(sa.Text)  # the package directory fastpose was imported from
    is_repo: Mapped[bool] = mapped_column(sa.Boolean)  # the package is a tracked part of a git checkout
    same_as_cwd: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    commit_sha: Mapped[str | None] = mapped_column(sa.String(64))
    branch: Mapped[str | None] = mapped_column(sa.String(255))
    dirty: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    diff: Mapped[str | None] = mapped_column(sa.Text)
    untracked: Mapped[list[str] | None] = mapped_column(sa.JSON)
    message: Mapped[str | None] = mapped_column(sa.Text)
    error: Mapped[str | None] = mapped_column(sa.Text)  # why no git state ("installed package, not a git checkout")


class Metric(Base):
    """The whole history: one row per logged value."""

    __tablename__ = "metrics"
    __table_args__ = (sa.Index(None, "run_id", "name"),)  # also serves the run_id foreign key

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(200))
    epoch: Mapped[int | None] = mapped_column(sa.Integer)
    step: Mapped[int | None] = mapped_column(sa.Integer)
    value: Mapped[float | None] = mapped_column(sa.Float)  # NULL: NaN (SQLite cannot store NaN)
    logged_at: Mapped[datetime] = mapped_column(When)


class MetricSummary(Base):
    """Final and best value per (run, metric), kept up to date by ``log_metrics`` (added in revision 0002)."""

    __tablename__ = "metric_summaries"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "name"),  # also serves the run_id foreign key
        sa.CheckConstraint(f"direction IN ({_in(DIRECTIONS)})", name="direction"),
    )

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(200))
    direction: Mapped[str] = mapped_column(sa.String(3))
    final: Mapped[float | None] = mapped_column(sa.Float)
    final_epoch: Mapped[int | None] = mapped_column(sa.Integer)
    final_step: Mapped[int | None] = mapped_column(sa.Integer)
    best: Mapped[float | None] = mapped_column(sa.Float)
    best_epoch: Mapped[int | None] = mapped_column(sa.Integer)
    best_step: Mapped[int | None] = mapped_column(sa.Integer)
    count: Mapped[int] = mapped_column(sa.Integer)
    updated_at: Mapped[datetime] = mapped_column(When)


class Note(Base):
    """A line in the lab notebook: about a run, or (run_id NULL) about the day it was written."""

    __tablename__ = "notes"
    __table_args__ = (sa.Index(None, "created_at"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(When)


class AppliedWrite(Base):
    """A journal write already applied, by its id (revision 0003).

    Writes made through ``fastpose.journal.spool.SpoolingJournal`` carry a unique id, recorded here in the same
    transaction as the write; replaying a spool skips the ids already present, so each write lands exactly once
    (even one that committed although its caller saw the connection fail).
    """

    __tablename__ = "applied_writes"

    write_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))  # heartbeat | log_metrics | finish | crash | add_note | set_environment
    applied_at: Mapped[datetime] = mapped_column(When)


class JournalIdentity(Base):
    """The journal's identity (revision 0004): a single row with a UUID written when the journal is created.

    Every spool line carries it; a spool is replayed only into the journal whose UUID it names, so a spool
    written while a PostgreSQL journal was down is never replayed into a local SQLite journal (or vice versa).
    """

    __tablename__ = "journal_identity"
    __table_args__ = (sa.CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    journal_id: Mapped[str] = mapped_column(sa.String(36))
    created_at: Mapped[datetime] = mapped_column(When)


class Sweep(Base):
    """A sweep (revision 0005): ``fastpose sweep FILE.toml``, a grid of runs over configs and seeds."""

    __tablename__ = "sweeps"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)  # the sweep id users type
    spec: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)  # base config, axes, tags, [slurm]
    source: Mapped[str | None] = mapped_column(sa.Text)  # the sweep file it was read from
    created_at: Mapped[datetime] = mapped_column(When)


class SweepRun(Base):
    """A run as one cell of a sweep (revision 0005); retries and resumed runs of a cell share its ``cell``."""

    __tablename__ = "sweep_runs"
    __table_args__ = (sa.Index(None, "sweep_id", "cell"),)  # also serves the sweep_id foreign key

    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    sweep_id: Mapped[int] = mapped_column(sa.ForeignKey("sweeps.id", ondelete="CASCADE"))
    cell: Mapped[str] = mapped_column(sa.String(1000))  # canonical JSON of the axis values
    group_key: Mapped[str] = mapped_column(sa.String(1000))  # the same without the seed axes


class SweepClaim(Base):
    """A cell of a sweep that a process is running now (revision 0008).

    The primary key (sweep_id, cell) allows one claim per cell: claiming is one INSERT that exactly one
    process wins, on SQLite and PostgreSQL alike. The holder's process fields are the ones ``runs`` keeps
    (``reader.lost_reason`` reads either), so a claim whose holder is gone is taken over, never held forever.
    ``job``: the cluster job that holds it; the same job, requeued, takes its own claim back.
    """

    __tablename__ = "sweep_claims"

    sweep_id: Mapped[int] = mapped_column(sa.ForeignKey("sweeps.id", ondelete="CASCADE"), primary_key=True)
    cell: Mapped[str] = mapped_column(sa.String(1000), primary_key=True)  # canonical JSON, as sweep_runs.cell
    token: Mapped[str] = mapped_column(sa.String(36))  # this claim's id: release and renew name it
    holder: Mapped[str] = mapped_column(sa.String(255))  # for people: "sweep pid 4242 on lab-gpu-1"
    job: Mapped[str | None] = mapped_column(sa.String(255))
    pid: Mapped[int | None] = mapped_column(sa.Integer)
    host: Mapped[str | None] = mapped_column(sa.String(255))
    proc_start: Mapped[int | None] = mapped_column(sa.BigInteger)  # ms since the epoch, as runs.proc_start
    machine_id: Mapped[str | None] = mapped_column(sa.String(64))
    pid_namespace: Mapped[int | None] = mapped_column(sa.BigInteger)
    claimed_at: Mapped[datetime] = mapped_column(When)
    heartbeat_at: Mapped[datetime] = mapped_column(When)  # renewed by the holder while it runs the cell


class RunTag(Base):
    """A tag on a run (revision 0005): ``train --tag``, ``journal tag``, and each sweep cell's sweep id."""

    __tablename__ = "run_tags"

    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(sa.String(100), primary_key=True, index=True)


class Evaluation(Base):
    """A checkpoint of a run evaluated on a split by ``fastpose eval`` (revision 0006).

    ``metrics`` holds the NOCS-standard values by name (``"10deg_5cm"``, ``"10deg_5cm/mug"``, ``"miss_rate"``,
    ...; NaN as null), see ``fastpose.pose.evaluation``.
    """

    __tablename__ = "evaluations"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(When)
    checkpoint: Mapped[str] = mapped_column(sa.Text)  # the checkpoint file evaluated
    split: Mapped[str] = mapped_column(sa.String(32))  # val | test
    dataset: Mapped[str] = mapped_column(sa.String(32))  # synthetic | nocs
    data_root: Mapped[str | None] = mapped_column(sa.Text)
    num_images: Mapped[int] = mapped_column(sa.Integer)
    metrics: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    plot_path: Mapped[str | None] = mapped_column(sa.Text)  # precision-recall curves (PNG)


class GcRemoval(Base):
    """A file ``journal gc`` removes (revision 0010), written before the file goes: a deleted run's directory
    (``run_dir``) or a pruned checkpoint of a kept run (``checkpoint``).

    ``done_at`` is null until the file is gone; a gc killed on the way leaves such rows, and the next gc
    finishes them first. ``purge``: the run's rows go too once its files are gone (``gc --purge``). Rows of
    pruned checkpoints stay: ``journal show`` says which checkpoints gc removed, and when.
    """

    __tablename__ = "gc_removals"
    __table_args__ = (sa.CheckConstraint("kind IN ('run_dir', 'checkpoint')", name="kind"),)

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    path: Mapped[str] = mapped_column(sa.Text)
    bytes: Mapped[int | None] = mapped_column(sa.BigInteger)  # what it frees, as planned (hard links once)
    purge: Mapped[bool] = mapped_column(sa.Boolean)
    planned_at: Mapped[datetime] = mapped_column(When)
    done_at: Mapped[datetime | None] = mapped_column(When, index=True)


class UntrackedFile(Base):
    """The contents of a small untracked file beside a run's code (revision 0010), so ``fastpose reproduce``
    can put it back. ``tree``: ``cwd`` (the working directory's repository, ``git_states``) or ``source`` (the
    fastpose checkout, ``source_states``, when it is another repository). Files over the capture limits
    (``fastpose.journal.git``) are listed by name in ``untracked`` only."""

    __tablename__ = "untracked_files"
    __table_args__ = (sa.CheckConstraint("tree IN ('cwd', 'source')", name="tree"),)

    run_id: Mapped[int] = mapped_column(sa.ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    tree: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    path: Mapped[str] = mapped_column(sa.String(1024), primary_key=True)  # relative to the repository root
    size: Mapped[int] = mapped_column(sa.BigInteger)
    mode: Mapped[int] = mapped_column(sa.Integer)  # permission bits (an executable script stays executable)
    content: Mapped[bytes] = mapped_column(sa.LargeBinary)
