"""Sweeps, cells and tags in the journal (revision 0005), on SQLite and PostgreSQL; the journal filters
(--tag, --sweep, --where, journal tag, journal sweeps) through the real CLI. No training here."""

from __future__ import annotations

import json

import pytest

from fastpose.errors import FastposeError
from fastpose.journal import sweeps
from fastpose.journal.access import open_reader
from fastpose.journal.tags import add_tags, parse_where, run_tags, select_runs

SPEC = {"name": "S", "base": {"train": {"epochs": 2}}, "axes": {"loss.name": ["mse", "qloss"], "train.seed": [0, 1]},
        "tags": [], "slurm": {}}


def _run(store, name: str, loss: str, seed: int, lr: float = 3e-3):
    config = {"name": name, "loss": {"name": loss}, "train": {"seed": seed, "lr": lr}}
    return store.start_run(name=name, label=f"26-12-01/10-00-{name}-SYNTHETIC-resnet18-scratch", config=config)


def test_cells_groups_retries_and_resumed_runs(journal_store) -> None:
    sweep = sweeps.open_sweep(journal_store, "study", SPEC, "/x/study.toml")
    assert sweeps.open_sweep(journal_store, "study", {**SPEC, "slurm": {"partition": "p"}}, None).id == sweep.id
    with pytest.raises(FastposeError, match="another axes"):
        sweeps.open_sweep(journal_store, "study", {**SPEC, "axes": {"train.seed": [0]}}, None)
    a = _run(journal_store, "S-mse-seed0", "mse", 0)
    b = _run(journal_store, "S-mse-seed1", "mse", 1)
    sweeps.attach(journal_store, a.id, sweep.id, {"loss.name": "mse", "train.seed": 0})
    sweeps.attach(journal_store, b.id, sweep.id, {"train.seed": 1, "loss.name": "mse"})
    journal_store.finish(a.id, "interrupted")
    journal_store.finish(b.id, "completed")
    # a's continuation: the same cell and tags, through the runner's inherit
    add_tags(journal_store, a.id, ["paper"])
    c = journal_store.start_run(name="S-mse-seed0", label="26-12-01/10-05-S-mse-seed0-SYNTHETIC-resnet18-scratch",
                                config=a.config, parent_id=a.id)
    sweeps.inherit(journal_store, a.id, c.id)
    runs = sweeps.cell_runs(journal_store, sweep.id)
    assert [r.run_id for r in runs] == [a.id, b.id, c.id]
    assert {r.group_key for r in runs} == {'{"loss.name": "mse"}'}
    states = sweeps.cell_states(runs)
    assert len(states) == 2  # two cells, one of them with two runs
    assert states['{"loss.name": "mse", "train.seed": 0}'] == ("running", runs[2])
    journal_store.finish(c.id, "completed")
    journal_store.crash(a.id, "E", "m", "tb")  # an older attempt changing later does not undo the completed one
    assert {s for s, _ in sweeps.cell_states(sweeps.cell_runs(journal_store, sweep.id)).values()} == {"completed"}
    assert run_tags(journal_store, [a.id, b.id, c.id]) == {a.id: ["paper", "study"], b.id: ["study"],
                                                           c.id: ["paper", "study"]}
    assert sweeps.sweep_of_run(journal_store, c.id) == (sweep.id, '{"loss.name": "mse", "train.seed": 0}',
                                                       '{"loss.name": "mse"}')
    assert sweeps.get_sweep(journal_store, str(sweep.id)).name == "study"
    with pytest.raises(FastposeError, match="closest: study"):
        sweeps.get_sweep(journal_store, "studdy")


