"""Bad input, one table of cases: each gives one clear line, its exit code, and leaves the journal
and the disk unchanged.

Every case runs the real CLI in a subprocess against a journal that already holds four runs (`A1`, `B1`,
and `TWIN_A`/`TWIN_B`, so the prefix `26-11-28/23` is ambiguous), once on SQLite and once on PostgreSQL, and
compares row counts and the file tree (the journal home and the files the cases use) before and after.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import JOURNAL_BACKENDS, drop_pg_database, fresh_pg_database, pg_admin_engine
from image_files import solid_png
from fastpose.journal.git import capture_git
from fastpose.journal.store import JournalStore

TIMEOUT = 300
TINY = ["--epochs", "1", "--train-size", "4", "--val-size", "4", "--batch-size", "2", "--image-size", "32",
        "--no-progress"]


def _tree(root: Path) -> dict[str, str]:
    """Path -> sha256 of every file (kind of every special file) under root, except SQLite's WAL/shm side files
    and the writer lock."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.name.endswith(("-wal", "-shm", ".lock")):
            continue
        if path.is_symlink():
            out[str(path.relative_to(root))] = "link -> " + os.readlink(path)
        elif path.is_fifo():
            out[str(path.relative_to(root))] = "fifo"
        elif path.is_file():
            st = path.stat()
            out[str(path.relative_to(root))] = (  # big files (the weights): size and mtime, not a 100 MB hash
                f"{st.st_size}/{st.st_mtime_ns}" if st.st_size > 1 << 20 else hashlib.sha256(path.read_bytes()).hexdigest()
            )
        elif path.is_dir():
            out[str(path.relative_to(root))] = "dir"
    return out


FILES = {
    "bad.toml": b"[train]\nepochs = 3\nlr = = 0.1\n",
    "unknown.toml": b"[train]\nepoch = 3\n",
    "lr_str.toml": b'[train]\nlr = "fast"\n',
    "weights_int.toml": b"[model]\nweights = 5\n",
    "eps_list.toml": b"[loss]\neps = [1, 2]\n",
    "epochs_float.toml": b"[train]\nepochs = 2.5\n",
    "lr_nan.toml": b"[train]\nlr = nan\n",
    "lr_inf.toml": b"[train]\nlr = inf\n",
    "latin1.toml": b'name = "caf\xe9"\n',
    "accel_int.toml": b"[train]\naccelerator = 3\n",
    "size_bool.toml": b"[data]\nimage_size = true\n",
    "size_list.toml": b"[data]\nimage_size = [640, 480]\n",
    "size_text.toml": b'[data]\nimage_size = "640x481"\n',
    "section_scalar.toml": b"train = 5\n",
    "name_int.toml": b"name = 5\n",
    "unknown_section.toml": b"[optimizer]\nlr = 0.1\n",
    "devices_int.toml": b"[train]\ndevices = 2\n",
    "progress_str.toml": b'[train]\nprogress_bar = "yes"\n',
    "root_list.toml": b'[data]\ndata_root = ["a", "b"]\n',
    "existing.md": b"# my notes, not to be overwritten\n",
    "sweep_empty_axis.toml": b'name = "S"\n[sweep]\n"train.seed" = []\n',
    "sweep_unknown_axis.toml": b'name = "S"\n[sweep]\n"loss.nme" = ["mse"]\n',
    # numbers out of their range (config.INT_RANGES), TOML that reads without end or nests without end
    "seed_neg.toml": b"[train]\nseed = -1\n",
    "data_seed_big.toml": b"[data]\nseed = 4294967296\n",
    "batch_big.toml": b"[train]\nbatch_size = 65537\n",
    "sweep_seed_neg.toml": b'name = "S"\n[sweep]\n"train.seed" = [0, -1]\n',
    "big.toml": b"# " + b"x" * (1 << 20) + b"\n",
    "deep_arrays.toml": b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n",
    "deep_tables.toml": b"x = " + b"{a = " * 5000 + b"1" + b"}" * 5000 + b"\n",
    "deep_dotted.toml": b"[train]\n" + b"a." * 5000 + b"b = 1\n",
    "deep_17.toml": b"x = " + b"[" * 16 + b"]" * 16 + b"\n",  # the root table and 16 arrays: 17 levels
    "sweep_deep.toml": b'name = "S"\n[sweep]\n"train.seed" = ' + b"[" * 3000 + b"]" * 3000 + b"\n",
    "truncated.png": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10",
}


