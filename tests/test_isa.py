"""The ISA switch (kernels/fr_isa.h, fusedrnn.isa / set_isa) and packing on every SIMD path.

The whole suite can also run on one forced path: FUSEDRNN_ISA=avx2 (or scalar, avx512); here
each path is forced in-process (conftest.isa_path).
"""
import os

import numpy as np
import pytest

from conftest import (DTYPES, ISA_ORDER, assert_tree_close, import_fusedrnn, layer_cfg,
                      layer_data, make_pair, run_torch)

fusedrnn = import_fusedrnn()
from fusedrnn import _kernels  # noqa: E402


def test_switch_names_and_clamping():
    auto = fusedrnn.set_isa(None)
    try:
        assert fusedrnn.isa() == auto and auto in ISA_ORDER
        env = os.environ.get("FUSEDRNN_ISA", "auto").lower()
        if env in ISA_ORDER and ISA_ORDER.index(env) <= ISA_ORDER.index(auto):
            assert auto == env
        assert fusedrnn.set_isa("scalar") == "scalar" == fusedrnn.isa()
        # a path the CPU lacks is clamped down to the best it has, never above it
        best = fusedrnn.set_isa("avx512")
        assert ISA_ORDER.index(best) >= ISA_ORDER.index(auto)
        with pytest.raises(ValueError, match="isa"):
            fusedrnn.set_isa("sse9")
        assert fusedrnn.isa() == best              # a refused name changes nothing
    finally:
        fusedrnn.set_isa(None)
    assert fusedrnn.isa() == auto


# batch sizes crossing the GEMM's blocking thresholds: 1 (one row, every path), 3 (AVX2
# float32 whole-panel kernel), 4-6 (AVX2 6-row blocks), 12-13 (AVX-512 float32 12-row blocks),
# 30 (several row blocks per k-block); H = 40 gives 160 gate columns (5 panels, the last partial)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("B", [1, 2, 3, 4, 6, 7, 12, 13, 30])
def test_lstm_forward_on_each_path(isa_path, rng, dtype, B):
    cfg = layer_cfg(7, 40)
    tm, fm = make_pair("lstm", dtype, 0, **cfg)
    x, h = layer_data(rng, "lstm", cfg, 3, B, hx=True, dtype=dtype)
    assert_tree_close(fm(x, h), run_torch(tm, x, h), dtype, f"lstm on {isa_path}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("N, K", [(1, 1), (5, 3), (32, 7), (33, 64), (70, 45), (100, 130)])
def test_pack_trans_matches_pack_of_transposed_copy(rng, dtype, N, K):
    size = -(-N // 32) * 32 * K
    Wt = rng.standard_normal((K, N)).astype(dtype)          # W^T stored (K, N)
    expected = _kernels.pack_memview(np.ascontiguousarray(Wt.T), False)
    got = _kernels.pack_memview(Wt, True)
    assert got.shape == (size,) and np.array_equal(got, expected)
    # the layout formula of packed_gemm.h: Wp[(p K + k) 32 + j] = W[32 p + j, k], 0 padded
    W = np.zeros((-(-N // 32) * 32, K), dtype=dtype)
    W[:N] = Wt.T
    assert np.array_equal(got, W.reshape(-1, 32, K).transpose(0, 2, 1).ravel())