def test_select_runs_by_tag_sweep_and_config(journal_store) -> None:
    sweep = sweeps.open_sweep(journal_store, "s2", SPEC, None)
    runs = [_run(journal_store, f"R{i}", loss, seed, lr) for i, (loss, seed, lr) in
            enumerate([("mse", 0, 3e-3), ("qloss", 0, 0.003), ("qloss", 1, 1e-3)])]
    add_tags(journal_store, runs[0].id, ["a", "b"])
    add_tags(journal_store, runs[1].id, ["a", "a"])
    assert add_tags(journal_store, runs[1].id, ["a"]) == []  # already there: unchanged
    sweeps.attach(journal_store, runs[2].id, sweep.id, {"loss.name": "qloss", "train.seed": 1})
    ids = lambda rs: sorted(r.id for r in rs)  # noqa: E731
    assert ids(select_runs(journal_store, tags=["a"])) == [runs[0].id, runs[1].id]
    assert ids(select_runs(journal_store, tags=["a", "b"])) == [runs[0].id]
    assert ids(select_runs(journal_store, sweep_id=sweep.id)) == [runs[2].id]
    assert ids(select_runs(journal_store, where=parse_where(["loss.name=qloss"]))) == [runs[1].id, runs[2].id]
    assert ids(select_runs(journal_store, where=parse_where(["train.lr=3e-3"]))) == [runs[0].id, runs[1].id]
    assert ids(select_runs(journal_store, where=parse_where(["loss.name=qloss", "train.seed=0"]))) == [runs[1].id]
    assert len(select_runs(journal_store, where=parse_where(["loss.name=qloss"]), limit=1)) == 1
    with pytest.raises(FastposeError, match="unknown config key"):
        parse_where(["train.sed=1"])
    with pytest.raises(FastposeError, match="KEY=VALUE"):
        parse_where(["train.seed"])


def test_journal_filters_and_sweeps_through_the_cli(journal_store, run_cli) -> None:
    sweep = sweeps.open_sweep(journal_store, "cli_sweep", SPEC, None)
    a, b = _run(journal_store, "CA", "mse", 0), _run(journal_store, "CB", "qloss", 1)
    sweeps.attach(journal_store, a.id, sweep.id, {"loss.name": "mse", "train.seed": 0})
    journal_store.finish(a.id, "completed")
    journal_store.finish(b.id, "completed")
    tagged = run_cli("journal", "tag", "CB", "best", "v2", check=True)
    assert "tags best, v2" in tagged.stdout
    names = lambda *args: [r["name"] for r in json.loads(run_cli("journal", "--json", *args, check=True).stdout)]  # noqa: E731
    assert names("--tag", "best") == ["CB"]
    assert names("--sweep", "cli_sweep") == ["CA"]
    assert names("--where", "loss.name=qloss") == ["CB"]
    assert names("--where", "train.seed=0", "--tag", "cli_sweep") == ["CA"]
    overview = json.loads(run_cli("journal", "sweeps", "--json", check=True).stdout)
    assert [(o["sweep"], o["cells"], o["completed"], o["pending"]) for o in overview] == [("cli_sweep", 4, 1, 3)]
    for args, message in ((("journal", "--sweep", "nope"), "no sweep 'nope'"),
                          (("journal", "tag", "CB", "bad tag"), "invalid tag"),
                          (("journal", "--where", "x=1"), "unknown config key")):
        proc = run_cli(*args)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
    assert run_tags(journal_store, [b.id])[b.id] == ["best", "v2"]


def test_journal_listing_reads_tags_with_the_stdlib_reader(journal_db_url, journal_store) -> None:
    """The fast path of `fastpose journal` (sqlite3, no SQLAlchemy) answers the new queries too."""
    run = _run(journal_store, "FAST", "mse", 0)
    add_tags(journal_store, run.id, ["x"])
    reader = open_reader(journal_db_url)
    try:
        assert type(reader).__name__ == ("SqliteReader" if journal_db_url.startswith("sqlite") else "JournalStore")
        assert [r.id for r in select_runs(reader, tags=["x"])] == [run.id]
        assert run_tags(reader, [run.id]) == {run.id: ["x"]}
    finally:
        reader.close()
