"""``fastpose render``: rendered test images with their labels (JSON), to try ``fastpose predict`` on."""

from typing import Annotated

import typer

from fastpose.cli.app import app, opt


@app.command()
def render(
    out: Annotated[str, opt("Folder to write the images and their labels into (created if needed).")],
    n: Annotated[int, opt("How many images.")] = 4,
    seed: Annotated[int, opt("Scene seed: image i is sample i of a synthetic run with --data-seed SEED.")] = 0,
    image_size: Annotated[str, opt("WIDTHxHEIGHT, or one number for a square.")] = "640x480",
    rotations: Annotated[str, opt("Object poses: tabletop (the demo's) | so3.")] = "tabletop",
    max_objects: Annotated[int, opt("Objects per image at most.")] = 3,
    force: Annotated[bool, typer.Option("--force", help="Replace images and labels of the same names.")] = False,
) -> None:
    """Rendered synthetic scenes as PNG files, each with its ground truth as JSON (class, pose, size, camera)."""
    from fastpose.text import visible
    from fastpose.training.render import render_images

    paths = render_images(out, n=n, seed=seed, image_size=image_size, rotations=rotations,
                          max_objects=max_objects, force=force)
    import json

    labels = json.loads(paths[0].with_suffix(".json").read_text())
    print(f"wrote {len(paths)} images ({labels['width']}x{labels['height']}, seed {seed}) and their labels "
          f"(.json beside each) to {visible(out)}")
    print(f"try: fastpose predict RUN {visible(paths[0])} --intrinsics {labels['intrinsics']}")
