"""Run configuration: plain dataclasses, importable without Keras."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import DigitlabError


@dataclass
class TrainConfig:
    model: str = "cnn"
    epochs: int = 15  # an upper bound: early stopping usually ends sooner
    batch_size: int = 128  # large enough to keep both cores busy, small enough to generalise
    lr: float = 1e-3  # Adam's default; decays to zero on a cosine over `epochs`
    schedule: str = "cosine"  # or "constant"; cosine settles the weights without tuning a drop
    patience: int = 4  # epochs without val-loss progress before stopping
    seed: int = 0  # weights init, shuffling, dropout
    val_size: int = 10_000  # taken from the 60k training set, stratified
    split_seed: int = 0  # fixed apart from `seed` so every run sees the same validation set
    subset: int | None = None  # train on only this many images (quick looks, tests)

    def check(self) -> None:
        from .models import check_name  # imported late: it pulls in Keras

        check_name(self.model)
        for name in ("epochs", "batch_size", "patience"):
            if getattr(self, name) < 1:
                raise DigitlabError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise DigitlabError(f"--lr must be positive, got {self.lr}")
        if self.schedule not in ("cosine", "constant"):
            raise DigitlabError(f"--schedule must be 'cosine' or 'constant', got '{self.schedule}'")
        if self.subset is not None and self.subset < 10:
            raise DigitlabError(f"--subset must be at least 10 images, got {self.subset}")

    def cli_args(self) -> str:
        """The `digitlab train` options that reproduce this config (defaults left out)."""
        default = TrainConfig()
        args = [f"--model {self.model}", f"--seed {self.seed}"]
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name not in ("model", "seed") and value != getattr(default, field.name):
                args.append(f"--{field.name.replace('_', '-')} {value}")
        return " ".join(args)
