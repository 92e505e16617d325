"""A run interrupted after an epoch and resumed ends with the very weights of the run that never
stopped: each epoch's training order and random draws (augmentation, dropout) come from the seed
and the epoch alone, never from a generator that restarts with the process."""

from __future__ import annotations

import numpy as np
import pytest

from digitlab.errors import Interrupted
from digitlab.files import read_json
from digitlab.training.config import TrainConfig


def stop_after(epochs: int):
    """A callback that interrupts fit() once `epochs` epochs are backed up, as Ctrl-C would."""
    from digitlab.nn.backend import keras

    class StopAfter(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):  # after train()'s Checkpoints wrote the backup
            if epoch + 1 == epochs:
                raise KeyboardInterrupt

    return StopAfter()


@pytest.mark.parametrize(
    "settings",
    [
        {},  # `fast` as its recipe trains it: the shuffle alone
        {"augment": 1.0, "elastic": 1.0, "model": "mlp-dropout"},  # augmentation's and dropout's generators
    ],
    ids=["fast", "augmented-dropout"],
)
def test_a_run_resumed_after_its_first_epoch_ends_with_the_uninterrupted_weights(settings, mnist, tmp_path):
    from digitlab.nn.backend import keras
    from digitlab.training.loop import train

    config = TrainConfig.for_model(settings.pop("model", "fast"), epochs=3, subset=3000, **settings)
    train(config, mnist, tmp_path / "whole", verbose=0)
    with pytest.raises(Interrupted):
        train(config, mnist, tmp_path / "resumed", verbose=0, callbacks=[stop_after(1)])
    assert read_json(tmp_path / "resumed" / "run.json")["status"] == "interrupted"
    train(config, mnist, tmp_path / "resumed", verbose=0)

    assert read_json(tmp_path / "resumed" / "run.json")["resumed"] == 1
    whole, resumed = (read_json(tmp_path / run / "history.json") for run in ("whole", "resumed"))
    assert resumed == whole  # every epoch's losses and accuracies, to the last bit
    weights = [keras.saving.load_model(tmp_path / run / "model.keras").get_weights() for run in ("whole", "resumed")]
    assert all(np.array_equal(a, b) for a, b in zip(*weights, strict=True))
