"""Helpers for the training tests (test_training.py, test_training_fd.py).

Independent of fusedrnn's code: the references are torch autograd (for everything PyTorch has)
and central finite differences of fusedrnn's own forward pass (for what it lacks: GRU
reset_after=False, dropout masks).  Kept apart from conftest.py so the forward-test helpers and
these can change independently.
"""
import importlib
import importlib.util
import os
import sys

import numpy as np
import pytest

# float32: torch and fusedrnn both compute in float32 with different summation orders.
# atol is scaled by the largest |value| of the expected array (a gradient summed over T*B rows
# has entries near zero next to large ones).
GRAD_TOL = {np.dtype(np.float32): (1e-4, 1e-5), np.dtype(np.float64): (1e-9, 1e-10)}

from conftest import import_fusedrnn, import_torch  # noqa: E402,F401  (one copy)

# Silence torch's notice when it falls back from oneDNN for proj_size > 0 (not about fusedrnn).
TORCH_PROJ_WARNING = ("ignore:LSTM with projections is not supported with oneDNN:UserWarning")


def assert_grad_close(actual, expected, dtype, what):
    """Same shape; |a - e| <= rtol |e| + atol * max(1, max |e|)."""
    actual, expected = np.asarray(actual), np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    rtol, atol = GRAD_TOL[np.dtype(dtype)]
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)


def assert_tree_close(actual, expected, dtype, what):
    """assert_grad_close over nested tuples (LSTM states)."""
    if isinstance(expected, tuple):
        assert isinstance(actual, tuple) and len(actual) == len(expected), \
            f"{what}: expected a tuple of {len(expected)}, got {type(actual).__name__}"
        for k, (a, e) in enumerate(zip(actual, expected)):
            assert_tree_close(a, e, dtype, f"{what}[{k}]")
    else:
        assert_grad_close(actual, expected, dtype, what)


def assert_grads_close(grads, expected, dtype, what="grads"):
    """Exactly the expected keys, in the same order, each close."""
    assert list(grads) == list(expected), f"{what}: keys {list(grads)} != {list(expected)}"
    for name in expected:
        assert_grad_close(grads[name], expected[name], dtype, f"{what}[{name!r}]")


# --------------------------------------------------------------------------------------------
# data


def state_shapes(kind, num_layers, D, B, H, P, unbatched):
    """Shapes of h0 (and c0) for a layer: [(L*D, B, P), (L*D, B, H)] (no B when unbatched)."""
    lead = (num_layers * D,) if unbatched else (num_layers * D, B)
    return [lead + (P,), lead + (H,)] if kind == "lstm" else [lead + (H,)]


def random_state(rng, shapes, dtype, scale=0.5):
    """A random state: a tuple for two shapes (LSTM), a single array for one (GRU)."""
    arrs = tuple((scale * rng.standard_normal(s)).astype(dtype) for s in shapes)
    return arrs if len(arrs) == 2 else arrs[0]


def zeros_state(shapes, dtype):
    arrs = tuple(np.zeros(s, dtype=dtype) for s in shapes)
    return arrs if len(arrs) == 2 else arrs[0]


def input_shape(T, B, I, layout):
    return {"seq_first": (T, B, I), "batch_first": (B, T, I), "unbatched": (T, I)}[layout]


# --------------------------------------------------------------------------------------------
# torch twins


def torch_twin(model, kind):
    """torch.nn.{LSTM,GRU,LSTMCell,GRUCell} with `model`'s configuration and state_dict."""
    torch = import_torch()
    cfg = dict(input_size=model.input_size, hidden_size=model.hidden_size, bias=model.bias)
    if kind in ("lstm", "gru"):
        cfg.update(num_layers=model.num_layers, batch_first=model.batch_first,
                   bidirectional=model.bidirectional)
        if kind == "lstm" and model.proj_size:
            cfg["proj_size"] = model.proj_size
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "lstmcell": torch.nn.LSTMCell,
           "grucell": torch.nn.GRUCell}[kind]
    tm = cls(**cfg)
    tm = tm.double() if model.dtype == np.float64 else tm.float()
    tm.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()})
    return tm


