"""What several commands share: the --data-dir option, the line that ends a run, the options
`digitlab train` derives from TrainConfig's fields, and the errors that name what to install or
what was probably meant."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal, Optional, Union

import typer

from digitlab.errors import DigitlabError, install_hint

DataDir = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help="Folder with the MNIST IDX files or mnist.npz (else $DIGITLAB_DATA_DIR, "
        "~/.cache/digitlab/mnist, ~/.keras/datasets; downloaded if absent).",
    ),
]

# The heavy modules behind the optional extras of pyproject.toml, by import name: a command that
# needs one that is not installed (a `digitlab[serve]` install asked to train) names the extra.
EXTRAS: dict[str, tuple[str, str]] = {
    "tensorflow": ("TensorFlow", "train"),
    "keras": ("Keras and TensorFlow", "train"),  # [train] brings both; Keras is imported first
    "tensorboard": ("TensorBoard", "train"),
    "tf2onnx": ("tf2onnx", "train"),
    "onnx": ("ONNX", "train"),
    "sklearn": ("scikit-learn", "train"),
    "matplotlib": ("matplotlib", "train"),
    "fontTools": ("fonttools", "train"),
    "skimage": ("scikit-image", "train"),
    "h5py": ("h5py", "train"),  # legacy .h5 Keras models (foreign.py)
    "optuna": ("Optuna", "tune"),
    "optuna_dashboard": ("optuna-dashboard", "tune"),
    "sqlalchemy": ("SQLAlchemy", "tune"),
    "psycopg": ("psycopg", "tune"),
    "onnxruntime": ("ONNX Runtime", "serve"),
    "fastapi": ("FastAPI", "serve"),
    "starlette": ("FastAPI", "serve"),
    "uvicorn": ("uvicorn", "serve"),
    "python_multipart": ("python-multipart", "serve"),
    "multipart": ("python-multipart", "serve"),
    "prometheus_client": ("prometheus-client", "serve"),
}


def needs(module: str, command: str | None) -> str:
    """`digitlab COMMAND needs WHAT: pip install ...`, the command that works from here (install_hint)."""
    what, extra = EXTRAS[module]
    if command == "tune" and extra == "train":  # [tune] brings [train] and Optuna: one install, not two
        extra = "tune"
    return f"digitlab{' ' + command if command else ''} needs {what}: {install_hint(extra)}"


def require(command: str, *modules: str) -> None:
    """Each of `modules` (EXTRAS' import names) installed, checked before a command reads or
    downloads anything: else the one line that names the install."""
    for module in modules:
        try:
            missing = importlib.util.find_spec(module) is None
        except ValueError:  # imported already, without a spec: it is there
            missing = False
        if missing:
            raise DigitlabError(needs(module, command))


def check_models(names: list[str]) -> None:
    from digitlab.nn.models import check_name  # the registry alone: no Keras until a model is built

    for name in names:
        check_name(name)


NATIVE = (int, float, str, bool, Path)  # what Typer parses itself; any other field is JSON text


def summary(run_dir: Path) -> None:
    from digitlab.training.runs import Run

    run = Run.open(run_dir)
    metrics = run.read_metrics()
    typer.echo(
        f"{metrics['model']}: test accuracy {metrics['test_accuracy']:.2%} "
        f"({metrics['test_errors']} errors of {metrics['test_size']}); report: {run.report.with_suffix('.html')}"
    )


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _without_none(hint):
    """`X | None` and `Optional[X]` -> X; any other type as it is."""
    if typing.get_origin(hint) in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _choices(hint) -> tuple | None:
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def _parsed_as(hint):
    """The type an option is parsed as: the field's own where Typer knows it, a Literal's values'
    type (the choice is checked by `read_settings`, the same for --params), else JSON text."""
    hint = _without_none(hint)
    choices = _choices(hint)
    if choices and len({type(c) for c in choices}) == 1 and type(choices[0]) in NATIVE:
        return type(choices[0])
    return hint if hint in NATIVE else str


def config_options(config: type, recipes: Mapping[str, Mapping] | None = None):
    """A decorator giving a command one option per field of the dataclass `config`, from the
    field's type (`typing.get_type_hints`) and its metadata's help text: the CLI cannot drift from
    the config, and every run's config is a command that runs. Every option defaults to None,
    which means "not given"; a bool field is a --flag/--no-flag pair, a dict (or any other type
    Typer does not parse) JSON text. A field some recipe in `recipes` sets says its default is
    "the model's recipe, else" the field's own."""
    hints = typing.get_type_hints(config)
    options = []
    for f in dataclasses.fields(config):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = "all" if default is None else str(default) if isinstance(default, NATIVE) else json.dumps(default)
        if isinstance(default, bool):
            shown = _option(f.name) if default else _option(f"no_{f.name}")
        if any(f.name in recipe for recipe in (recipes or {}).values()):
            shown = f"the model's recipe, else {shown}"
        choices = _choices(_without_none(hints[f.name]))
        listed = f" One of: {', '.join(map(str, choices))}." if choices else ""
        text = f"{f.metadata.get('help', '')}{listed} (default: {shown})".lstrip()
        option = typer.Option(help=text, show_default=False)
        options.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[Optional[_parsed_as(hints[f.name])], option],
            )
        )

    def decorate(command):
        own = [
            p
            for p in inspect.signature(command, eval_str=True).parameters.values()
            if p.kind != inspect.Parameter.VAR_KEYWORD
        ]
        command.__signature__ = inspect.Signature(options + own)
        command.__annotations__ = {p.name: p.annotation for p in options + own}
        return command

    return decorate


def read_settings(config: type, settings: dict, examples: Mapping[str, str] | None = None) -> dict:
    """`settings` (options given, --params) with the JSON text of fields Typer does not parse
    read, and each Literal field's choice checked; `examples` show a field's JSON in its error."""
    hints = typing.get_type_hints(config)
    settings = dict(settings)
    for name, value in settings.items():
        hint = _without_none(hints[name])
        if value is None:
            continue
        wanted = typing.get_origin(hint) or hint
        if _parsed_as(hint) is str and hint is not str and not _choices(hint) and isinstance(value, str):
            try:
                settings[name] = value = json.loads(value)
            except json.JSONDecodeError as e:
                raise DigitlabError(f"{_option(name)}: not valid JSON ({e})") from None
        if wanted in (dict, list) and not isinstance(value, wanted):
            example = f", e.g. '{examples[name]}'" if examples and name in examples else ""
            raise DigitlabError(f"{_option(name)} must be a JSON {'object' if wanted is dict else 'array'}{example}")
        choices = _choices(hint)
        if choices and value not in choices:
            raise DigitlabError(f"{_option(name)} must be one of {', '.join(map(str, choices))}; got {value!r}")
    return settings
