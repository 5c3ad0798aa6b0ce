"""A fuzz test of the whole command line: Hypothesis drives every command with generated
arguments, option values, environment values and file contents, and checks what a user must always get.

For every example:
- no Python traceback: nothing escapes ``fastpose.cli.run`` (the function the ``fastpose`` console script
  calls, run here in-process so hundreds of examples fit in CI) and nothing on stderr reads "Traceback";
- the exit code is 0 or 2 (3 for a run that diverged, the documented code);
- the journal passes ``PRAGMA integrity_check``;
- when the exit code is 2, the journal's row counts and every file under the journal home and the working
  directory are unchanged.

Profiles (tests/conftest.py): "ci" (default; fixed seed, bounded) and "long"
(``pytest tests/test_reliability_fuzz.py --hypothesis-profile=long``). The bad-input table
(test_reliability_bad_input.py) covers the same ground through real subprocesses.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import sqlite3
from pathlib import Path
from unittest import mock

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from fastpose.cli import run  # noqa: E402
from fastpose.config import INT_RANGES  # noqa: E402
from image_files import solid_png  # noqa: E402

SCALE = max(1, settings.default.max_examples) / 100  # 1 under the "ci" profile, 10 under "long"
TINY = ["--epochs", "1", "--train-size", "4", "--val-size", "2", "--batch-size", "2", "--image-size", "32",
        "--no-progress", "--log-images", "0"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A journal home with runs (one trained for real, with a checkpoint to resume) and a working directory."""
    root = tmp_path_factory.mktemp("fuzz")
    home, work = root / "home", root / "work"
    work.mkdir()
    env = {"FASTPOSE_HOME": str(home), "COLUMNS": "120"}
    with mock.patch.dict(os.environ, env), _cwd(work):
        os.environ.pop("FASTPOSE_JOURNAL_URL", None)
        code, _, err = _run(["train", "--name", "SEED", *TINY])
        assert code == 0, err
        assert _run(["journal", "note", "SEED", "first note"])[0] == 0
    (work / "existing.md").write_text("keep me\n")
    # files a user may name by mistake: special files, an image over the pixel limit, a directory
    os.mkfifo(work / "fifo.toml")
    os.mkfifo(work / "fifo.png")
    (work / "sub").mkdir()
    solid_png(work / "small.png", 60, 40)
    solid_png(work / "sub" / "small.png", 60, 40, (200, 30, 30))  # the same stem as small.png
    solid_png(work / "big.png", 12000, 9000)  # 108 megapixels: over --max-pixels' default
    return {"home": home, "work": work, "env": env}


@contextlib.contextmanager
def _cwd(path: Path):  # noqa: ANN202
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run(argv)
    return code, out.getvalue(), err.getvalue()


def _counts(home: Path) -> tuple:
    db = home / "fastpose.db"
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return tuple((t, conn.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]) for t in tables)
    finally:
        conn.close()


