"""Smoke test of an installed fusedrnn (tools/build_wheels.sh runs it outside the source tree).

Runs an LSTM and a GRU (2 layers, bidirectional, small fixed sizes) in float32 and float64 on the
weights and inputs stored in smoke_expected.npz and compares with the outputs stored there, which
tests/reference.py (NumPy, independent of fusedrnn) computed: see make_smoke_expected.py.
"""
import sys
from pathlib import Path

import numpy as np

import fusedrnn

DATA = Path(__file__).resolve().parent / "smoke_expected.npz"
# (rtol, atol) as in tests/conftest.py: float32 results against float64 on float32-rounded data.
TOLERANCES = {np.float32: (1e-5, 2e-6), np.float64: (1e-10, 1e-12)}


def main():
    data = np.load(DATA)
    print(f"fusedrnn {fusedrnn.__version__} from {Path(fusedrnn.__file__).parent}")
    for kind, cls in (("lstm", fusedrnn.LSTM), ("gru", fusedrnn.GRU)):
        x, h0 = data[f"{kind}.x"], data[f"{kind}.h0"]
        params = {k.split(".", 2)[2]: data[k] for k in data.files
                  if k.startswith(f"{kind}.param.")}
        I, H = x.shape[2], h0.shape[2]
        for dtype, (rtol, atol) in TOLERANCES.items():
            model = cls(I, H, num_layers=h0.shape[0] // 2, bidirectional=True, dtype=dtype)
            model.load_state_dict(params)
            if kind == "lstm":
                out, (h_n, c_n) = model(x, (h0, data["lstm.c0"]))
                got = {"out": out, "h_n": h_n, "c_n": c_n}
            else:
                out, h_n = model(x, h0)
                got = {"out": out, "h_n": h_n}
            for name, value in got.items():
                np.testing.assert_allclose(value, data[f"{kind}.{name}"], rtol=rtol, atol=atol,
                                           err_msg=f"{kind} {np.dtype(dtype).name} {name}")
            err = max(float(np.abs(v - data[f"{kind}.{n}"]).max()) for n, v in got.items())
            print(f"{cls.__name__} {np.dtype(dtype).name}: matches the NumPy reference "
                  f"(max abs error {err:.1e})")
    print("smoke test OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
