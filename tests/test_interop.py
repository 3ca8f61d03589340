"""fusedrnn.from_torch: the twin of a torch module gives its outputs (eval mode) and keeps its
options; anything else is refused; torch is imported only when asked."""
import subprocess
import sys

import numpy as np
import pytest

from conftest import assert_tree_close, import_fusedrnn, import_torch, run_torch

fusedrnn = import_fusedrnn()
torch = import_torch()

LAYERS = {
    "lstm": lambda: torch.nn.LSTM(5, 7),
    "lstm-L2-bi-proj-bf": lambda: torch.nn.LSTM(5, 7, num_layers=2, bidirectional=True,
                                                 proj_size=3, batch_first=True, dropout=0.25),
    "lstm-nobias-f64": lambda: torch.nn.LSTM(5, 7, bias=False).double(),
    "gru-L3-bi": lambda: torch.nn.GRU(5, 7, num_layers=3, bidirectional=True),
    "gru-bf-f64": lambda: torch.nn.GRU(5, 7, batch_first=True).double(),
}
CELLS = {
    "lstmcell": lambda: torch.nn.LSTMCell(5, 7),
    "grucell-f64-nobias": lambda: torch.nn.GRUCell(5, 7, bias=False).double(),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("case", list(LAYERS))
def test_layers(rng, case):
    torch.manual_seed(0)
    tm = LAYERS[case]().eval()
    m = fusedrnn.from_torch(tm)
    dtype = np.float64 if next(tm.parameters()).dtype == torch.float64 else np.float32
    assert type(m).__name__ == type(tm).__name__ and m.dtype == dtype
    for name in ("num_layers", "bias", "batch_first", "bidirectional", "dropout"):
        assert getattr(m, name) == getattr(tm, name), name
    assert getattr(m, "proj_size", 0) == getattr(tm, "proj_size", 0)
    x = rng.standard_normal((2, 4, 5) if tm.batch_first else (4, 2, 5)).astype(dtype)
    assert_tree_close(m(x), run_torch(tm, x, None), dtype)


@pytest.mark.parametrize("case", list(CELLS))
def test_cells(rng, case):
    torch.manual_seed(0)
    tm = CELLS[case]()
    m = fusedrnn.from_torch(tm)
    dtype = m.dtype.type
    x = rng.standard_normal((3, 5)).astype(dtype)
    assert_tree_close(m(x), run_torch(tm, x, None), dtype)


def test_module_unchanged_and_independent():
    tm = torch.nn.GRU(5, 7)
    before = {k: v.clone() for k, v in tm.state_dict().items()}
    m = fusedrnn.from_torch(tm)
    with torch.no_grad():
        for p in tm.parameters():
            p.fill_(1.0)
    for k, v in before.items():
        assert not np.array_equal(getattr(m, k), tm.state_dict()[k].numpy())
        np.testing.assert_array_equal(getattr(m, k), v.numpy())


@pytest.mark.parametrize("bad", [lambda: torch.nn.RNN(5, 7), lambda: torch.nn.Linear(5, 7),
                                 lambda: "lstm", lambda: torch.nn.LSTM(5, 7).half()])
def test_refused(bad):
    with pytest.raises((TypeError, ValueError), match="module"):
        fusedrnn.from_torch(bad())


@pytest.mark.parametrize("kind", ["lstm", "grucell"])
def test_tensors_that_require_grad(rng, kind):
    """A tensor that requires grad is taken as its values (detached) by forward and by
    forward_train alike (forward_train raised torch's RuntimeError)."""
    m = fusedrnn.LSTM(5, 7, seed=0) if kind == "lstm" else fusedrnn.GRUCell(5, 7, seed=0)
    x = rng.standard_normal((4, 3, 5) if kind == "lstm" else (3, 5)).astype(np.float32)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    want = m(x)
    assert_tree_close(m(xt), want, np.float32)
    got = m.forward_train(xt)
    assert_tree_close(got[:-1] if kind == "lstm" else got[0], want, np.float32)


def test_bfloat16_tensors_are_cast():
    """bfloat16 (which numpy has not) as input, in a state_dict and assigned: cast to the
    model's dtype exactly, as float16 is (numpy raised a TypeError naming nothing)."""
    torch.manual_seed(0)
    tm = torch.nn.GRU(5, 7).to(torch.bfloat16)
    m = fusedrnn.GRU(5, 7)
    m.load_state_dict(tm.state_dict())
    for name, value in tm.state_dict().items():
        np.testing.assert_array_equal(getattr(m, name), value.float().numpy())
    m.weight_hh_l0 = tm.weight_hh_l0 * 2         # a bfloat16 tensor that requires grad
    np.testing.assert_array_equal(m.weight_hh_l0, 2 * tm.weight_hh_l0.detach().float().numpy())
    x = torch.randn(4, 3, 5).to(torch.bfloat16)
    assert_tree_close(m(x), m(x.float().numpy()), np.float32)


def test_torch_not_imported_by_the_package():
    code = "import sys, fusedrnn; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
