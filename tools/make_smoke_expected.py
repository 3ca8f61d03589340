"""Write tools/smoke_expected.npz: inputs, weights and expected outputs for tools/smoke.py.

The expected outputs come from the plain-NumPy reference tests/reference.py (written from the
equations, shares no code with fusedrnn and does not import it), in float64, on weights and inputs
rounded to float32 so that one file serves both dtypes. Run once; rerun only if the cases change:

    python tools/make_smoke_expected.py
"""
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
import reference  # noqa: E402

# Small fixed cases; both stacked and bidirectional so layer 1 reads layer 0's concatenated output.
T, B, I, H, LAYERS = 6, 3, 5, 7, 2
SEED = 20240611


def main():
    rng = np.random.default_rng(SEED)
    arrays = {}
    for kind in ("lstm", "gru"):
        G = reference.GATES[kind]
        params = {}
        for layer in range(LAYERS):
            for sfx in (f"_l{layer}", f"_l{layer}_reverse"):
                fan_in = I if layer == 0 else 2 * H
                params["weight_ih" + sfx] = rng.uniform(-0.4, 0.4, (G * H, fan_in))
                params["weight_hh" + sfx] = rng.uniform(-0.4, 0.4, (G * H, H))
                params["bias_ih" + sfx] = rng.uniform(-0.4, 0.4, G * H)
                params["bias_hh" + sfx] = rng.uniform(-0.4, 0.4, G * H)
        params = {k: v.astype(np.float32) for k, v in params.items()}
        x = rng.standard_normal((T, B, I)).astype(np.float32)
        h0 = (0.5 * rng.standard_normal((2 * LAYERS, B, H))).astype(np.float32)
        if kind == "lstm":
            c0 = (0.5 * rng.standard_normal((2 * LAYERS, B, H))).astype(np.float32)
            out, (h_n, c_n) = reference.rnn(kind, params, x, (h0, c0), num_layers=LAYERS,
                                            bidirectional=True)
            arrays.update({f"{kind}.c0": c0, f"{kind}.c_n": c_n})
        else:
            out, h_n = reference.rnn(kind, params, x, h0, num_layers=LAYERS, bidirectional=True)
        arrays.update({f"{kind}.x": x, f"{kind}.h0": h0, f"{kind}.out": out, f"{kind}.h_n": h_n})
        arrays.update({f"{kind}.param.{k}": v for k, v in params.items()})
    np.savez_compressed(HERE / "smoke_expected.npz", **arrays)


if __name__ == "__main__":
    main()
