"""`digitlab predict`, `read`, `serve`, `export`, `robustness`: putting a model to work."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from digitlab.cli.options import DataDir, require
from digitlab.errors import DigitlabError
from digitlab.progress import status

Pixels = Annotated[
    str | None,
    typer.Option(
        help="A model trained elsewhere takes pixels in 1 ([0, 1]), 255 ([0, 255]) or standardized "
        "((x - 0.1307) / 0.3081) (default: detected on MNIST validation digits).",
        show_default=False,
    ),
]
Workers = Annotated[
    int | None,
    typer.Option(
        help="Processes reading the images (default: one per core, for 32 images a core and more).",
        show_default=False,
    ),
]


def export(
    source: Annotated[
        Path, typer.Argument(help="A run folder, or a model trained elsewhere: .keras, .h5 or a SavedModel folder.")
    ],
    format: Annotated[str, typer.Option("--format", help="onnx or savedmodel.")] = "onnx",
    out: Annotated[Path | None, typer.Option(help="Output path (default: beside the model).")] = None,
    pixels: Pixels = None,
    data_dir: DataDir = None,
) -> None:
    """Export a trained model to ONNX or a TensorFlow SavedModel, each checked against Keras on validation digits."""
    from digitlab.io.export import export as run_export

    notes: list[str] = []
    with status(f"exporting {source} to {format} and checking it against Keras on validation digits"):
        path = run_export(source, format, out, pixels=pixels, data_dir=data_dir, notes=notes)
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(f"wrote {path}")


def predict(
    images: Annotated[list[Path], typer.Argument(help="Image files: PNG, JPEG, BMP, GIF, WebP, ...")],
    model: Annotated[
        Path | None,
        typer.Option(
            help="Run folder, .keras or .onnx, or a model trained elsewhere: .keras, .h5, .onnx or a SavedModel "
            "folder (default: the shipped model)."
        ),
    ] = None,
    top_k: Annotated[int, typer.Option(help="How many candidates to show.")] = 3,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per image.")] = False,
    number: Annotated[bool, typer.Option("--number", help="Read a written number: several digits.")] = False,
    show: Annotated[
        Path | None,
        typer.Option(
            help="Write here, as PNG, what the model saw (NAME.28x28.png; with --number NAME.digits.png, "
            "each digit 28x28, side by side) and the image with what was read boxed (NAME.box.png)."
        ),
    ] = None,
    pixels: Pixels = None,
    workers: Workers = None,
    data_dir: DataDir = None,
) -> None:
    """Read handwritten digits from image files, prepared the way MNIST was."""

    from digitlab.read.files import read_files
    from digitlab.read.predict import predict_image

    if not 1 <= top_k <= 10:
        raise DigitlabError(f"--top-k must be between 1 and 10, got {top_k}")
    reader = _reader(model, pixels, data_dir)
    read = functools.partial(predict_image, top_k=top_k, number=number)
    for path, answer in _each(json_lines, read_files(reader, images, read, workers)):
        seen = answer.pop("image28")
        if show is not None:
            seen_as = "digits" if number else "28x28"  # a number's digits are a strip, 28 high
            answer["show"] = str(_save_png(seen, show / f"{path.stem}.{seen_as}.png"))
            if answer.get("box"):
                answer["show_box"] = str(_save_box(path, answer["box"], show / f"{path.stem}.box.png"))
        typer.echo(json.dumps({"file": str(path), **answer}) if json_lines else f"{path}: {_describe(answer)}")


def read(
    images: Annotated[list[Path], typer.Argument(help="Image files: a page, a form, a meter, a photo of a sheet.")],
    model: Annotated[
        Path | None, typer.Option(help="Run folder, .keras or .onnx (default: the shipped model).")
    ] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="One JSON object per image.")] = False,
    show: Annotated[
        Path | None, typer.Option(help="Write here, as PNG, each image with the numbers read boxed (NAME.box.png).")
    ] = None,
    workers: Workers = None,
) -> None:
    """Read every number in each image, in reading order (lines top to bottom, left to right)."""
    from digitlab.read.files import read_files
    from digitlab.read.number import read_numbers

    reader = _reader(model)
    for path, found in _each(json_lines, read_files(reader, images, read_numbers, workers)):
        for number in found["numbers"]:
            number.pop("image28")
        if show is not None and found["numbers"]:
            boxes = [n["box"] for n in found["numbers"]]
            found["show_box"] = str(_save_box(path, boxes, show / f"{path.stem}.box.png"))
        if json_lines:
            typer.echo(json.dumps({"file": str(path), **found}))
            continue
        count = len(found["numbers"])
        typer.echo(f"{path}: {count} number{'s' * (count != 1)}" if count else f"{path}: {found['reason']}")
        for n in found["numbers"]:
            text = n["number"] if n["number"] is not None else f"declined ({n['reason']})"
            typer.echo(f"  {text}  ({n['confidence']:.1%}; box top {n['box'][0]}, left {n['box'][1]})")


def _reader(model: Path | None, pixels: str | None = None, data_dir: Path | None = None):
    """The model to read with, and on stderr what the user should know of it (so --json's stdout
    stays one object per image): how a model trained elsewhere was adapted, a missing calibration."""
    from digitlab.io.adapt import describe
    from digitlab.io.load import load

    reader = load(model, pixels, data_dir)
    if "foreign" in reader.info:
        typer.echo(f"note: {describe(reader.path, reader.info['foreign'])}", err=True)
    if "note" in reader.info:
        typer.echo(f"note: {reader.info['note']}", err=True)
    return reader


def _each(json_lines: bool, answers: Iterable[tuple[Path, dict | DigitlabError]]) -> Iterator[tuple[Path, dict]]:
    """Each image and what was made of it; one that could not be read is one error line (a JSON
    object with --json) and the others are still read; then the command exits 2."""
    failed = 0
    for path, answer in answers:
        if isinstance(answer, DigitlabError):
            failed += 1
            typer.echo(
                json.dumps({"file": str(path), "error": str(answer)}) if json_lines else f"error: {answer}",
                err=not json_lines,
            )
            continue
        yield path, answer
    if failed:
        raise typer.Exit(2)


def serve(
    model: Annotated[
        Path | None, typer.Option(help="Run folder, .keras or .onnx (default: the shipped model).")
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    max_upload: Annotated[int, typer.Option(help="Largest request body accepted, in bytes.")] = 4 * 1024 * 1024,
    workers: Annotated[
        int, typer.Option(help="Server processes, each with the model and 2 worker threads; metrics summed.")
    ] = 1,
    queue_wait: Annotated[
        float,
        typer.Option(help="Seconds a request may wait for a busy worker before a 503 with Retry-After."),
    ] = 5.0,  # serve_limits.QUEUE_WAIT, not imported here: --help stays instant
) -> None:
    """Serve the REST API (v1 and KServe v2), /metrics and the draw-a-digit page."""
    from digitlab.serve.app import serve as run_server

    if not 0 < port < 65536:
        raise DigitlabError(f"--port must be between 1 and 65535, got {port}")
    if not 1 <= workers <= 64:
        raise DigitlabError(f"--workers must be between 1 and 64, got {workers}")
    if not 0 < queue_wait <= 600:
        raise DigitlabError(f"--queue-wait must be over 0 and at most 600 seconds, got {queue_wait}")
    run_server(model, host, port, max_upload, workers, queue_wait)


def _describe(answer: dict) -> str:
    if "number" in answer:
        return answer["number"] if answer["number"] is not None else f"declined ({answer['reason']})"
    if answer["digit"] is None:
        return f"declined ({answer['reason']})"
    others = ", ".join(f"{c['digit']} {c['probability']:.1%}" for c in answer["top_k"][1:])
    return f"{answer['digit']} ({answer['confidence']:.1%})" + (f"; then {others}" if others else "")


def _save_png(image, path: Path) -> Path:
    import numpy as np
    from PIL import Image

    from digitlab.files import write_atomic

    pixels = Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8))
    return write_atomic(path, lambda tmp: pixels.save(tmp, format="PNG"))


SHOW_SIDE = 1200  # the boxed picture's longer side at most: enough to see where, small to open


def _save_box(source: Path, box: list[int] | list[list[int]], path: Path) -> Path:
    """The image as sent (upright), the box (or boxes) of what was read drawn on it in red."""
    from PIL import Image, ImageDraw, ImageOps

    from digitlab.files import write_atomic

    with Image.open(source) as opened:  # read once already, within digitlab's size limits
        image = ImageOps.exif_transpose(opened).convert("RGB")
    scale = min(1.0, SHOW_SIDE / max(image.size))
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    pen = max(2, round(max(image.size) / 200))
    for each in box if isinstance(box[0], list) else [box]:
        top, left, bottom, right = (round(v * scale) for v in each)
        ImageDraw.Draw(image).rectangle(
            (left - pen, top - pen, right + pen - 1, bottom + pen - 1), outline=RED, width=pen
        )
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))


RED = (230, 30, 30)


# What the suite's conditions are made with (MNIST-C's corruptions, typed digits, non-digits) and
# scored with (AUROC): the [train] extra brings them.
SUITE_NEEDS = ("skimage", "matplotlib", "fontTools", "sklearn")


def robustness(
    model: Annotated[
        Path | None, typer.Argument(help="Run folder, .keras or .onnx (default: the shipped model).")
    ] = None,
    split: Annotated[str, typer.Option(help="test, or validation (for choosing between models).")] = "test",
    n: Annotated[int, typer.Option(help="Images per condition.")] = 1000,
    corruption_n: Annotated[int, typer.Option(help="Images per MNIST-C corruption (the paper: 10000).")] = 10_000,
    reader: Annotated[str, typer.Option(help="digitlab (its preprocessing) or naive (resize to 28x28).")] = "digitlab",
    out: Annotated[Path | None, typer.Option(help="Folder for the tables and picture (default: a run's own).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Measure a model on corrupted, photographed, drawn, scanned and printed digits and on non-digits."""
    from digitlab import robustness as suite
    from digitlab.data.mnist import load_mnist
    from digitlab.io.load import load
    from digitlab.training.runs import Run

    if split not in ("test", "validation"):
        raise DigitlabError(f"--split must be test or validation, got '{split}'")
    if reader not in suite.READERS:
        raise DigitlabError(f"--reader must be one of {', '.join(suite.READERS)}, got '{reader}'")
    if n < 10 or corruption_n < 10:
        raise DigitlabError("--n and --corruption-n must be at least 10")
    # Beside a run's own report (whose table is a 100-image sample), never over it.
    folder = f"robustness-{split}-{reader}"
    if out is None:
        out = (
            model / folder
            if model is not None and model.is_dir()
            else Path(f"{folder}-{(model or Path('default')).stem}")
        )
    if out.exists() and not out.is_dir():
        raise DigitlabError(f"--out {out} is a file; give a folder for the tables and picture")
    require("robustness", *SUITE_NEEDS)  # before MNIST is looked for, or downloaded
    loaded = load(model, data_dir=data_dir)
    # A run's validation split is its own (--val-size, --split-seed): another would hold training digits.
    # A model file, or a folder with no run record, gets the default split.
    used = Run.open(model).record.data if model is not None and Run.is_run(model) else None
    data = load_mnist(data_dir, **({"val_size": used.val_size, "split_seed": used.split_seed} if used else {}))
    images, labels = (data.x_test, data.y_test) if split == "test" else (data.x_val, data.y_val)
    with status(f"measuring {loaded.path.name} on the robustness suite ({n:,} images a condition)"):
        (result,) = suite.measure([loaded], images, labels, split, n, reader, corruption_n)
    typer.echo(suite.write(result, out).read_text())
