"""`digitlab train`'s options come from TrainConfig's field types, whatever they are, and the
named recipes (src/digitlab/recipes/) are settings `--params NAME` trains."""

from __future__ import annotations  # string annotations, as TrainConfig's: the types must still resolve

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest
import typer
from typer.testing import CliRunner

from digitlab.cli import main
from digitlab.cli.options import config_options, read_settings
from digitlab.errors import DigitlabError
from digitlab.training import frontier
from digitlab.training.config import RECIPES, TrainConfig


@dataclass
class Settings:
    name: str = field(default="a", metadata={"help": "A name."})
    quiet: bool = field(default=False, metadata={"help": "Say less."})
    colour: bool = field(default=True, metadata={"help": "Colour the output."})
    rate: float | None = field(default=None, metadata={"help": "A rate."})
    count: int | None = field(default=None, metadata={"help": "A count."})
    limit: Optional[int] = field(default=3, metadata={"help": "A limit."})  # noqa: UP045 - the old spelling too
    extra: dict = field(default_factory=dict, metadata={"help": "More, as JSON."})
    mode: Literal["fast", "slow"] = field(default="fast", metadata={"help": "How."})


def settings_app() -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @config_options(Settings, {"recipe": {"rate": 0.5}})
    def run(*, out: str = "x", **given) -> None:
        chosen = read_settings(Settings, {k: v for k, v in given.items() if v is not None})
        typer.echo(json.dumps({"settings": dataclasses.asdict(Settings(**chosen)), "out": out}))

    return app


def invoke(*args: str) -> dict:
    result = CliRunner().invoke(settings_app(), list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return json.loads(result.output)


def test_every_field_type_is_an_option_typer_parses():
    assert invoke()["settings"] == dataclasses.asdict(Settings())
    given = invoke(
        "--name", "b", "--quiet", "--no-colour", "--rate", "0.25", "--count", "7", "--limit", "9",
        "--extra", '{"width": 48}', "--mode", "slow", "--out", "y",
    )  # fmt: skip
    expected = Settings("b", True, False, 0.25, 7, 9, {"width": 48}, "slow")
    assert given == {"settings": dataclasses.asdict(expected), "out": "y"}
    assert isinstance(given["settings"]["rate"], float) and isinstance(given["settings"]["count"], int)


def test_the_help_lists_every_option_with_its_default():
    result = CliRunner().invoke(settings_app(), ["--help"], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    for text in (
        "--name",
        "A name. (default: a)",
        "--quiet",
        "--no-quiet",
        "Say less. (default: --no-quiet)",
        "Colour the output. (default: --colour)",
        "A rate. (default: the model's recipe, else all)",
        "A count. (default: all)",
        "A limit. (default: 3)",
        "More, as JSON. (default: {})",
        "How. One of: fast, slow. (default: fast)",
        "--out",
    ):
        assert text in result.output, text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rate", "fast"], "Invalid value for '--rate'"),
        (["--count", "1.5"], "Invalid value for '--count'"),
        (["--quiet", "yes"], "Got unexpected extra argument"),
    ],
)
def test_typer_refuses_what_a_type_does_not_allow(args, message):
    result = CliRunner().invoke(settings_app(), args, env={"COLUMNS": "300"})
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"extra": "{oops"}, "--extra: not valid JSON"),
        ({"extra": "[1, 2]"}, "--extra must be a JSON object"),
        ({"mode": "medium"}, "--mode must be one of fast, slow; got 'medium'"),
    ],
)
def test_json_text_and_choices_are_checked_as_one_line_errors(given, message):
    with pytest.raises(DigitlabError, match=message):
        read_settings(Settings, given)


def test_train_has_an_option_per_setting_with_its_help():
    from digitlab.cli.app import app

    params = {p.name: p for p in typer.main.get_command(app).commands["train"].params}
    for f in dataclasses.fields(TrainConfig):
        option = params[f.name]
        assert option.opts == [f"--{f.name.replace('_', '-')}"] and option.default is None
        assert option.help.startswith(f.metadata["help"] + " (default: "), option.help
        assert ("the model's recipe, else" in option.help) == any(f.name in r for r in RECIPES.values())
    assert params["model_params"].help.endswith("(default: {})") and params["subset"].help.endswith("(default: all)")


def dry_run(capsys, *args: str) -> dict:
    capsys.readouterr()
    assert main(["train", *args, "--dry-run"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", frontier.recipe_names())
def test_every_recipe_file_is_a_valid_config_by_its_name(name, capsys):
    settings = json.loads((frontier.RECIPE_DIR / f"{name}.json").read_text())
    config = dataclasses.asdict(TrainConfig.for_model(settings.pop("model"), **settings))
    assert dry_run(capsys, "--params", name) == config
    # The same by its path, and options given still win over it.
    assert dry_run(capsys, "--params", str(frontier.RECIPE_DIR / f"{name}.json"), "--seed", "5") == config | {"seed": 5}


def test_the_shipped_models_recipes_are_named():
    shipped = {"model": "allconv", "real_world": 1.0, "clutter": 1.0, "negatives": 0.3}  # docs/SERVING.md
    assert frontier.recipe("allconv-clutter") == shipped
    assert frontier.recipe("allconv-real") == {"model": "allconv", "real_world": 1.0, "negatives": 0.3}


def test_a_misspelt_recipe_or_model_gets_the_name_meant(capsys):
    assert main(["train", "--params", "allconv-cluter", "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert error == (
        "error: --params: allconv-cluter is neither JSON nor a file, nor a recipe; "
        "did you mean 'allconv-clutter'? (`digitlab models` lists them all)\n"
    )
    for command in (["train", "--model", "alconv", "--dry-run"], ["compare", "mlp", "alconv"], ["tune", "alconv"]):
        assert main(command) == 2
        error = capsys.readouterr().err
        assert error == "error: unknown model 'alconv'; did you mean 'allconv'? (`digitlab models` lists them all)\n"
    # Nothing near: every name, to choose from.
    assert main(["train", "--params", "zzz", "--dry-run"]) == 2
    error = capsys.readouterr().err
    assert all(name in error for name in frontier.recipe_names()), error


def test_a_budget_needs_its_unit(capsys):
    assert main(["train", "--budget", "30"]) == 2
    expected = "error: --budget 30: give a time with its unit, e.g. 30s, 5m or 1h (s, m or min, h)\n"
    assert capsys.readouterr().err == expected
    # With one it is read (and, here, refused for the option beside it, before any measuring).
    assert main(["train", "--budget", "30s", "--lr", "0.1"]) == 2
    assert capsys.readouterr().err == "error: --budget chooses the recipe itself; drop --lr (--seed may stay)\n"


@dataclass
class Flagged(TrainConfig):
    """TrainConfig with a flag, as a bool setting added later would be."""

    mirror: bool = field(default=False, metadata={"help": "Mirror the digits."})


@pytest.mark.parametrize("mirror", [True, False])
def test_a_recorded_command_with_a_flag_parses_back(mirror):
    """A run's command (cli_args) is options the same CLI reads back to the same config."""
    import shlex

    config = Flagged(model="mlp", epochs=2, mirror=mirror, model_params={"width": 16})
    app = typer.Typer()

    @app.command()
    @config_options(Flagged, {})
    def run(**given) -> None:
        chosen = read_settings(Flagged, {k: v for k, v in given.items() if v is not None})
        typer.echo(json.dumps(dataclasses.asdict(Flagged(**chosen))))

    result = CliRunner().invoke(app, shlex.split(config.cli_args()))
    assert result.exit_code == 0, (result.output, result.exception)
    assert json.loads(result.output) == dataclasses.asdict(config)
