"""What the numbers were measured on: CPU, cores, library versions, thread pools, SIMD path."""

from __future__ import annotations

import os
import platform
import sys
from typing import Optional

from .peers import PeerUnavailable, fusedrnn_module
from .timing import available_cores


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _physical_cores() -> Optional[int]:
    try:
        cores, phys, core = set(), None, None
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                elif not line.strip():
                    if core is not None:
                        cores.add((phys, core))
                    phys = core = None
        if core is not None:
            cores.add((phys, core))
        return len(cores) or None
    except OSError:
        return None


def _version(modname: str) -> Optional[str]:
    mod = sys.modules.get(modname)
    if mod is None:
        try:
            mod = __import__(modname)
        except Exception:
            mod = None
    v = getattr(mod, "__version__", None) if mod is not None else None
    if v is None:
        try:
            from importlib.metadata import version
            v = version(modname)
        except Exception:
            v = None
    return None if v is None else str(v)


def fusedrnn_isa() -> str:
    """The SIMD path fusedrnn's kernels use ("avx512", "avx2", "scalar"; "unknown" when this
    fusedrnn has no ``isa()``)."""
    try:
        isa = getattr(fusedrnn_module(), "isa", None)
    except PeerUnavailable:
        return "unknown"
    return str(isa()) if callable(isa) else "unknown"


def machine_info() -> dict:
    """CPU, cores, library versions and BLAS / OpenMP pools (imports the optional peers)."""
    info = {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": available_cores(),
        "physical_cores": _physical_cores(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("numpy", "torch", "onnxruntime", "onnx")},
        "env": {k: os.environ[k] for k in sorted(os.environ)
                if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "GOTO", "KMP_"))},
    }
    try:
        fr = fusedrnn_module()
        info["versions"]["fusedrnn"] = _version("fusedrnn") or getattr(fr, "__version__", None)
    except PeerUnavailable as e:
        info["versions"]["fusedrnn"] = None
        info["fusedrnn_note"] = str(e)
    info["isa"] = fusedrnn_isa()
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            info["torch_parallel"] = torch.__config__.parallel_info().splitlines()[:3]
            info["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
        except Exception:
            pass
    try:
        from threadpoolctl import threadpool_info
        info["threadpools"] = [
            {k: p.get(k) for k in ("user_api", "internal_api", "prefix", "version",
                                    "architecture", "threading_layer", "num_threads")}
            for p in threadpool_info()]
    except Exception as e:      # pragma: no cover
        info["threadpools"] = f"unavailable: {e}"
    return info


def format_machine_info(info: dict) -> str:
    lines = [f"CPU: {info['cpu']}",
             f"cores: {info['physical_cores']} physical, {info['logical_cpus']} logical, "
             f"{info['usable_cpus']} usable by this process",
             f"Python {info['python']} on {info['platform']}",
             "versions: " + ", ".join(f"{k} {v or 'not installed'}"
                                      for k, v in info["versions"].items()),
             f"fusedrnn SIMD path: {info.get('isa', 'unknown')}"]
    if info.get("fusedrnn_note"):
        lines.append(f"fusedrnn: {info['fusedrnn_note']}")
    if info.get("torch_parallel"):
        lines.append("torch: " + "; ".join(s.strip() for s in info["torch_parallel"])
                     + f"; mkldnn available: {info.get('torch_mkldnn')}")
    pools = info.get("threadpools")
    if isinstance(pools, list):
        for p in pools:
            extra = ", ".join(f"{k}={p[k]}" for k in ("version", "architecture",
                                                      "threading_layer") if p.get(k))
            lines.append(f"threadpool: {p['user_api']} {p['internal_api']} ({p['prefix']}"
                         f"{', ' + extra if extra else ''}), {p['num_threads']} threads")
    if info.get("env"):
        lines.append("environment: " + " ".join(f"{k}={v}" for k, v in info["env"].items()))
    return "\n".join(lines)