def _checkpoint(home: Path) -> None:
    """Move what earlier examples left in the WAL into the database file, so that a command which only
    opens the journal (SQLite checkpoints on the last close) leaves the file as it found it."""
    conn = sqlite3.connect(home / "fastpose.db")
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _tree(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for path in sorted(root.rglob("*")):
            if path.name.endswith(("-wal", "-shm", ".lock")) or not path.is_file() or path.is_symlink():
                continue
            st_ = path.stat()
            out[str(path)] = (f"{st_.st_size}/{st_.st_mtime_ns}" if st_.st_size > 1 << 16
                              else hashlib.sha256(path.read_bytes()).hexdigest())
    return out


def _check(world: dict, argv: list[str], env: dict[str, str], files: dict[str, bytes] | None = None,
           allowed: tuple[int, ...] = (0, 2)) -> None:
    home, work = world["home"], world["work"]
    for name, data in (files or {}).items():
        (work / name).write_bytes(data)
    _checkpoint(home)
    before_counts, before_tree = _counts(home), _tree(home, work)
    with mock.patch.dict(os.environ, {**world["env"], **env}), _cwd(work):
        code, out, err = _run(argv)  # an exception escaping run() fails the test with its traceback
    assert "Traceback" not in err, (argv, env, err[-3000:])
    event(f"{argv[0] if argv else '(none)'}: exit {code}")  # --hypothesis-show-statistics
    assert code in allowed, (argv, env, code, err[-2000:])
    after_counts = _counts(home)  # integrity_check inside
    if code == 2:
        assert after_counts == before_counts, (argv, env, err)
        assert _tree(home, work) == before_tree, (argv, env, err)
        assert len([line for line in err.splitlines() if line.strip()]) == 1 and err.startswith("error: "), err


# ------------------------------------------------------------------------------------------- strategies
NASTY = ["", " ", "-", "--", "[/bold]", "[red]", ":smile:", "\x1b[2J", "\x1b]0;x\x07", "\u202e", "\r", "\n",
         "²", "٣", "１", "9" * 30, "-1", "0", "nan", "inf", "-inf", "1e999", "0.5", "1", "2", "3", "auto", "None",
         "SEED", "SEED2", "26-", "26-11", "..", "../x", "/", "/proc/self/x", "/dev/null", "x" * 300, "a,b", "0,1",
         "existing.md", "out.md", "fastpose.db"]
token = st.one_of(st.sampled_from(NASTY), st.text(max_size=12),
                  st.integers(min_value=-10**20, max_value=10**20).map(str),
                  st.floats(allow_nan=True, allow_infinity=True).map(repr))
refs = st.one_of(st.sampled_from(["SEED", "1", "2", "26-", "NOPE"]), token)
ENV_KEYS = ["FASTPOSE_LOST_AFTER", "FASTPOSE_HEARTBEAT_S", "FASTPOSE_BUSY_TIMEOUT_S", "FASTPOSE_FAULT",
            "FASTPOSE_JOURNAL_URL", "FASTPOSE_HOME"]
env_values = st.dictionaries(st.sampled_from(ENV_KEYS), token.filter(lambda s: "\x00" not in s), max_size=2)


@st.composite
def journal_argv(draw) -> list[str]:  # noqa: ANN001
    kind = draw(st.sampled_from(["list", "show", "note", "export", "compare", "help", "raw"]))
    if kind == "list":
        opts = draw(st.lists(st.sampled_from(["--since", "--status", "--name", "--limit", "--json"]), max_size=3))
        argv = ["journal"]
        for opt in opts:
            argv += [opt] if opt == "--json" else [opt, draw(token)]
        return argv
    if kind == "show":
        return ["journal", "show", draw(refs)]
    if kind == "note":
        return ["journal", "note", *draw(st.lists(st.one_of(refs, token), min_size=0, max_size=3))]
    if kind == "export":
        return ["journal", "export", draw(token), *draw(st.lists(st.sampled_from(["--force"]), max_size=1))]
    if kind == "compare":
        argv = ["compare", *draw(st.lists(refs, min_size=0, max_size=3))]
        if draw(st.booleans()):
            argv += ["--plot", draw(st.one_of(token, st.sampled_from(["c.png", "c.svg", "c.xyz", "/tmp"])))]
        if draw(st.booleans()):
            argv.append("--json")
        return argv
    if kind == "help":
        return draw(st.sampled_from([["--help"], ["journal", "--help"], ["train", "--help"], []]))
    return draw(st.lists(token, max_size=4))


TRAIN_OPTS = ["--loss", "--eps", "--mask-weight", "--rot-weight", "--backbone", "--weights", "--dataset",
              "--data-root", "--image-size", "--train-size", "--max-objects", "--rotations", "--epochs", "--lr",
              "--weight-decay", "--seed", "--save-every", "--accelerator", "--devices", "--strategy",
              "--num-nodes", "--precision", "--limit-train-batches", "--limit-val-batches", "--note", "--config",
              "--name", "--data-seed", "--val-size", "--batch-size", "--num-workers", "--log-images",
              "--decoder-channels", "--threads"]
# Integer options: their values are drawn at and beyond the ends of config.INT_RANGES. A high end is drawn only
# where a run with it stays tiny (4096 workers or 10**6 epochs would be a real, long run).
INT_KEY = {option: key for key, (option, _, _) in INT_RANGES.items()}
CHEAP_HIGH = {"train.seed", "data.seed", "train.save_every", "train.log_images", "data.max_objects"}
# ... and these take no other values: any integer token could be a real run of hundreds of workers or a
# decoder thousands of channels wide
EDGES_ONLY = {"--data-seed", "--val-size", "--batch-size", "--num-workers", "--log-images", "--decoder-channels",
              "--threads"}


def int_edges(key: str) -> st.SearchStrategy[int]:
    _, low, high = INT_RANGES[key]
    values = [low, low - 1, high + 1, -2**31, 2**32, 2**53 + 1, -2**63, 2**64] + ([high] if key in CHEAP_HIGH else [])
    return st.sampled_from(values)
VALID = {"--loss": ["mse", "qloss", "pw-qloss", "geodesic", "qloss-neglog"], "--eps": ["0.01", "1e-3"],
         "--rot-weight": ["0", "1"], "--mask-weight": ["0.5"], "--backbone": ["resnet18"], "--rotations": ["so3"],
         "--max-objects": ["1", "2"], "--lr": ["0.01", "1e3"], "--seed": ["0", "7"], "--save-every": ["1"],
         "--devices": ["1", "auto"], "--strategy": ["auto"], "--precision": ["32", "bf16-mixed"],
         "--limit-train-batches": ["1", "0.5"], "--note": ["[/bold] \x1b[2J note"], "--name": ["FUZZ2"],
         "--epochs": ["1"], "--accelerator": ["cpu", "auto"]}
toml_values = st.one_of(st.integers(min_value=-10**20, max_value=10**20), st.floats(), st.booleans(),
                        st.text(max_size=10), st.lists(st.integers(), max_size=2))
TOML_KEYS = ["name", "train.lr", "train.epochs", "train.devices", "train.strategy", "loss.eps", "loss.name",
             "data.image_size", "data.data_root", "model.weights", "model.backbone", "train.bogus", "train.seed",
             "data.seed", "data.num_workers", "train.batch_size"]


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').encode("unicode_escape").decode("ascii") + '"'
    return repr(value)


@st.composite
def nested_toml(draw) -> bytes:  # noqa: ANN001
    """Arrays, inline tables or dotted keys nested from a few levels to far past the parser's recursion."""
    depth = draw(st.one_of(st.integers(1, 20), st.sampled_from([500, 1100, 5000, 20000])))
    kind = draw(st.sampled_from(["arrays", "inline", "dotted", "header"]))
    if kind == "arrays":
        return b"[train]\nseed = " + b"[" * depth + b"]" * depth + b"\n"
    if kind == "inline":
        return b"x = " + b"{a = " * depth + b"1" + b"}" * depth + b"\n"
    if kind == "dotted":
        return b"[train]\n" + b"a." * depth + b"b = 1\n"
    return b"[" + b".".join([b"train"] * depth) + b"]\nseed = 1\n"


@st.composite
def config_file(draw) -> bytes:  # noqa: ANN001
    if draw(st.integers(0, 4)) == 0:
        return draw(st.one_of(st.binary(max_size=40), nested_toml()))
    tables: dict[str, list[str]] = {}
    for key in draw(st.lists(st.sampled_from(TOML_KEYS), max_size=3, unique=True)):
        section, _, leaf = key.rpartition(".")
        value = draw(int_edges(key)) if key in INT_RANGES and key not in ("train.epochs", "data.image_size") \
            else draw(toml_values)
        tables.setdefault(section, []).append(f"{leaf} = {_toml_value(value)}")
    text = "\n".join(tables.pop("", []))
    for section, lines in tables.items():
        text += f"\n[{section}]\n" + "\n".join(lines)
    return text.encode("utf-8") + b"\n"


@st.composite
def train_argv(draw) -> tuple[list[str], dict[str, bytes]]:  # noqa: ANN001
    files: dict[str, bytes] = {}
    if draw(st.booleans()):
        argv = ["resume", draw(st.one_of(st.just("SEED"), refs))] + (
            ["--epochs", draw(st.sampled_from(["2", "3", "1", "0", "x"]))] if draw(st.integers(0, 3)) else [])
        return argv + draw(st.lists(st.sampled_from(["--no-progress", "--name", "--note"]), max_size=1)), files
    argv = ["train", "--name", "FUZZ", *TINY]
    for opt in draw(st.lists(st.sampled_from(TRAIN_OPTS), min_size=1, max_size=2, unique=True)):
        if opt == "--config" and draw(st.integers(0, 4)) == 0:  # a special file, a directory, a missing one
            argv += [opt, draw(st.sampled_from(["/dev/zero", "/dev/urandom", "/dev/null", "fifo.toml", "sub",
                                                "nope.toml"]))]
        elif opt == "--config":
            files["fuzz.toml"] = draw(config_file())
            argv += [opt, "fuzz.toml"]
        elif opt in INT_KEY and (opt in EDGES_ONLY or draw(st.booleans())):
            argv += [opt, str(draw(int_edges(INT_KEY[opt])))]
        elif opt in VALID and draw(st.integers(0, 3)) > 0:  # mostly valid values: real runs train
            argv += [opt, draw(st.sampled_from(VALID[opt]))]
        else:
            argv += [opt, draw(token)]
    return argv, files


SMALL_INTRINSICS = [1e308, -1e308, 1e-308, 5e-324, 0.0, 0.06, 0.0599, 60.0, 60000.0, 60001.0, -600.0, -600.1,
                    660.0, 660.5, -400.0, 440.0]  # small.png is 60 x 40: the ends of check_intrinsics' ranges
edge_float = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SMALL_INTRINSICS))
intrinsics = st.one_of(token, st.lists(edge_float, min_size=4, max_size=4).map(lambda v: ",".join(map(repr, v))),
                       st.sampled_from(["60,60,30,20", "0.06,60000,-600,440", "60000,0.06,660,-400"]))


