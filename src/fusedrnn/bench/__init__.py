"""Speed of fusedrnn against the peers a user would pick: NumPy, PyTorch and ONNX Runtime.

Run ``python -m fusedrnn.bench`` (curated subset, < 2 min), ``--quick`` (< 30 s), ``--full``
(the whole matrix of issue 4, the latency rows of issue 7 and the variable-lengths rows of
issue 9) or ``--tiny`` (a smoke test);
``--help`` lists the options. The same package provides the peers, cases and timing used by the
pytest-benchmark suites in ``bench/``. ``import fusedrnn`` never imports it.

One module per concern:
- ``configs``: what is measured (configurations, mode matrices, FLOP and packed-byte counts);
- ``cases``: same weights and inputs for every implementation, and the output check;
- ``numpy_ref``: the plain NumPy forward pass (a peer, and the float64 ground truth);
- ``peers``: how fusedrnn, NumPy, PyTorch and ONNX Runtime (its graph too) are built and called;
- ``timing``: thread pinning, median timing, GEMM peak, read bandwidth, quiet-machine check;
- ``machine``: CPU, versions, thread pools, fusedrnn's SIMD path;
- ``measure``: verify then time every row; GFLOP/s, % peak and % stream (see its docstring
  for how the numbers are made honest);
- ``report``: tables and results.json; ``chart``: the matplotlib chart; ``__main__``: the CLI.

Optional peers (torch, onnx + onnxruntime, matplotlib for the chart) are imported lazily; one that
is missing is reported as skipped with a note.
"""

from .cases import Case, compare, draw_lengths, make_case, tolerance
from .configs import (DEFAULT_CONFIGS, FULL_CONFIGS, LATENCY_CONFIGS, LENGTHS_CONFIGS,
                      QUICK_CONFIGS, TINY_CONFIGS, Config, flops, recurrent_bytes)
from .measure import run, run_case
from .peers import (FORWARD_BUILDERS, IMPL_LABELS, IMPLS, LATENCY_BUILDERS, LENGTHS_BUILDERS,
                    TRAIN_BUILDERS, PeerUnavailable, Runner, build_fusedrnn,
                    build_fusedrnn_padded, build_fusedrnn_train, build_numpy, build_ort,
                    build_torch, build_torch_train, builders_for, chosen, onnx_model, reference)
from .timing import (measure_gemm_peak, measure_read_bandwidth, parse_threads, pinned_threads,
                     time_calls)

__all__ = [
    "Config", "Case", "Runner", "PeerUnavailable",
    "QUICK_CONFIGS", "DEFAULT_CONFIGS", "FULL_CONFIGS", "LATENCY_CONFIGS", "LENGTHS_CONFIGS",
    "TINY_CONFIGS",
    "IMPLS", "IMPL_LABELS", "FORWARD_BUILDERS", "TRAIN_BUILDERS", "LATENCY_BUILDERS",
    "LENGTHS_BUILDERS", "builders_for", "chosen", "build_fusedrnn", "build_fusedrnn_padded",
    "build_numpy", "build_torch", "build_ort", "build_fusedrnn_train", "build_torch_train",
    "onnx_model", "make_case", "draw_lengths", "reference", "compare", "tolerance", "flops",
    "recurrent_bytes",
    "pinned_threads", "time_calls", "measure_gemm_peak", "measure_read_bandwidth",
    "parse_threads", "run_case", "run",
]
