"""Run configuration: plain dataclasses, importable without Keras."""

from __future__ import annotations

import dataclasses
import json
import shlex
from dataclasses import dataclass, field

from digitlab.errors import DigitlabError

SCHEDULES = ("cosine", "onecycle", "constant")  # onecycle: linear warm-up over 20%, then cosine
PRECISIONS = ("auto", "float32", "mixed_bfloat16")  # auto: bf16 only where the hardware has it
HEADS = ("softmax", "ridge")  # ridge: the output layer solved in closed form (training/ridge.py)

# Where a model trains best with other settings than TrainConfig's defaults, its recipe says
# so here, each setting with its reason. `digitlab train --model NAME` starts from these.
RECIPES: dict[str, dict] = {
    "fast": {
        "epochs": 2,  # two passes reach ~99.1% on validation; 1.5 stop at 98.97-99.01%, too close
        # Batch 128 (the default): 256 at peak LR 2e-2 trains 1.13x faster but 0.07 points less
        # accurately (99.04% mean test over 5 seeds), too close to 99.0% (BENCHMARKS.md).
        "lr": 1e-2,  # batch norm tolerates a high peak; the warm-up keeps the first steps stable
        "schedule": "onecycle",  # warm up, then anneal to zero exactly at the last step
        "beta_1": 0.8,  # 782 steps in all: momentum and variance estimates must adapt quickly
        "beta_2": 0.99,
        "precision": "auto",  # bf16 only where it pays: AMX or a GPU (training.native_bf16)
        "patience": 2,  # never triggers in two epochs; kept for longer variants
    },
    "allconv": {
        # Measured (docs/RESULTS.md): 99.63-99.65% over 3 seeds, 15-28 min each on 2 cores.
        "epochs": 23,  # ~0.1 points of validation accuracy over 15; 45 add nothing more (GPU)
        # Never stop early: validation loss is noisy while the cosine LR is still high, and a
        # stop there keeps a mid-schedule checkpoint (one run: 99.53% val, against 99.64% when
        # it annealed to the end). The best-val-loss checkpoint is still the one kept.
        "patience": 23,
        "augment": 1.0,  # rotations to 10 degrees, shifts and zoom to 10%: Deotte's settings
        "elastic": 1.0,  # and a mild elastic warp (Ciresan et al.'s); 5 fewer test errors with both
    },
}


