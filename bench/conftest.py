"""pytest-benchmark suites for fusedrnn against NumPy, PyTorch and ONNX Runtime.

    pytest bench/ --benchmark-only                      # curated subset, 1 thread and all cores
    pytest bench/ --benchmark-only -m full              # the whole matrix of issue 4 (long)
    FUSEDRNN_BENCH_FULL=1 pytest bench/ --benchmark-only    # same as -m full
    FUSEDRNN_BENCH_THREADS=1 pytest bench/ --benchmark-only # thread counts ("1,2", "all", ...)
    FUSEDRNN_BENCH_BUDGET=0.5 ...                       # seconds of timing per benchmark

Benchmarks are grouped by configuration and thread count, so each table printed by
pytest-benchmark sets the implementations side by side. The peers, the weights, the float64
reference and the thread pinning all come from ``fusedrnn.bench`` (the package behind
``python -m fusedrnn.bench``); every benchmark checks its output against the reference before it
is timed and fails, untimed, when it disagrees. Peers that are not installed are skipped.
"""

import os
import re

import pytest

from fusedrnn import bench as fb


def _full_enabled(config) -> bool:
    markexpr = getattr(config.option, "markexpr", "") or ""
    selected = re.search(r"(?<!not )\bfull\b", markexpr) is not None
    return os.environ.get("FUSEDRNN_BENCH_FULL", "") not in ("", "0") or selected


def pytest_configure(config):
    config.addinivalue_line("markers", "full: part of the whole benchmark matrix of issue 4 "
                                       "(every item); selected with -m full")
    config.addinivalue_line("markers", "default: in the curated subset run by default")


def pytest_collection_modifyitems(config, items):
    """Without -m full / FUSEDRNN_BENCH_FULL=1, keep only the curated subset; then order items
    by configuration so that consecutive benchmarks share one cached reference."""
    if not _full_enabled(config):
        kept = [it for it in items if it.get_closest_marker("default") is not None]
        dropped = [it for it in items if it.get_closest_marker("default") is None]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = kept
    order = {c: i for i, c in enumerate(fb.FULL_CONFIGS)}

    def key(it):
        cs = getattr(it, "callspec", None)
        cfg = cs.params.get("cfg") if cs else None
        return (order.get(cfg, -1), cs.params.get("threads", 0) if cs else 0)

    items.sort(key=key)


def pytest_generate_tests(metafunc):
    """Parametrise ``cfg`` / ``threads`` / ``impl`` from the test module's CONFIGS and IMPLS;
    parameters are ordered so that items group by configuration."""
    names = metafunc.fixturenames
    if "cfg" in names:
        metafunc.parametrize("cfg", config_params(metafunc.module.CONFIGS))
    if "threads" in names:
        metafunc.parametrize("threads", thread_params())
    if "impl" in names:
        metafunc.parametrize("impl", list(metafunc.module.IMPLS))


def config_params(configs):
    """pytest.param per config: id from its name, marked full (all) and default (subset)."""
    default = set(fb.DEFAULT_CONFIGS)
    return [pytest.param(c, id=c.name.replace(" ", "-"),
                         marks=[pytest.mark.full] + ([pytest.mark.default] if c in default
                                                     else []))
            for c in configs]


def thread_params():
    spec = os.environ.get("FUSEDRNN_BENCH_THREADS", "1,all")
    return [pytest.param(n, id=f"{n}t") for n in fb.parse_threads(spec)]


class _ReferenceCache:
    """The last few (case, float64 reference) pairs: references of big configs are large.
    ``full_length``: the reference of the case without its lengths (fusedrnn's padded run)."""

    def __init__(self, size=2):
        self.size, self.items = size, []

    def get(self, cfg, full_length=False):
        key = (cfg, full_length)
        for k, val in self.items:
            if k == key:
                return val
        case = fb.make_case(cfg)
        try:
            ref = fb.reference(case.full_length() if full_length else case)
        except fb.PeerUnavailable as e:
            ref = e
        self.items = ([(key, (case, ref))] + self.items)[: self.size]
        return case, ref


@pytest.fixture(scope="session")
def reference_cache():
    return _ReferenceCache()


@pytest.fixture
def rnn_bench(benchmark, reference_cache):
    """``rnn_bench(cfg, impl, threads)``: build the peer, verify it, then time it."""
    budget = float(os.environ.get("FUSEDRNN_BENCH_BUDGET", "0.2"))

    def run(cfg, impl, threads):
        builders = fb.builders_for(cfg)
        if impl not in builders:
            pytest.skip(f"{impl} is not timed on {cfg.kind} rows")
        case, _ = reference_cache.get(cfg)
        try:
            runner = builders[impl](case, threads)
        except fb.PeerUnavailable as e:
            pytest.skip(str(e))
        case, ref = reference_cache.get(cfg, runner.full_length)
        if isinstance(ref, Exception):
            pytest.skip(f"no float64 reference: {ref}")
        benchmark.group = f"{cfg.name} | {threads} thread{'s' if threads > 1 else ''}"
        benchmark.extra_info.update(impl=impl, config=cfg.name, threads=threads,
                                    gflop=fb.flops(cfg, case.lengths) / 1e9)
        with fb.pinned_threads(threads):
            ok, err, msg = fb.compare(ref, runner.canonical(runner()), cfg)
            benchmark.extra_info["max_err"] = err
            if not ok:
                pytest.fail(f"{impl} disagrees with the float64 reference, not timed: {msg}")
            one = fb.time_calls(runner, 0.0, min_reps=1, max_reps=1)[0]   # warm, and a gauge
            rounds = max(3, min(50, int(budget / max(one, 1e-9))))
            benchmark.pedantic(runner, rounds=rounds, iterations=1, warmup_rounds=0)
        stats = getattr(benchmark, "stats", None)
        if stats is not None:
            benchmark.extra_info["gflops_median"] = (fb.flops(cfg, case.lengths)
                                                     / stats.stats.median / 1e9)

    return run
