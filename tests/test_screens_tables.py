"""Tables for a paper (``--latex``, ``--markdown``) from the real CLI on real journals; the LaTeX is compiled
with pdflatex (Debian's texlive-latex-base + texlive-latex-recommended), and what the PDF shows is read back.

The compile test skips only where pdflatex is absent, and never under ``FASTPOSE_REQUIRE_LATEX=1`` (CI).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastpose.journal.store import JournalStore, MetricPoint

GOLDEN = Path(__file__).parent / "golden"
# Every character LaTeX or Markdown could read as markup, accents, and a control character.
NASTY = "a_b %c &d #e $f {g} ~h ^i \\j <k> |l *m* `n` [o](p) é"


def fastpose(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FASTPOSE_HOME": str(home), "COLUMNS": "200", "TZ": "UTC"}
    env.pop("FASTPOSE_JOURNAL_URL", None)
    return subprocess.run([sys.executable, "-m", "fastpose", *args], capture_output=True, text=True, env=env,
                          timeout=120)


@pytest.fixture(scope="module")
def golden(tmp_path_factory) -> Path:
    """The screens' deterministic journal (tests/golden/build_journal.py): 10 runs, sweep ls (2 x 3 seeds)."""
    home = tmp_path_factory.mktemp("tables") / "home"
    sys.path.insert(0, str(GOLDEN))
    try:
        from build_journal import build
    finally:
        sys.path.pop(0)
    build(home)
    return home


@pytest.fixture(scope="module")
def nasty(tmp_path_factory) -> Path:
    """Runs whose group values (data.data_root) and metric names hold every special character."""
    home = tmp_path_factory.mktemp("nasty") / "home"
    home.mkdir(parents=True)
    store = JournalStore.open(f"sqlite:///{home / 'fastpose.db'}")
    for i, root in enumerate([NASTY, NASTY, "plain", "plain"]):
        run = store.start_run(name=f"R{i}", label=f"26-11-0{i + 1}/10-00-R{i}-SYNTHETIC-resnet18-scratch",
                              config={"name": f"R{i}", "data": {"data_root": root}, "train": {"monitor": "val/10deg"}})
        store.log_metrics(run.id, [MetricPoint("val/10deg", 0.2 + 0.1 * i, 0, 1),
                                   MetricPoint("val/rot_err_median", 30.0 - i, 0, 1),
                                   MetricPoint(f"val/odd {NASTY}", 1.0 + i, 0, 1)])
        store.finish(run.id)
    store.close()
    return home


def tabular_rows(latex: str) -> list[list[str]]:
    body = latex.split("\\midrule\n", 1)[1].split("\\bottomrule", 1)[0]
    return [[c.strip() for c in line.removesuffix(" \\\\").split(" & ")]
            for line in body.strip().splitlines() if line != "\\midrule"]


def test_compare_latex_booktabs_bold_best_per_column_stated_precision(golden: Path) -> None:
    proc = fastpose(golden, "compare", "1", "2", "3", "--latex", "--metric", "val/miss_rate",
                    "--metric", "val/rot_err_median")
    assert proc.returncode == 0, proc.stderr
    tex = proc.stdout
    for part in ("\\begin{table}", "\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}{lrrrr}",
                 "\\caption{", "APs and rates in percent, 1 decimal"):
        assert part in tex, part
    head = tex.split("\\toprule\n", 1)[1].splitlines()[0]
    assert "10\\textdegree{} \\ensuremath{\\uparrow}" in head and "rot. err. (\\textdegree{}) \\ensuremath{\\downarrow}" in head
    rows = tabular_rows(tex)
    names = [r[0] for r in rows]
    assert names == ["AGG\\_QLOSS", "AGG\\_QLOSS\\_CONT", "MSE\\_BASELINE"]
    # the golden journal: AGG_QLOSS_CONT has the highest APs and lowest error of the three
    for col in range(1, 5):
        bold = [i for i, r in enumerate(rows) if r[col].startswith("\\textbf{")]
        values = [r[col].removeprefix("\\textbf{").removesuffix("}") for r in rows]
        assert len(bold) <= 1, rows
        if bold:
            assert bold == [1], (col, rows)
        for v in values:  # the stated precision: percent with one decimal; errors to 3 significant digits
            assert v == "--" or re.fullmatch(r"\d+\.\d+", v), v  # "--": the en dash of a missing value
    percent = [r[1].removeprefix("\\textbf{").removesuffix("}") for r in rows]
    assert all(re.fullmatch(r"\d+\.\d", v) for v in percent), percent


def test_groups_markdown_and_latex_mean_sd(golden: Path) -> None:
    md = fastpose(golden, "compare", "--sweep", "ls", "--markdown")
    assert md.returncode == 0, md.stderr
    lines = md.stdout.splitlines()
    table = [ln for ln in lines if ln.startswith("|")]
    assert table[0].startswith("| group | n |") and table[1].startswith("| :--- | ---: |")
    body = {ln.split(" | ")[0].strip("| "): ln for ln in table[2:]}
    assert set(body) == {"mse", "qloss"}
    assert re.search(r"\*\*[\d.]+ ± [\d.]+\*\*", body["qloss"])  # the better group, mean ± sd in bold
    assert " ± " in body["mse"] and "**" not in body["mse"].split(" | ")[2]
    assert any("beats" in ln or "not distinguishable" in ln for ln in lines if ln.startswith("- "))
    tex = fastpose(golden, "compare", "--sweep", "ls", "--latex")
    assert tex.returncode == 0 and "\\ensuremath{\\pm}" in tex.stdout
    by = fastpose(golden, "compare", "--by", "loss.name", "5", "6", "7", "8", "9", "10", "--markdown")
    assert by.returncode == 0 and "| qloss | 3 |" in by.stdout