def setting(default, help: str, **kwargs):
    """A TrainConfig field with the help text its `digitlab train` option shows (cli/options.py derives
    every option from these fields: none is listed twice)."""
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class TrainConfig:
    model: str = setting("cnn", "Model name (see `digitlab models`).")
    epochs: int = setting(15, "Maximum epochs; early stopping may end sooner.")  # an upper bound
    # Large enough to keep both cores busy, small enough to generalise.
    batch_size: int = setting(128, "Images per gradient step.")
    lr: float = setting(1e-3, "Peak learning rate (Adam).")  # Adam's default; decays to zero on a cosine
    # Cosine settles the weights without tuning a drop; see SCHEDULES.
    schedule: str = setting("cosine", "Learning-rate schedule: " + ", ".join(SCHEDULES) + ".")
    # Adam's defaults; short runs prefer shorter memories (see RECIPES).
    beta_1: float = setting(0.9, "Adam's first-moment decay.")
    beta_2: float = setting(0.999, "Adam's second-moment decay.")
    precision: str = setting("float32", "float32, mixed_bfloat16, or auto (bf16 only with AMX or a GPU).")
    weight_decay: float = setting(0.0, "AdamW weight decay; 0 means plain Adam.")
    augment: float = setting(0.0, "Augmentation strength, 0-3 (1: 10 deg rotation, 10% shift and zoom).")
    elastic: float = setting(0.0, "Elastic warp strength, 0-3 (1: alpha 36, sigma 6 px, as Ciresan et al.).")
    label_smoothing: float = setting(0.0, "Label smoothing, e.g. 0.1 (targets 0.91/0.01 curb overconfidence).")
    real_world: float = setting(
        0.0, "Real-input augmentation, 0-3: stroke width, blur, low resolution, contrast, noise."
    )
    clutter: float = setting(
        0.0, "Clutter augmentation, 0-3: lines through the digit, outlined strokes, inverted bands."
    )
    negatives: float = setting(0.0, "Non-digits to learn to decline, as a share of the training digits (0-1).")
    distil: float = setting(
        0.0, "Distillation: the share of each training target taken from the shipped model's softened guess (0-1)."
    )
    model_params: dict = field(
        default_factory=dict, metadata={"help": "The model function's keyword arguments, as JSON."}
    )
    head: str = setting(
        "softmax",
        "Output layer: softmax (trained with the rest) or ridge (least squares on the digits, after training).",
    )
    hidden: int = setting(0, "With --head ridge: fixed random ReLU units between the last layer and the head.")
    patience: int = setting(4, "Epochs without val-loss progress before stopping.")
    seed: int = setting(0, "Random seed: weights, shuffling, dropout; same seed, same result on CPU.")
    val_size: int = setting(10_000, "Validation images taken from the 60k training set, stratified.")
    # Fixed apart from `seed` so every run sees the same validation set.
    split_seed: int = setting(0, "Seed of the train/validation split.")
    subset: int | None = setting(None, "Train on only this many images (quick looks, tests).")

    def check(self) -> None:
        from digitlab.nn.models import check_name  # imported late: it pulls in Keras

        check_name(self.model)
        for name in ("epochs", "batch_size", "patience"):
            least = 0 if name == "epochs" and self.head == "ridge" else 1  # a solved head needs no epoch
            if getattr(self, name) < least:
                raise DigitlabError(f"--{name.replace('_', '-')} must be at least {least}, got {getattr(self, name)}")
        if self.head not in HEADS:
            raise DigitlabError(f"--head must be one of {', '.join(HEADS)}; got '{self.head}'")
        if self.hidden < 0 or (self.hidden and self.head != "ridge"):
            raise DigitlabError(f"--hidden must be 0, or positive with --head ridge; got {self.hidden}")
        if not 0 <= self.distil <= 1:
            raise DigitlabError(f"--distil must be between 0 and 1 (a share of each target), got {self.distil}")
        if not self.lr > 0:
            raise DigitlabError(f"--lr must be positive, got {self.lr}")
        if self.schedule not in SCHEDULES:
            raise DigitlabError(f"--schedule must be one of {', '.join(SCHEDULES)}; got '{self.schedule}'")
        if self.precision not in PRECISIONS:
            raise DigitlabError(f"--precision must be one of {', '.join(PRECISIONS)}; got '{self.precision}'")
        for name in ("augment", "elastic", "real_world", "clutter"):
            if not 0 <= getattr(self, name) <= 3:
                raise DigitlabError(f"--{name.replace('_', '-')} must be between 0 and 3, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            raise DigitlabError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.negatives <= 1:
            raise DigitlabError(
                f"--negatives must be between 0 and 1 (a share of the training digits), got {self.negatives}"
            )
        if self.weight_decay < 0:
            raise DigitlabError(f"--weight-decay must be >= 0, got {self.weight_decay}")
        if self.subset is not None and self.subset < 10:
            raise DigitlabError(f"--subset must be at least 10 images, got {self.subset}")

    @classmethod
    def for_model(cls, model: str, **overrides) -> TrainConfig:
        """The model's recipe (RECIPES), then the caller's overrides."""
        return cls(**{"model": model, **RECIPES.get(model, {}), **overrides})

    def cli_args(self) -> str:
        """`digitlab train` options for every setting, so the command means the same run even
        after a recipe or a default changes."""
        args = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:  # subset: None is the option left out
                continue
            option = f"--{f.name.replace('_', '-')}"
            if isinstance(value, bool):  # a flag: --x or --no-x, no value
                args.append(option if value else f"--no-{option[2:]}")
                continue
            if isinstance(value, dict):
                value = json.dumps(value, sort_keys=True)
            args.append(f"{option} {shlex.quote(str(value))}")
        return " ".join(args)
