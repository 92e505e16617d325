"""What a training run sets for itself and puts back when it ends: the seeds and op determinism
(same seed, same weights on CPU) and Keras' dtype policy (float32, or bf16 where it pays)."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from digitlab.nn.backend import keras, tf


def seed_everything(seed: int) -> None:
    """Same seed, same data -> the same weights on CPU, bit for bit. For the whole process (a
    benchmark's child); train() seeds only its own run, with seeded()."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """seed_everything() for the block, then all it set as it was: op determinism, the seeds of
    TensorFlow and Keras, and Python's and NumPy's random states (a notebook's own draws go on
    as if nothing had trained in between)."""
    # Neither the getters nor disable_op_determinism() are exported in TF 2.21 / Keras 3.
    from keras.src.backend.common import global_state
    from tensorflow.python.eager import context
    from tensorflow.python.framework import config as tf_config

    keras_state = ("global_random_seed", "global_seed_generator")  # what set_random_seed() sets
    keras_seeds = {name: global_state.get_global_attribute(name) for name in keras_state}
    determinism, tf_seed = tf_config.is_op_determinism_enabled(), context.global_seed()
    with random_state_kept():
        seed_everything(seed)
        try:
            yield
        finally:
            if not determinism:
                tf_config.disable_op_determinism()
            tf.random.set_seed(tf_seed)
            for name, value in keras_seeds.items():
                global_state.set_global_attribute(name, value)


@contextlib.contextmanager
def random_state_kept() -> Iterator[None]:
    """Python's and NumPy's global random states as they were after the block: Keras draws from
    Python's for every layer it builds or loads (a default seed each), the caller's draws should
    not feel that."""
    python_rng, numpy_rng = random.getstate(), np.random.get_state()
    try:
        yield
    finally:
        random.setstate(python_rng)
        np.random.set_state(numpy_rng)


CPUINFO = Path("/proc/cpuinfo")


def native_bf16(cpuinfo: Path = CPUINFO) -> bool:
    """Does bf16 pay here? On a GPU, or a CPU with AMX's bf16 tile units. AVX512-BF16 alone is
    not enough: `fast` trained 1.1x faster in bf16 on a Zen 5 but 1.25x slower on a Xeon with
    it (BENCHMARKS.md); without either, TensorFlow emulates bf16, 3.5x slower than float32."""
    if tf.config.list_physical_devices("GPU"):
        return True
    flags = set(cpuinfo.read_text().split()) if cpuinfo.is_file() else set()
    return "amx_bf16" in flags


def resolve_precision(policy: str, cpuinfo: Path = CPUINFO) -> str:
    if policy != "auto":
        return policy
    return "mixed_bfloat16" if native_bf16(cpuinfo) else "float32"


@contextlib.contextmanager
def precision(policy: str):
    """Build and train under a dtype policy ('auto' resolved here), then put the global one back:
    the very object, or none (Keras then follows floatx() again, as before)."""
    from keras.src.backend.common import global_state  # global_policy() would set one if unset

    before = global_state.get_global_attribute("dtype_policy")
    keras.mixed_precision.set_global_policy(resolve_precision(policy))
    try:
        yield
    finally:
        global_state.set_global_attribute("dtype_policy", before)