def torch_grads(tm, x, hx, cotangents):
    """Run tm on x, hx (arrays; hx a tuple for LSTM) with autograd and back-propagate
    loss = sum_k sum(outputs[k] * cotangents[k]) (None cotangents are left out).

    outputs are flattened as (out, h_n[, c_n]) for layers, (h[, c]) for cells.
    Returns (outputs, dx, dhx, {name: param.grad}) as float64 numpy arrays; missing grads
    (a parameter the loss does not depend on) are zeros.
    """
    torch = import_torch()
    tensor = lambda a: torch.from_numpy(np.array(a)).requires_grad_(True)  # noqa: E731
    xt = tensor(x)
    hxt = tuple(tensor(h) for h in hx) if isinstance(hx, tuple) else tensor(hx)
    tm.zero_grad(set_to_none=True)
    result = tm(xt, hxt)
    flat = flatten(result)
    loss = 0
    for out, cot in zip(flat, cotangents):
        if cot is not None:
            loss = loss + (out * torch.from_numpy(np.array(cot))).sum()
    loss.backward()
    as_np = lambda t: t.detach().numpy().astype(np.float64)  # noqa: E731
    dhx = tuple(as_np(h.grad) for h in hxt) if isinstance(hxt, tuple) else as_np(hxt.grad)
    grads = {name: (as_np(p.grad) if p.grad is not None
                    else np.zeros(tuple(p.shape))) for name, p in tm.named_parameters()}
    return [as_np(t) for t in flat], as_np(xt.grad), dhx, grads


def flatten(tree):
    if isinstance(tree, (tuple, list)):
        return [leaf for sub in tree for leaf in flatten(sub)]
    return [tree]


# --------------------------------------------------------------------------------------------
# finite differences


def fd_check(loss, analytic, arrays, what, eps=1e-6, rtol=1e-6, atol=1e-8, max_entries=None,
             rng=None):
    """Central differences of the scalar `loss()` with respect to every entry of each array in
    `arrays` (name -> float64 array, perturbed in place and restored), compared to
    analytic[name].  max_entries: check a random subset of that many entries per array."""
    for name, arr in arrays.items():
        assert arr.dtype == np.float64, f"{name}: finite differences need float64"
        grad = np.asarray(analytic[name])
        assert grad.shape == arr.shape, f"{what} {name}: shape {grad.shape} != {arr.shape}"
        idxs = list(np.ndindex(arr.shape))
        if max_entries is not None and len(idxs) > max_entries:
            pick = rng.choice(len(idxs), size=max_entries, replace=False)
            idxs = [idxs[i] for i in pick]
        num = np.empty(len(idxs))
        for j, idx in enumerate(idxs):
            orig = arr[idx]
            arr[idx] = orig + eps
            up = loss()
            arr[idx] = orig - eps
            down = loss()
            arr[idx] = orig
            num[j] = (up - down) / (2 * eps)
        ana = np.array([grad[idx] for idx in idxs])
        np.testing.assert_allclose(ana, num, rtol=rtol, atol=atol,
                                   err_msg=f"{what}: d loss / d {name} vs finite differences")


def weighted_sum(outputs, cotangents):
    """sum_k sum(outputs[k] * cotangents[k]) over non-None cotangents."""
    return float(sum(np.sum(o * c) for o, c in zip(outputs, cotangents) if c is not None))


def expected_tape_nbytes(model, T, B, dropout_applied):
    """The tape size documented in docs/training.md: each array counted once,

    itemsize * ( L*D*B*(P [+ H for LSTM])                 initial states
               + T*B * ( I_0                               copy of the input
                       + sum_k [ D*P                       layer output
                                 + 2*I_k if k > 0 and dropout   dropped-out input and mask
                                 + D*S ] ) )               per direction,
    S = 5H (LSTM: gates, c_t), 4H (GRU reset_after: gates, W_hn h_{t-1} + b_hn),
    3H (GRU reset_after=False).
    """
    H, D, L = model.hidden_size, model.num_directions, model.num_layers
    P = getattr(model, "proj_size", 0) or H
    if not hasattr(model, "reset_after"):      # LSTM
        per_dir, state = 5 * H, P + H
    else:
        per_dir, state = (4 * H if model.reset_after else 3 * H), H
    floats = model.input_size
    for k in range(L):
        I_k = model.input_size if k == 0 else D * P
        mask = 2 * I_k if (k > 0 and dropout_applied and model.dropout > 0) else 0
        floats += D * P + mask + D * per_dir
    return np.dtype(model.dtype).itemsize * (T * B * floats + L * D * B * state)


def load_example(path):
    """Import an example script as a module (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module
