"""examples/train_sine.py trains: a shortened run ends well below the trivial baseline."""
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _train_utils import import_fusedrnn, load_example  # noqa: E402

import_fusedrnn()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "examples", "train_sine.py")


def test_train_sine_learns():
    train_sine = load_example(SCRIPT)
    final, baseline = train_sine.main(steps=200, seed=0, verbose=False)
    assert np.isfinite(final)
    # the full default run reaches ~0.1 x baseline; 200 steps reach ~0.25 x
    assert final < 0.5 * baseline, f"final loss {final:.5f} vs baseline {baseline:.5f}"


def test_train_sine_script_runs():
    """The command line: --steps, prints the losses and the baseline, exits 0.

    Runs against the fusedrnn this interpreter imports (the installed package, or whatever
    PYTHONPATH the test run was given), never the uncompiled source tree."""
    proc = subprocess.run([sys.executable, SCRIPT, "--steps", "20", "--log-every", "10"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "baseline" in proc.stdout
    assert "step    20" in proc.stdout