@pytest.fixture(scope="module", params=JOURNAL_BACKENDS)
def populated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp(f"badinput-{request.param}")
    home = root / "home"
    env = dict(os.environ, FASTPOSE_HOME=str(home), COLUMNS="200")
    env.pop("FASTPOSE_DEBUG", None)
    admin = None
    if request.param == "postgresql":
        admin = pg_admin_engine()
        url = fresh_pg_database(admin)
    else:
        url = f"sqlite:///{home / 'fastpose.db'}"
    env["FASTPOSE_JOURNAL_URL"] = url
    store = JournalStore.open(url=url)
    for i, name in enumerate(("A1", "B1", "TWIN_A", "TWIN_B")):
        run = store.start_run(
            name=name, label=f"26-11-28/{22 + i // 2}-5{i}-{name}-SYNTH-resnet18-scratch", config={"name": name},
            run_dir=str(home / "runs" / name), command="test", git=capture_git(root), versions={"python": "3"},
        )
        store.finish(run.id, status="completed")
    # a run whose stored config holds a seed numpy refuses (journaled by a version that did not check it)
    run = store.start_run(
        name="BADSEED", label="26-11-27/10-00-BADSEED-SYNTH-resnet18-scratch",
        config={"name": "BADSEED", "train": {"seed": -1}}, run_dir=str(home / "runs" / "BADSEED"), command="test",
        git=capture_git(root), versions={"python": "3"},
    )
    store.finish(run.id, status="completed")
    store.add_note("a day note")
    store.close()
    home.mkdir(parents=True, exist_ok=True)
    (home / "fastpose.db.bak-20261128").write_bytes(b"backup")  # as an upgrade leaves it

    import torch

    from fastpose.pose.backbones import build_backbone

    torch.save(build_backbone("resnet50").state_dict(), root / "resnet50-imagenet.pth")  # another architecture
    for name, data in FILES.items():
        (root / name).write_bytes(data)
    (root / "a_dir").mkdir()
    (root / "link.md").symlink_to(root / "existing.md")
    os.mkfifo(root / "fifo.md")
    os.mkfifo(root / "fifo.toml")
    os.mkfifo(root / "fifo.png")
    solid_png(root / "big.png", 20000, 20000)  # 400 megapixels, 1.7 MB on disk
    solid_png(root / "small.png", 40, 30)
    counter = JournalStore.open(url=url)  # one store for the row counts of every case
    yield {"home": home, "env": env, "root": root, "url": url, "backend": request.param, "counter": counter}
    counter.close()
    if admin is not None:
        drop_pg_database(admin, url)
        admin.dispose()


