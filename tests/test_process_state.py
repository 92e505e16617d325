"""digitlab changes no process-wide state when imported, and leaves none behind when it trains.

A notebook that imports digitlab, or trains with it, keeps its environment, umask, warning
filters, logging, TensorFlow's op determinism and Keras' dtype policy and seeds as they were.
Each check runs in a fresh process: the state looked at is the process's own.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

# Reads the umask without setting it (os.umask() only reads it by changing it), and records any
# os.umask() call from here on: a process's mask must not change even for a moment, since a
# thread creating a file at that moment would get the passing one.
UMASK_SPY = """
import os
def read_umask():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1], 8) for line in status if line.startswith("Umask:"))
umask_calls, _umask = [], os.umask
def spy(mask):
    umask_calls.append(mask)
    return _umask(mask)
os.umask = spy
"""


def run_probe(code: str, timeout: float = 600) -> tuple[dict, str]:
    """Run `code` in a fresh interpreter; it prints one JSON object last. Returns it and stderr."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1]), result.stderr


def test_importing_digitlab_changes_no_process_wide_state():
    """Every module, the training ones too. The libraries digitlab uses are imported first: what
    they change on import is theirs."""
    probe = (
        UMASK_SPY
        + """
import json, logging, sys, warnings
import fastapi, keras, matplotlib, onnxruntime, scipy.ndimage, scipy.optimize, skimage, sklearn.metrics
import tensorflow
from PIL import Image
def state():
    return {
        "environment": dict(os.environ),
        "umask": read_umask(),
        "warning filters": repr(warnings.filters),
        "PIL's pixel limit": Image.MAX_IMAGE_PIXELS,
        "matplotlib backend": matplotlib.get_backend(),
        "logging": repr(logging.getLogger().handlers),
    }
before, umask_calls[:] = state(), []
import importlib, pkgutil, digitlab
for module in pkgutil.walk_packages(digitlab.__path__, "digitlab."):
    if not module.name.endswith("__main__"):
        importlib.import_module(module.name)
after = state()
changed = {name: [before[name], after[name]] for name in before if before[name] != after[name]}
env_before, env_after = changed.pop("environment", [{}, {}])
for name in {*env_before, *env_after}:
    if env_before.get(name) != env_after.get(name):
        changed["environment: " + name] = [env_before.get(name), env_after.get(name)]
print(json.dumps({"changed": changed, "umask calls": umask_calls, "loop": "digitlab.training.loop" in sys.modules}))
"""
    )
    report, _ = run_probe(probe)
    assert report["loop"]  # the training modules were imported too
    assert report["changed"] == {}
    assert report["umask calls"] == []


# What TensorFlow and Keras set in os.environ when they are imported (their own doing, not digitlab's).
LIBRARIES_ENVIRONMENT = """
import json, os
before = dict(os.environ)
import keras, tensorflow
print(json.dumps(sorted(name for name in os.environ if os.environ[name] != before.get(name))))
"""


def test_training_leaves_no_process_wide_state_behind(data_dir, tmp_path):
    """A tiny train() that raises, then one that completes: after each, os.environ (but for what
    TensorFlow and Keras set on their own import), the umask, op determinism, Keras' dtype policy
    and the seeds are as before; the umask was never set; and TensorFlow's C++ logs stayed off
    stderr while digitlab imported it and trained."""
    libraries = subprocess.Popen(
        [sys.executable, "-c", LIBRARIES_ENVIRONMENT], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    probe = (
        UMASK_SPY
        + f"""
import json, pickle, random
environment = dict(os.environ)
from digitlab.experiments.pipeline import train
from digitlab.nn.backend import keras  # digitlab imports TensorFlow and Keras here
from digitlab.training.config import TrainConfig
import numpy as np
from keras.src.backend.common import global_state
from tensorflow.python.eager import context
from tensorflow.python.framework.config import is_op_determinism_enabled

keras.config.set_dtype_policy("mixed_float16")  # the caller's own, not what the run trains in
random.seed(1)
np.random.seed(2)

def state():
    return {{
        "umask": read_umask(),
        "op determinism": is_op_determinism_enabled(),
        "dtype policy": keras.config.dtype_policy().name,
        "Keras seed": repr(global_state.get_global_attribute("global_random_seed")),
        "Keras seed generator": repr(global_state.get_global_attribute("global_seed_generator")),
        "TensorFlow seed": repr(context.global_seed()),
        "Python's random state": pickle.dumps(random.getstate()).hex(),
        "NumPy's random state": pickle.dumps(np.random.get_state()).hex(),
    }}

class Fail(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        raise RuntimeError("on purpose")

before, umask_calls[:] = state(), []
report = {{}}
config = TrainConfig.for_model("fast", subset=600, epochs=1)
for name, callbacks in (("raised", [Fail()]), ("returned", None)):
    try:
        train(config, data_dir={str(data_dir)!r}, out={str(tmp_path)!r} + "/" + name, verbose=0, callbacks=callbacks)
        raised = False
    except RuntimeError as e:
        raised = str(e) == "on purpose"
    after = state()
    changed = [key for key in before if before[key] != after[key]]
    report[name] = {{"raised": raised, "changed": changed, "umask calls": umask_calls[:]}}
report["environment"] = {{name: [environment.get(name), os.environ.get(name)] for name in {{*environment, *os.environ}}
                          if environment.get(name) != os.environ.get(name)}}
print(json.dumps(report))
"""
    )
    report, stderr = run_probe(probe)
    theirs = json.loads(libraries.communicate(timeout=300)[0])
    assert report["raised"]["raised"] and not report["returned"]["raised"]
    assert report["raised"]["changed"] == []
    # Loading the kept model to evaluate it, Keras draws each initializer's default seed from
    # Python's random module (keras.src.random.seed_generator.make_default_seed): put back too.
    assert report["returned"]["changed"] == []
    assert report["raised"]["umask calls"] == report["returned"]["umask calls"] == []
    assert {name: values for name, values in report["environment"].items() if name not in theirs} == {}
    # "WARNING: All log messages before absl::InitializeLog()...", "I0000 00:00:... port.cc:153]
    # oneDNN custom operations are on...", "E0000 ... NodeDef mentions attribute ...".
    chatter = [line for line in stderr.splitlines() if re.match(r"[IWEF]\d{4} |.*absl::|.*oneDNN", line)]
    assert chatter == [], stderr