@st.composite
def predict_argv(draw) -> list[str]:  # noqa: ANN001
    good = st.sampled_from(["small.png", "sub/small.png"])
    image = st.one_of(good, good, st.sampled_from(["big.png", "fifo.png", "/dev/zero", "/dev/urandom", "sub",
                                                   "existing.md", "nope.png"]), token)
    images = draw(st.lists(image, min_size=1, max_size=2))
    argv = ["predict", draw(st.one_of(st.just("SEED"), st.just("SEED"), refs)), *images]
    if draw(st.booleans()):
        argv += ["--intrinsics", draw(intrinsics)]
    if "big.png" not in images and draw(st.integers(0, 3)) == 0:  # never a limit that lets 108 MP decode here
        argv += ["--max-pixels", draw(st.one_of(st.sampled_from(["0", "1", "2399", "2400", "-1", "1000000000",
                                                                 "1000000001", "9" * 30]), token))]
    if draw(st.integers(0, 3)) == 0:
        argv += ["--out", draw(st.sampled_from(["out", "sub", "existing.md", "fifo.png"]))]
    if draw(st.booleans()):
        argv.append("--json")
    return argv


# ------------------------------------------------------------------------------------------- the tests


@settings(max_examples=int(250 * SCALE))
@given(argv=journal_argv(), env=env_values)
def test_fuzz_journal_compare_and_export(world: dict, argv: list[str], env: dict[str, str]) -> None:
    _check(world, argv, env)


@pytest.mark.slow
@settings(max_examples=int(40 * SCALE))
@given(case=train_argv(), env=st.one_of(st.just({}), st.just({}), env_values))
def test_fuzz_train_and_resume(world: dict, case: tuple[list[str], dict[str, bytes]], env: dict[str, str]) -> None:
    argv, files = case
    env = {k: v for k, v in env.items() if k != "FASTPOSE_FAULT"}  # injected faults crash runs on purpose
    _check(world, argv, env, files, allowed=(0, 2, 3))


@pytest.mark.slow
@settings(max_examples=int(30 * SCALE))
@given(argv=predict_argv())
def test_fuzz_predict(world: dict, argv: list[str]) -> None:
    _check(world, argv, {})