LONG = "x" * 300 + ".md"
# (id, argv, extra environment, words the one-line message must contain)
CASES: list[tuple[str, list, dict, list[str]]] = [
    # run names
    ("name ../x", ["train", "--name", "../x"], {}, ["invalid run name"]),
    ("name a/b", ["train", "--name", "a/b"], {}, ["invalid run name"]),
    ("name empty", ["train", "--name", ""], {}, ["invalid run name"]),
    ("name spaces", ["train", "--name", "my run"], {}, ["invalid run name"]),
    ("name 101 chars", ["train", "--name", "A" * 101], {}, ["invalid run name"]),
    ("name quotes", ["train", "--name", "x'; DROP TABLE runs;--"], {}, ["invalid run name"]),
    ("name markup", ["train", "--name", "[/bold]"], {}, ["invalid run name"]),
    ("name not UTF-8", ["train", "--name", b"caf\xe9"], {}, ["not valid UTF-8"]),
    ("no name", ["train", "--epochs", "1"], {}, ["needs a name"]),
    # run references
    ("unknown run", ["journal", "show", "NOPE_NOT_HERE"], {}, ["NOPE_NOT_HERE"]),
    ("ambiguous run", ["journal", "show", "26-11-28/23"], {}, ["ambiguous"]),
    ("empty run ref", ["journal", "show", ""], {}, ["empty run reference"]),
    ("blank run ref", ["journal", "show", "   "], {}, ["empty run reference"]),
    ("overflowing id", ["journal", "show", "9" * 30], {}, ["no run matches"]),
    ("id 2**63", ["journal", "show", str(2**63)], {}, ["no run matches"]),
    ("superscript digit", ["journal", "show", "²"], {}, ["no run matches"]),
    ("arabic-indic 3 is not run 3", ["journal", "show", "٣"], {}, ["no run matches"]),
    ("fullwidth 1 is not run 1", ["journal", "show", "１"], {}, ["no run matches"]),
    ("ref not UTF-8", ["journal", "show", b"\xff"], {}, ["not valid UTF-8"]),
    ("unknown run resume", ["resume", "NOPE_NOT_HERE"], {}, ["NOPE_NOT_HERE"]),
    ("overflowing id resume", ["resume", "9" * 30], {}, ["no run matches"]),
    ("run without checkpoint resume", ["resume", "A1"], {}, ["no checkpoint"]),
    ("unknown run compare", ["compare", "A1", "NOPE_NOT_HERE"], {}, ["NOPE_NOT_HERE"]),
    ("compare one run", ["compare", "A1"], {}, ["at least two runs"]),
    ("unknown run note", ["journal", "note", "NOPE_NOT_HERE", "text"], {}, ["NOPE_NOT_HERE"]),
    ("note without text", ["journal", "note", "A1", "   "], {}, ["needs some text"]),
    ("note three args", ["journal", "note", "A1", "x", "y"], {}, ["takes [RUN] TEXT"]),
    ("note not UTF-8", ["journal", "note", b"caf\xe9 ok"], {}, ["not valid UTF-8"]),
    # listing options
    ("since overflow", ["journal", "--since", "99999999d"], {}, ["--since"]),
    ("since year 0", ["journal", "--since", "0000-01-01"], {}, ["--since"]),
    ("since month 13", ["journal", "--since", "2026-13-01"], {}, ["--since"]),
    ("since words", ["journal", "--since", "yesterday"], {}, ["--since"]),
    ("since negative", ["journal", "--since", "-5d"], {}, ["--since"]),
    ("since superscript", ["journal", "--since", "²d"], {}, ["--since"]),
    ("limit negative", ["journal", "--limit", "-1"], {}, ["--limit"]),
    ("limit overflow", ["journal", "--limit", "9" * 30], {}, ["--limit"]),
    ("limit not a number", ["journal", "--limit", "ten"], {}, ["--limit"]),
    ("status unknown", ["journal", "--status", "finished"], {}, ["--status"]),
    ("name filter invalid", ["journal", "--name", "a b"], {}, ["invalid run name"]),
    ("unknown command", ["fly"], {}, ["No such command"]),
    ("unknown option", ["journal", "--colour"], {}, ["No such option"]),
    # export
    ("export the journal", ["journal", "export", "{home}/fastpose.db"], {}, ["refusing", "journal"]),
    ("export the WAL", ["journal", "export", "{home}/fastpose.db-wal"], {}, ["refusing"]),
    ("export the shm", ["journal", "export", "{home}/fastpose.db-shm"], {}, ["refusing"]),
    ("export the lock", ["journal", "export", "{home}/fastpose.db.lock"], {}, ["refusing"]),
    ("export a backup", ["journal", "export", "{home}/fastpose.db.bak-20261128"], {}, ["refusing"]),
    ("export into runs", ["journal", "export", "{home}/runs/x.md"], {}, ["export"]),
    ("export a directory", ["journal", "export", "{root}/a_dir"], {}, ["directory"]),
    ("export a symlink", ["journal", "export", "{root}/link.md"], {}, ["symbolic link"]),
    ("export a FIFO", ["journal", "export", "{root}/fifo.md"], {}, ["not a regular file"]),
    ("export a device", ["journal", "export", "/dev/null"], {}, ["not a regular file"]),
    ("export existing file", ["journal", "export", "{root}/existing.md"], {}, ["exists", "--force"]),
    ("export under /proc", ["journal", "export", "/proc/self/x.md"], {}, ["/proc"]),
    ("export name too long", ["journal", "export", "{root}/" + LONG], {}, ["too long"]),
    ("export missing directory", ["journal", "export", "{root}/missing/x.md"], {}, ["does not exist"]),
    ("export path not UTF-8", ["journal", "export", b"caf\xe9.md"], {}, ["not valid UTF-8"]),
    # compare --plot
    ("plot unknown extension", ["compare", "A1", "B1", "--plot", "{root}/curves.xyz"], {}, ["--plot", ".png"]),
    ("plot no extension", ["compare", "A1", "B1", "--plot", "{root}/curves"], {}, ["--plot"]),
    ("plot a directory", ["compare", "A1", "B1", "--plot", "{root}/a_dir.png"], {"MKDIR": "a_dir.png"}, ["directory"]),
    ("plot missing directory", ["compare", "A1", "B1", "--plot", "{root}/missing/c.png"], {}, ["does not exist"]),
    ("plot a symlink", ["compare", "A1", "B1", "--plot", "{root}/link.png"], {"LINK": "link.png"}, ["not a regular"]),
    # TOML configs
    ("malformed TOML", ["train", "--name", "X", "--config", "{root}/bad.toml"], {}, ["malformed TOML", "line 3"]),
    ("unknown TOML key", ["train", "--name", "X", "--config", "{root}/unknown.toml"], {}, ["unknown config key", "train.epoch"]),
    ("lr a string", ["train", "--name", "X", "--config", "{root}/lr_str.toml"], {}, ["train.lr", "lr_str.toml"]),
    ("weights an int", ["train", "--name", "X", "--config", "{root}/weights_int.toml"], {}, ["model.weights", "weights_int.toml"]),
    ("eps a list", ["train", "--name", "X", "--config", "{root}/eps_list.toml"], {}, ["loss.eps", "eps_list.toml"]),
    ("epochs a float", ["train", "--name", "X", "--config", "{root}/epochs_float.toml"], {}, ["train.epochs"]),
    ("lr nan in TOML", ["train", "--name", "X", "--config", "{root}/lr_nan.toml"], {}, ["train.lr", "finite"]),
    ("lr inf in TOML", ["train", "--name", "X", "--config", "{root}/lr_inf.toml"], {}, ["train.lr", "finite"]),
    ("TOML not UTF-8", ["train", "--name", "X", "--config", "{root}/latin1.toml"], {}, ["not UTF-8", "latin1.toml"]),
    ("accelerator an int", ["train", "--name", "X", "--config", "{root}/accel_int.toml"], {}, ["train.accelerator"]),
    ("image size a bool", ["train", "--name", "X", "--config", "{root}/size_bool.toml"], {}, ["data.image_size"]),
    ("image size a list", ["train", "--name", "X", "--config", "{root}/size_list.toml"], {}, ["data.image_size"]),
    ("image size text off 32", ["train", "--name", "X", "--config", "{root}/size_text.toml"], {},
     ["data.image_size", "640x481", "size_text.toml"]),
    ("section a scalar", ["train", "--name", "X", "--config", "{root}/section_scalar.toml"], {}, ["must be a table"]),
    ("name an int", ["train", "--config", "{root}/name_int.toml"], {}, ["'name'"]),
    ("unknown section", ["train", "--name", "X", "--config", "{root}/unknown_section.toml"], {}, ["optimizer"]),
    ("devices an int", ["train", "--name", "X", "--config", "{root}/devices_int.toml"], {}, ["train.devices"]),
    ("progress a string", ["train", "--name", "X", "--config", "{root}/progress_str.toml"], {}, ["train.progress_bar"]),
    ("data root a list", ["train", "--name", "X", "--config", "{root}/root_list.toml"], {}, ["data.data_root"]),
    ("config missing", ["train", "--name", "X", "--config", "{root}/nope.toml"], {}, ["nope.toml"]),
    ("config a directory", ["train", "--name", "X", "--config", "{root}/a_dir"], {}, ["a_dir"]),
    # option values
    ("unknown loss", ["train", "--name", "X", "--loss", "l1"], {}, ["unknown loss", "qloss"]),
    ("loss unfit for rotation", ["train", "--name", "X", "--rotation", "6d", "--loss", "qloss"], {},
     ["--loss qloss does not fit --rotation 6d", "geodesic | chordal"]),
    ("unknown backbone", ["train", "--name", "X", "--backbone", "vgg16"], {}, ["unknown backbone", "resnet18"]),
    ("unknown dataset", ["train", "--name", "X", "--dataset", "coco"], {}, ["unknown dataset", "synthetic"]),
    ("unknown render device", ["train", "--name", "X", "--render-device", "cuda"], {},
     ["unknown render-device", "accelerator"]),
    ("missing data root", ["train", "--name", "X", "--dataset", "nocs"], {}, ["--data-root"]),
    ("data root not a dir", ["train", "--name", "X", "--dataset", "nocs", "--data-root", "/nonexistent/nocs"], {},
     ["/nonexistent/nocs"]),
    ("weights for another architecture", ["train", "--name", "X", "--weights", "{root}/resnet50-imagenet.pth"], {},
     ["weights"]),
    ("weights missing", ["train", "--name", "X", "--weights", "{root}/nope.pth"], {}, ["--weights"]),
    ("epochs 0", ["train", "--name", "X", "--epochs", "0"], {}, ["--epochs"]),
    ("epochs negative", ["train", "--name", "X", "--epochs", "-3"], {}, ["--epochs"]),
    ("epochs overflow", ["train", "--name", "X", "--epochs", "9" * 30], {}, ["train.epochs"]),
    ("negative train size", ["train", "--name", "X", "--train-size", "-1"], {}, ["--train-size"]),
    ("negative batch size", ["train", "--name", "X", "--batch-size", "-8"], {}, ["--batch-size"]),
    ("image size 33", ["train", "--name", "X", "--image-size", "33"], {}, ["--image-size"]),
    # rectangles: WIDTHxHEIGHT, each side a multiple of 32 from 32 to 4096
    ("image size 100x80", ["train", "--name", "X", "--image-size", "100x80"], {}, ["--image-size", "multiples of 32", "640x480"]),
    ("image size 0x480", ["train", "--name", "X", "--image-size", "0x480"], {}, ["--image-size", "WIDTHxHEIGHT"]),
    ("image size 640x", ["train", "--name", "X", "--image-size", "640x"], {}, ["--image-size", "WIDTHxHEIGHT"]),
    ("image size 640x480x3", ["train", "--name", "X", "--image-size", "640x480x3"], {}, ["--image-size", "WIDTHxHEIGHT"]),
    ("image size -640x480", ["train", "--name", "X", "--image-size", "-640x480"], {}, ["--image-size", "WIDTHxHEIGHT"]),
    ("image size 640x8192", ["train", "--name", "X", "--image-size", "640x8192"], {}, ["--image-size", "32 to 4096"]),
    ("image size 8192x480", ["train", "--name", "X", "--image-size", "8192x480"], {}, ["--image-size", "32 to 4096"]),
    ("image size words", ["train", "--name", "X", "--image-size", "vga"], {}, ["--image-size", "WIDTHxHEIGHT"]),
    ("unknown fit", ["train", "--name", "X", "--fit", "stretch"], {}, ["unknown fit", "letterbox"]),
    ("eval split a path", ["eval", "A1", "--split", "../A1"], {}, ["unknown split", "NOCS split folder"]),
    ("eval synthetic split unknown", ["eval", "A1", "--dataset", "synthetic", "--split", "real_test"], {},
     ["unknown split 'real_test'"]),
    ("lr nan", ["train", "--name", "X", "--lr", "nan"], {}, ["train.lr", "finite"]),
    ("lr inf", ["train", "--name", "X", "--lr", "inf"], {}, ["train.lr", "finite"]),
    ("lr -inf", ["train", "--name", "X", "--lr", "-inf"], {}, ["train.lr", "finite"]),
    ("lr zero", ["train", "--name", "X", "--lr", "0"], {}, ["--lr"]),
    ("lr not a number", ["train", "--name", "X", "--lr", "fast"], {}, ["--lr"]),
    ("eps nan", ["train", "--name", "X", "--eps", "nan"], {}, ["loss.eps", "finite"]),
    ("eps negative", ["train", "--name", "X", "--eps", "-1"], {}, ["--eps"]),
    ("rot weight inf", ["train", "--name", "X", "--rot-weight", "inf"], {}, ["loss.rot_weight", "finite"]),
    ("mask weight nan", ["train", "--name", "X", "--mask-weight", "nan"], {}, ["loss.mask_weight", "finite"]),
    ("weight decay inf", ["train", "--name", "X", "--weight-decay", "inf"], {}, ["train.weight_decay", "finite"]),
    ("limit train nan", ["train", "--name", "X", "--limit-train-batches", "nan"], {}, ["limit_train_batches"]),
    ("limit val inf", ["train", "--name", "X", "--limit-val-batches", "inf"], {}, ["limit_val_batches"]),
    ("devices words", ["train", "--name", "X", "--devices", "abc"], {}, ["--devices"]),
    ("devices bad list", ["train", "--name", "X", "--devices", "0,x"], {}, ["--devices"]),
    ("accelerator markup", ["train", "--name", "X", "--accelerator", "[/x]"], {}, ["--accelerator"]),
    ("strategy markup", ["train", "--name", "X", "--strategy", "[/x]"], {}, ["--strategy"]),
    ("precision 8-bit", ["train", "--name", "X", "--precision", "8-bit"], {}, ["unknown precision"]),
    ("num nodes 0", ["train", "--name", "X", "--num-nodes", "0"], {}, ["--num-nodes"]),
    ("accelerator Lightning refuses", ["train", "--name", "X", "--accelerator", "tpu9", *TINY], {}, ["Lightning refuses"]),
    ("strategy Lightning refuses", ["train", "--name", "X", "--strategy", "ddp_bogus", *TINY], {}, ["Lightning refuses"]),
    ("gpu without a GPU", ["train", "--name", "X", "--accelerator", "gpu", *TINY], {"NEEDS_NO_GPU": "1"}, ["Lightning refuses"]),
    ("resume epochs 0", ["resume", "A1", "--epochs", "0"], {}, ["A1"]),
    # studies: sweeps, tags, journal filters, group comparisons
    ("sweep empty axis", ["sweep", "{root}/sweep_empty_axis.toml"], {}, ["axis 'train.seed' is empty"]),
    ("sweep unknown axis", ["sweep", "{root}/sweep_unknown_axis.toml"], {}, ["loss.nme"]),
    ("sweep jobs 0", ["sweep", "{root}/sweep_unknown_axis.toml", "--jobs", "0"], {}, ["--jobs"]),
    ("sweep unknown launcher", ["sweep", "{root}/sweep_unknown_axis.toml", "--launcher", "pbs"], {}, ["--launcher"]),
    ("sweep unknown resume", ["sweep", "--resume", "nope"], {}, ["no sweep 'nope'"]),
    ("sweep no file", ["sweep"], {}, ["--resume"]),
    ("tag with a space", ["journal", "tag", "A1", "a b"], {}, ["invalid tag"]),
    ("train tag markup", ["train", "--name", "X", "--tag", "[/bold]"], {}, ["invalid tag"]),
    ("where unknown key", ["journal", "--where", "train.sed=1"], {}, ["unknown config key"]),
    ("where no value", ["journal", "--where", "train.seed"], {}, ["KEY=VALUE"]),
    ("journal unknown sweep", ["journal", "--sweep", "nope"], {}, ["no sweep 'nope'"]),
    ("compare unknown sweep", ["compare", "--sweep", "nope"], {}, ["no sweep 'nope'"]),
    ("compare by unknown key", ["compare", "A1", "B1", "--by", "loss.nam"], {}, ["unknown config key"]),
    ("compare a run with itself", ["compare", "A1", "A1"], {}, ["'A1' is given twice", "different runs"]),
    ("compare csv and json", ["compare", "A1", "B1", "--csv", "--json"], {}, ["one of --json and --csv"]),
    ("compare by a run twice", ["compare", "A1", "B1", "A1", "--by", "loss.name"], {}, ["'A1' is given twice"]),
    ("submitit cluster unknown", ["journal"], {"FASTPOSE_SUBMITIT_CLUSTER": "pbs"}, ["$FASTPOSE_SUBMITIT_CLUSTER"]),
    ("ddp spec wait words", ["journal"], {"FASTPOSE_DDP_SPEC_WAIT_S": "soon"}, ["$FASTPOSE_DDP_SPEC_WAIT_S"]),
    # numbers: every integer config key has one accepted range (config.INT_RANGES), whatever sets it
    ("seed -1", ["train", "--name", "X", "--seed", "-1"], {}, ["--seed", "from 0 to 4294967295", "train.seed"]),
    ("seed 2**32", ["train", "--name", "X", "--seed", "4294967296"], {}, ["--seed", "4294967295"]),
    ("data seed -1", ["train", "--name", "X", "--data-seed", "-1"], {}, ["--data-seed", "data.seed"]),
    ("data seed 2**32", ["train", "--name", "X", "--data-seed", "4294967296"], {}, ["--data-seed"]),
    ("seed -1 in TOML", ["train", "--name", "X", "--config", "{root}/seed_neg.toml"], {}, ["train.seed"]),
    ("data seed 2**32 in TOML", ["train", "--name", "X", "--config", "{root}/data_seed_big.toml"], {},
     ["data.seed"]),
    ("seed -1 from a stored config", ["train", "--name", "X", "--from", "BADSEED"], {}, ["train.seed"]),
    ("seed -1 in a sweep cell", ["sweep", "{root}/sweep_seed_neg.toml"], {}, ["train.seed", "got -1"]),
    ("batch size over the limit in TOML", ["train", "--name", "X", "--config", "{root}/batch_big.toml"], {},
     ["--batch-size", "65536"]),
    ("epochs over the limit", ["train", "--name", "X", "--epochs", "1000001"], {}, ["--epochs", "1000000"]),
    ("image size 8192", ["train", "--name", "X", "--image-size", "8192"], {}, ["--image-size", "4096"]),
    ("workers 100000", ["train", "--name", "X", "--num-workers", "100000"], {}, ["--num-workers", "256"]),
    ("log images 65", ["train", "--name", "X", "--log-images", "65"], {}, ["--log-images"]),
    ("max objects 0", ["train", "--name", "X", "--max-objects", "0"], {}, ["--max-objects"]),
    # files a user names: regular files only, size-capped, TOML nested at most 16 levels
    ("config /dev/zero", ["train", "--name", "X", "--config", "/dev/zero"], {}, ["/dev/zero", "device"]),
    ("config /dev/urandom", ["train", "--name", "X", "--config", "/dev/urandom"], {}, ["/dev/urandom", "device"]),
    ("config a FIFO", ["train", "--name", "X", "--config", "{root}/fifo.toml"], {}, ["fifo.toml", "FIFO"]),
    ("config over 1 MiB", ["train", "--name", "X", "--config", "{root}/big.toml"], {}, ["big.toml", "1.0 MiB"]),
    ("config nested arrays", ["train", "--name", "X", "--config", "{root}/deep_arrays.toml"], {},
     ["deep_arrays.toml", "16 levels"]),
    ("config nested inline tables", ["train", "--name", "X", "--config", "{root}/deep_tables.toml"], {},
     ["16 levels"]),
    ("config nested dotted keys", ["train", "--name", "X", "--config", "{root}/deep_dotted.toml"], {},
     ["16 levels"]),
    ("config 17 levels", ["train", "--name", "X", "--config", "{root}/deep_17.toml"], {}, ["16 levels"]),
    ("print-config from a FIFO", ["train", "--print-config", "--config", "{root}/fifo.toml"], {}, ["FIFO"]),
    ("sweep /dev/zero", ["sweep", "/dev/zero"], {}, ["sweep file", "device"]),
    ("sweep a FIFO", ["sweep", "{root}/fifo.toml", "--dry-run"], {}, ["sweep file", "FIFO"]),
    ("sweep nested", ["sweep", "{root}/sweep_deep.toml"], {}, ["sweep file", "16 levels"]),
    ("sweep a directory", ["sweep", "{root}/a_dir"], {}, ["sweep file", "directory"]),
    # images: --max-pixels (from the header, before decoding), regular files, readable
    ("image of 400 megapixels", ["predict", "A1", "{root}/big.png"], {}, ["400.0 megapixels", "--max-pixels"]),
    ("image over a lowered limit", ["predict", "A1", "{root}/small.png", "--max-pixels", "1000"], {},
     ["--max-pixels 1200"]),
    ("max pixels 0", ["predict", "A1", "{root}/small.png", "--max-pixels", "0"], {}, ["--max-pixels"]),
    ("max pixels over the ceiling", ["predict", "A1", "{root}/small.png", "--max-pixels", "10000000000"], {},
     ["--max-pixels"]),
    ("image a FIFO", ["predict", "A1", "{root}/fifo.png"], {}, ["fifo.png", "FIFO"]),
    ("image /dev/zero", ["predict", "A1", "/dev/zero"], {}, ["device"]),
    ("image a directory", ["predict", "A1", "{root}/a_dir"], {}, ["directory"]),
    ("image missing", ["predict", "A1", "{root}/nope.png"], {}, ["nope.png"]),
    ("image not an image", ["predict", "A1", "{root}/existing.md"], {}, ["cannot read image"]),
    ("image truncated", ["predict", "A1", "{root}/truncated.png"], {}, ["cannot read image", "truncated.png"]),
    # intrinsics: finite, but no camera the float32 pipeline can use
    ("intrinsics overflow", ["predict", "A1", "{root}/small.png", "--intrinsics", "1e308,1e308,1,1"], {},
     ["--intrinsics", "fx and fy"]),
    ("intrinsics singular", ["predict", "A1", "{root}/small.png", "--intrinsics", "1e-308,1e-308,20,15"], {},
     ["--intrinsics", "fx and fy"]),
    ("intrinsics one focal tiny", ["predict", "A1", "{root}/small.png", "--intrinsics", "50,1e-9,20,15"], {},
     ["--intrinsics"]),
    ("intrinsics centre far away", ["predict", "A1", "{root}/small.png", "--intrinsics", "50,50,1e308,1e308"], {},
     ["principal point"]),
    ("intrinsics centre far left", ["predict", "A1", "{root}/small.png", "--intrinsics", "50,50,-401,15"], {},
     ["principal point"]),
    # environment
    ("lost-after words", ["journal"], {"FASTPOSE_LOST_AFTER": "abc"}, ["$FASTPOSE_LOST_AFTER"]),
    ("lost-after nan", ["journal"], {"FASTPOSE_LOST_AFTER": "nan"}, ["$FASTPOSE_LOST_AFTER"]),
    ("lost-after inf", ["journal"], {"FASTPOSE_LOST_AFTER": "inf"}, ["$FASTPOSE_LOST_AFTER"]),
    ("lost-after negative", ["journal"], {"FASTPOSE_LOST_AFTER": "-1"}, ["$FASTPOSE_LOST_AFTER"]),
    ("heartbeat zero", ["journal"], {"FASTPOSE_HEARTBEAT_S": "0"}, ["$FASTPOSE_HEARTBEAT_S"]),
    ("fault syntax", ["journal"], {"FASTPOSE_FAULT": "explode"}, ["FASTPOSE_FAULT"]),
    ("journal URL scheme", ["journal"], {"FASTPOSE_JOURNAL_URL": "mysql://x@y/z"}, ["$FASTPOSE_JOURNAL_URL"]),
    ("journal URL empty", ["journal"], {"FASTPOSE_JOURNAL_URL": ""}, ["$FASTPOSE_JOURNAL_URL"]),
    ("journal URL unparsable", ["journal"], {"FASTPOSE_JOURNAL_URL": "postgresql+psycopg://[bad"}, ["journal"]),
    ("home is a file", ["journal"], {"FASTPOSE_HOME": "{root}/existing.md"}, ["$FASTPOSE_HOME", "not a directory"]),
    ("home is a file, note", ["journal", "note", "x"], {"FASTPOSE_HOME": "{root}/existing.md"}, ["$FASTPOSE_HOME"]),
    ("env not UTF-8", ["journal"], {"FASTPOSE_LOST_AFTER": b"\xff"}, ["not valid UTF-8"]),
]


