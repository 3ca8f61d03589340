"""Score many sequences with fusedrnn on Dask, and measure the throughput (docs/scale-out.md).

    python examples/score_on_dask.py                      # LocalClusters of 1 and 2 workers
    python examples/score_on_dask.py --workers 1 2 4      # other sizes
    python examples/score_on_dask.py --scheduler tcp://10.0.0.5:8786   # a running cluster

The model (LSTM, 2 layers, hidden 256 by default) is saved to a weight file and loaded back, as
a scoring job would; x (N sequences of T steps) is generated on the workers and persisted
first, so the timed part is fusedrnn.dask.predict plus a per-sequence mean of its output
(what a job keeps instead of shipping N x T x H floats back) and the final states.  Each run is
timed twice: the first includes shipping the model and packing its weights on each worker.
"""
import argparse
import os
import platform
import subprocess
import tempfile
import time

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scheduler", help="address of a running Dask scheduler (default: "
                   "LocalClusters of --workers processes, 1 thread each)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--n", type=int, default=4096, help="sequences")
    p.add_argument("--chunk", type=int, default=256, help="sequences per chunk (task)")
    p.add_argument("--t", type=int, default=100, help="steps per sequence")
    p.add_argument("--features", type=int, default=128)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--in-process", action="store_true",
                   help="also time one in-process call on all N sequences (1 and all threads)")
    args = p.parse_args()

    import dask
    import dask.array as da
    import distributed
    import fusedrnn
    import fusedrnn.dask

    model = fusedrnn.LSTM(args.features, args.hidden, num_layers=args.layers, batch_first=True,
                          dtype=np.dtype(args.dtype), seed=0)
    with tempfile.TemporaryDirectory() as d:
        model.save(os.path.join(d, "model.safetensors"))
        model = fusedrnn.load(os.path.join(d, "model.safetensors"))

    print(f"# {platform.node()}: {cpu_model()}, {os.cpu_count()} cores; fusedrnn isa "
          f"{fusedrnn.isa()}; uptime: {uptime()}")
    print(f"# LSTM({args.features}, {args.hidden}, num_layers={args.layers}) {args.dtype}, "
          f"N={args.n} sequences of T={args.t} in chunks of {args.chunk}")
    print("| workers | run | seconds | sequences/s |")
    print("|---|---|---|---|")

    def run(client, label):
        x = da.random.default_rng(0).standard_normal((args.n, args.t, args.features),
                                                     chunks=(args.chunk, -1, -1),
                                                     dtype=np.dtype(args.dtype))
        x = client.persist(x)
        distributed.wait(x)
        for k in range(args.repeat):
            out, (h_n, c_n) = fusedrnn.dask.predict(model, x)
            t0 = time.perf_counter()
            dask.compute(out.mean(axis=1), h_n, c_n)
            dt = time.perf_counter() - t0
            print(f"| {label} | {'first' if k == 0 else k + 1} | {dt:.2f} | "
                  f"{args.n / dt:.0f} |", flush=True)

    if args.scheduler:
        with distributed.Client(args.scheduler) as client:
            run(client, len(client.scheduler_info()["workers"]))
    else:
        for n in args.workers:
            with distributed.LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                          dashboard_address=None) as cluster, \
                    distributed.Client(cluster) as client:
                run(client, n)
    if args.in_process:
        x = np.random.default_rng(0).standard_normal((args.n, args.t, args.features))
        x = x.astype(args.dtype)
        for threads in (1, os.cpu_count()):
            fusedrnn.set_num_threads(threads)
            for k in range(args.repeat):
                t0 = time.perf_counter()
                model(x)
                dt = time.perf_counter() - t0
                print(f"| in-process, {threads} thread(s) | {k + 1} | {dt:.2f} | "
                      f"{args.n / dt:.0f} |", flush=True)
        fusedrnn.set_num_threads(None)
    print(f"# uptime after: {uptime()}")


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines()
                    if l.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
