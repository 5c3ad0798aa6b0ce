"""``fastpose eval`` and ``fastpose predict``: a run's checkpoint on a split (the NOCS table, journaled), or on
image files (poses and overlays). Torch is imported inside the command bodies."""

from typing import Annotated, Optional

import typer

from fastpose.cli.app import app, opt
from fastpose.cli.tables import latex_option, markdown_option, print_table, table_format
from fastpose.training.predict import DEFAULT_MIN_SCORE  # torch-free at module level


@app.command("eval")
def eval_command(
    run: Annotated[str, typer.Argument(help="The run: id, label, label prefix or NAME (newest).")],
    checkpoint: Annotated[str, opt("best (the monitor's best), last, or a checkpoint file.")] = "best",
    split: Annotated[str, opt("val (the run's validation set) | test (held out); NOCS: a split folder under the data root (val: CAMERA25, real_test: REAL275).")] = "val",
    dataset: Annotated[Optional[str], opt("synthetic | nocs (default: the run's).")] = None,
    data_root: Annotated[Optional[str], opt("NOCS dataset folder (default: the run's).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the evaluation as JSON.")] = False,
    latex: Annotated[bool, latex_option()] = False,
    markdown: Annotated[bool, markdown_option()] = False,
) -> None:
    """NOCS-format evaluation of a checkpoint on a split: table per class, PR curves (PNG), journaled."""
    from fastpose.training.evaluate import evaluate_run

    table = table_format(latex, markdown, json=json_out)
    done = evaluate_run(run, checkpoint=checkpoint, split=split, dataset=dataset, data_root=data_root)
    if table is not None:
        from fastpose.screens.evaluation import evaluation_table
        from fastpose.screens.tables import evaluation_table as paper_table

        print_table(table, paper_table(evaluation_table(done.record.metrics, done.title())))
        return
    if json_out:
        from fastpose.text import strict_json

        print(strict_json(done.to_json(), indent=2))
        return
    from fastpose.screens.evaluation import evaluation_table
    from fastpose.screens.terminal.console import safe_console
    from fastpose.screens.terminal.evaluation import render_table

    console = safe_console()
    render_table(evaluation_table(done.record.metrics, done.title()), console)
    if done.ground_truth_line() is not None:
        console.print(done.ground_truth_line(), markup=False, highlight=False)
    from fastpose.screens.terminal.console import lit, print_broken

    print_broken(console, lit(f"precision-recall curves: {done.record.plot_path}"))
    console.print(f"journaled as evaluation #{done.record.id}", markup=False, highlight=False)


@app.command()
def predict(
    run: Annotated[str, typer.Argument(help="The run: id, label, label prefix or NAME (newest).")],
    images: Annotated[list[str], typer.Argument(help="Image files (any size; the whole image is letterboxed to the run's input size).")],
    intrinsics: Annotated[Optional[str], opt("fx,fy,cx,cy of the original images (OpenCV convention) [default: assumed: f = the shorter side, centred; a warning says so].")] = None,
    min_score: Annotated[Optional[float], opt(f"Report detections scoring at least this (mean class probability over the object's pixels) [default: {DEFAULT_MIN_SCORE}].")] = None,
    out: Annotated[Optional[str], opt("Folder for the overlay PNGs (default: <run dir>/predictions).")] = None,
    checkpoint: Annotated[str, opt("best, last, or a checkpoint file.")] = "best",
    json_out: Annotated[bool, typer.Option("--json", help="Print the detections as JSON.")] = False,
    max_pixels: Annotated[Optional[int], opt("Refuse images with more pixels than this (read from the file's header) [default: 100000000].")] = None,
) -> None:
    """Detected objects per image: class, score, quaternion (x, y, z, w), translation and size (m); overlays."""
    from fastpose.training.predict import predict_images

    predict_images(run, images, intrinsics=intrinsics, out=out, checkpoint=checkpoint, json_out=json_out,
                   **({} if max_pixels is None else {"max_pixels": max_pixels}),
                   **({} if min_score is None else {"min_score": min_score}))