@pytest.mark.parametrize("case_id,argv,extra_env,words", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_changes_nothing(
    populated: dict, case_id: str, argv: list, extra_env: dict, words: list[str]
) -> None:
    root, home = populated["root"], populated["home"]
    fill = {"root": str(root), "home": str(home)}
    argv = [a.format(**fill) if isinstance(a, str) else a for a in argv]
    env = dict(populated["env"])
    made = []
    for key, value in extra_env.items():
        if key == "MKDIR":
            (root / value).mkdir(exist_ok=True)
            made.append(root / value)
        elif key == "LINK":
            (root / value).unlink(missing_ok=True)
            (root / value).symlink_to(root / "existing.md")
            made.append(root / value)
        elif key == "NEEDS_NO_GPU":
            import torch

            if torch.cuda.is_available():
                pytest.skip("this machine has a GPU")
        else:
            env[key] = value.format(**fill) if isinstance(value, str) else value
    env_b = {os.fsencode(k): v if isinstance(v, bytes) else os.fsencode(v) for k, v in env.items()}
    counts_before = populated["counter"].counts()
    tree_before = _tree(root)

    proc = subprocess.run([sys.executable, "-m", "fastpose", *argv], env=env_b, cwd=root, capture_output=True,
                          timeout=TIMEOUT)
    stderr = proc.stderr.decode("utf-8", "replace")

    assert proc.returncode == 2, (case_id, proc.returncode, stderr[-2000:])
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"{case_id}: expected one line, got:\n{stderr}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in stderr and "\x1b" not in stderr
    for word in words:
        assert word in lines[0], f"{case_id}: {word!r} not in {lines[0]!r}"
    assert populated["counter"].counts() == counts_before, case_id
    assert _tree(root) == tree_before, f"{case_id} changed files on disk"
    for path in made:
        path.rmdir() if path.is_dir() and not path.is_symlink() else path.unlink()


def test_the_table_covers_at_least_80_cases() -> None:
    assert len(CASES) >= 80 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.slow
def test_unwritable_run_directory_is_a_clear_crash(fp_home: Path, tmp_path: Path) -> None:
    """A full disk, simulated by a runs/ folder that cannot be written: the run is `crashed`, naming the error.

    As a normal user runs/ is made read-only; root writes through permissions, so there runs/ is a plain file
    (mkdir under it fails the same way a full or read-only disk makes it fail).
    """
    env = dict(os.environ, FASTPOSE_HOME=str(fp_home), COLUMNS="200")
    env.pop("FASTPOSE_JOURNAL_URL", None)
    subprocess.run([sys.executable, "-m", "fastpose", "journal", "note", "before the full disk"],
                   env=env, cwd=tmp_path, check=True, capture_output=True, timeout=TIMEOUT)
    runs = fp_home / "runs"
    as_root = os.geteuid() == 0
    if as_root:
        runs.write_text("not a directory")
    else:
        runs.mkdir(exist_ok=True)
        runs.chmod(0o555)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "fastpose", "train", "--name", "FULLDISK", "--epochs", "1",
             "--train-size", "8", "--val-size", "4", "--batch-size", "4", "--image-size", "32", "--no-progress"],
            env=env, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT,
        )
    finally:
        if not as_root:
            runs.chmod(0o755)
    assert proc.returncode not in (0, 2), proc.stderr[-2000:]
    assert not proc.stderr.strip().splitlines()[-1].startswith("Traceback")
    store = JournalStore.open(url=f"sqlite:///{fp_home / 'fastpose.db'}")
    try:
        run = store.resolve("FULLDISK")
        assert run.status == "crashed", run
        assert run.error_type and run.error_message, run
        assert any(word in run.error_message for word in ("Not a directory", "Permission denied", "runs")), run
    finally:
        store.close()


