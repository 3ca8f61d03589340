"""The ISA switch (kernels/fr_isa.h) and the packed GEMM on every SIMD path of this CPU.

The whole suite can also run on one forced path: FUSEDRNN_ISA=avx2 (or scalar, avx512).
Here each path is forced in-process through fusedrnn._lstm's test hook; only that module's
switch is affected (each compiled module has its own).
"""
import os

import numpy as np
import pytest

from conftest import (DTYPES, ISAS, assert_tree_close, import_fusedrnn, layer_cfg, layer_data,
                      make_pair, run_torch)

import_fusedrnn()
_lstm = pytest.importorskip("fusedrnn._lstm")


def test_switch_names_and_clamping():
    auto = _lstm.isa_memview(0)
    try:
        assert auto in ISAS
        env = os.environ.get("FUSEDRNN_ISA", "auto").lower()
        if env in ISAS and ISAS[env] <= ISAS[auto]:
            assert auto == env
        assert _lstm.isa_memview(ISAS["scalar"]) == "scalar"
        # a path the CPU lacks is clamped down to the best it has, never above it
        best = _lstm.isa_memview(ISAS["avx512"])
        assert ISAS[best] >= ISAS[auto]
        assert _lstm.isa_memview(99) == best
        assert _lstm.isa_memview() == best   # no argument: only reports
    finally:
        _lstm.isa_memview(0)
    assert _lstm.isa_memview() == auto


# batch sizes crossing the GEMM's blocking thresholds: 1 (one row, every path), 3 (AVX2
# float32 whole-panel kernel), 4-6 (AVX2 6-row blocks), 12-13 (AVX-512 float32 12-row blocks),
# 30 (several row blocks per k-block); H = 40 gives 160 gate columns (5 panels, the last partial)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("B", [1, 2, 3, 4, 6, 7, 12, 13, 30])
def test_lstm_forward_on_each_path(isa, rng, dtype, B):
    cfg = layer_cfg(7, 40)
    tm, fm = make_pair("lstm", dtype, 0, **cfg)
    x, h = layer_data(rng, "lstm", cfg, 3, B, hx=True, dtype=dtype)
    assert_tree_close(fm(x, h), run_torch(tm, x, h), dtype, f"lstm on {isa}")


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("N, K", [(1, 1), (5, 3), (32, 7), (33, 64), (70, 45), (100, 130)])
def test_pack_trans_matches_pack_of_transposed_copy(rng, dtype, N, K):
    size = -(-N // 32) * 32 * K
    Wt = rng.standard_normal((K, N)).astype(dtype)          # W^T stored (K, N)
    expected = np.full(size, np.nan, dtype=dtype)
    _lstm.pack_memview(np.ascontiguousarray(Wt.T), expected, False)
    got = np.full(size, np.nan, dtype=dtype)
    _lstm.pack_memview(Wt, got, True)
    assert np.array_equal(got, expected)
    # the layout formula of packed_gemm.h: Wp[(p K + k) 32 + j] = W[32 p + j, k], 0 padded
    W = np.zeros((-(-N // 32) * 32, K), dtype=dtype)
    W[:N] = Wt.T
    assert np.array_equal(got, W.reshape(-1, 32, K).transpose(0, 2, 1).ravel())


def test_pack_rejects_a_short_buffer():
    with pytest.raises(ValueError, match="Wp must have 64 elements, got 63"):
        _lstm.pack_memview(np.zeros((2, 32), np.float32), np.zeros(63, np.float32), True)