def test_user_text_is_escaped_in_both_faces(nasty: Path) -> None:
    tex = fastpose(nasty, "compare", "--by", "data.data_root", "1", "2", "3", "4", "--latex").stdout
    md = fastpose(nasty, "compare", "--by", "data.data_root", "1", "2", "3", "4", "--markdown").stdout
    latex_nasty = ("a\\_b \\%c \\&d \\#e \\$f \\{g\\} \\textasciitilde{}h \\textasciicircum{}i \\textbackslash{}j "
                   "\\textless{}k\\textgreater{} \\textbar{}l *m* `n` [o](p) é")
    assert latex_nasty in tex
    md_nasty = "a\\_b %c \\&d #e \\$f {g} \\~h ^i \\\\j \\<k\\> \\|l \\*m\\* \\`n\\` \\[o\\](p) é"
    assert md_nasty in md
    # a table row in Markdown has exactly as many cells as the header: no | of the user text splits one
    rows = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert len({len(re.split(r"(?<!\\)\|", ln)) for ln in rows}) == 1


def test_bad_output_options_one_line(golden: Path) -> None:
    for args in (["compare", "1", "2", "--latex", "--markdown"], ["compare", "1", "2", "--latex", "--json"],
                 ["compare", "--sweep", "ls", "--markdown", "--csv"], ["eval", "1", "--latex", "--json"]):
        proc = fastpose(golden, *args)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: choose one of")


def test_evaluation_table_rows_and_notes() -> None:
    from fastpose.screens.evaluation import evaluation_table
    from fastpose.screens.tables import evaluation_table as paper
    from fastpose.screens.tables.markdown import to_markdown

    values = {"iou_25": 0.7634, "iou_50": 0.368, "10deg_5cm": 0.2171, "10deg_5cm/mug": 0.31, "iou_50/mug": 0.5,
              "miss_rate": 0.18, "rot_err_median": 8.987, "5deg": 0.1, "10deg": 0.336, "20deg": float("nan")}
    md = to_markdown(paper(evaluation_table(values, f"run 1 {NASTY}")))
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert table[0].startswith("| class | IoU25 ↑ |")
    assert [ln.split(" | ")[0] for ln in table[2:]] == ["| mug", "| mean"]
    assert "| mean | 76.3 | 36.8 |" in md  # percent, one decimal
    assert "Rotation-only AP (5°, 10°, 20°): 10.0 / 33.6 / –." in md
    assert "Median rotation error, matched pairs (deg): 8.99." in md


# ----------------------------------------------------------------------------- pdflatex
def _pdflatex() -> str:
    exe = shutil.which("pdflatex")
    if exe is None:
        if os.environ.get("FASTPOSE_REQUIRE_LATEX") == "1":
            pytest.fail("FASTPOSE_REQUIRE_LATEX=1 but pdflatex is not installed (texlive-latex-base, "
                        "texlive-latex-recommended)")
        pytest.skip("pdflatex is not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
    return exe


def test_the_latex_compiles_with_pdflatex_and_prints_the_text(golden: Path, nasty: Path, tmp_path: Path) -> None:
    exe = _pdflatex()
    from fastpose.screens.evaluation import evaluation_table
    from fastpose.screens.tables import evaluation_table as paper
    from fastpose.screens.tables.latex import to_latex

    tables = [
        fastpose(golden, "compare", "1", "2", "3", "--latex").stdout,
        fastpose(golden, "compare", "1", "2", "3", "--latex", "--per-class").stdout,
        fastpose(golden, "compare", "--sweep", "ls", "--latex").stdout,
        fastpose(golden, "compare", "--by", "loss.name", "5", "6", "7", "8", "9", "10", "--latex").stdout,
        fastpose(nasty, "compare", "--by", "data.data_root", "1", "2", "3", "4", "--latex").stdout,
        fastpose(nasty, "compare", "1", "2", "3", "4", "--latex").stdout,
        to_latex(paper(evaluation_table({"iou_50": 0.368, "iou_50/mug": math.nan, "10deg_5cm/can": 0.2,
                                         "miss_rate": 0.18}, f"run 1 {NASTY} \x1b[2J"))),
    ]
    assert all(t.startswith("% fastpose: needs \\usepackage{booktabs}") for t in tables), tables
    doc = ("\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=1cm,landscape]{geometry}\n"
           "\\begin{document}\n" + "\n".join(tables) + "\\end{document}\n")
    (tmp_path / "tables.tex").write_text(doc, encoding="utf-8")
    proc = subprocess.run([exe, "-interaction=nonstopmode", "-halt-on-error", "tables.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    log = (tmp_path / "tables.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    assert (tmp_path / "tables.pdf").stat().st_size > 1000
    assert "Missing character" not in log and "Undefined control sequence" not in log
    if shutil.which("pdftotext"):  # what the reader of the paper sees: the user text, literally
        subprocess.run(["pdftotext", "tables.pdf"], cwd=tmp_path, check=True)
        text = (tmp_path / "tables.txt").read_text()
        for piece in ("a_b", "%c", "&d", "#e", "$f", "{g}", "^i", "\\j", "|l", "AGG_QLOSS_CONT", "±"):
            assert piece in text, piece