def _int_range_cases() -> list[tuple[str, str, str, str]]:
    """(key, option, how it is given, value) for each end of each integer key's range, one step outside:
    below the lowest through the option, above the highest through a --config file."""
    from fastpose.config import INT_RANGES

    out = []
    for key, (option, low, high) in INT_RANGES.items():
        out += [(key, option, "option", str(low - 1)), (key, option, "toml", str(high + 1))]
    return out


@pytest.mark.parametrize("key,option,given,value", _int_range_cases(), ids=lambda v: str(v))
def test_every_integer_key_out_of_range_is_refused_before_anything_exists(
    tmp_path: Path, key: str, option: str, given: str, value: str
) -> None:
    """The class, not the examples: each end of every key of config.INT_RANGES, through the real CLI; the
    journal home is never created (no run row, no run directory)."""
    home = tmp_path / "home"
    env = dict(os.environ, FASTPOSE_HOME=str(home), COLUMNS="200")
    env.pop("FASTPOSE_JOURNAL_URL", None)
    env.pop("FASTPOSE_DEBUG", None)
    if given == "option":
        argv = ["train", "--name", "X", option, value]
    else:
        section, leaf = key.split(".")
        (tmp_path / "c.toml").write_text(f"[{section}]\n{leaf} = {value}\n")
        argv = ["train", "--name", "X", "--config", str(tmp_path / "c.toml")]
    proc = subprocess.run([sys.executable, "-m", "fastpose", *argv], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=TIMEOUT)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    refused = f"{option} sides must be from" if key == "data.image_size" else f"{option} must be an integer from"
    assert lines[0].startswith(f"error: {refused}") and f"({key}), got {value}" in lines[0]
    assert not home.exists()


# Every argument that the option parser turns into a path (export's PATH, --config, the sweep file, --plot),
# and plain text arguments. A NUL cannot come through a real command line (argv is C strings), so this runs
# fastpose.cli.run in-process, as the fuzz test does.
NUL_CASES = [
    ["journal", "export", "a\x00b.md"],
    ["journal", "export", "\x00"],
    ["train", "--name", "X", "--config", "c\x00.toml"],
    ["sweep", "s\x00.toml"],
    ["compare", "A", "B", "--plot", "p\x00.png"],
    ["journal", "note", "a\x00b"],
    ["predict", "A", "x\x00.png"],
]


@pytest.mark.parametrize("argv", NUL_CASES, ids=lambda a: " ".join(a).replace("\x00", "NUL"))
def test_a_nul_character_in_any_argument_is_one_line_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, argv: list[str]
) -> None:
    from fastpose.cli import run

    monkeypatch.setenv("FASTPOSE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FASTPOSE_JOURNAL_URL", raising=False)
    monkeypatch.delenv("FASTPOSE_DEBUG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert run(argv) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: argument ") and "NUL character" in lines[0], err
    assert "\\x00" in lines[0]  # shown, never written raw
    assert list(tmp_path.iterdir()) == []
