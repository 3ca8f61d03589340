"""Weight files: model.save(path) / fusedrnn.load(path) in .safetensors and .npz.

Round trips give bitwise the same model; files written by the libraries themselves (numpy,
safetensors) with PyTorch's names and a hand-written configuration load and give torch's
outputs; every truncated, corrupted or hostile file raises ValueError/TypeError without
allocating more than a few MB (tracemalloc), and nothing is ever unpickled.
"""
import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from _bad_files import BAD_NPZ, BAD_SAFETENSORS, W, config_array, doc, \
    npy_header_claiming, npz_bytes, npz_with_raw, st_bytes, write_bad
from conftest import assert_tree_close, flatten, import_fusedrnn, run_torch

fusedrnn = import_fusedrnn()
safetensors_numpy = pytest.importorskip("safetensors.numpy")

MODELS = {
    "lstm": lambda dt: fusedrnn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2,
                                     dropout=0.25, batch_first=True, dtype=dt, seed=1),
    "lstm-bi-ave": lambda dt: fusedrnn.LSTM(3, 5, bidirectional=True, merge_mode="ave",
                                            dtype=dt, seed=7),
    "lstm-nobias": lambda dt: fusedrnn.LSTM(3, 5, bias=False, dtype=dt, seed=2),
    "gru": lambda dt: fusedrnn.GRU(3, 5, num_layers=3, bidirectional=True, merge_mode="mul",
                                   dtype=dt, seed=3),
    "gru-orig-bf": lambda dt: fusedrnn.GRU(3, 5, reset_after=False, batch_first=True,
                                           bias=False, dtype=dt, seed=4),
    "lstmcell": lambda dt: fusedrnn.LSTMCell(3, 5, dtype=dt, seed=5),
    "grucell": lambda dt: fusedrnn.GRUCell(3, 5, reset_after=False, bias=False, dtype=dt, seed=6),
}
ARGS = ("input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout",
        "bidirectional", "proj_size", "reset_after", "dtype", "merge_mode")
EXTS = (".safetensors", ".npz")


def inputs(model):
    rng = np.random.default_rng(0)
    if "Cell" in type(model).__name__:
        return rng.standard_normal((4, 3))
    return rng.standard_normal((2, 6, 3))


def write_safetensors(path, weights, config=None, raw_config=None):
    meta = None if config is None and raw_config is None else \
        {"__config__": raw_config if raw_config is not None else doc("LSTM", **config)}
    safetensors_numpy.save_file(weights, str(path), metadata=meta)
    return path


def write_npz(path, weights, config=None, raw_config=None, compressed=False):
    members = dict(weights)
    if config is not None or raw_config is not None:
        text = raw_config if raw_config is not None else doc("LSTM", **config)
        members["__config__"] = np.frombuffer(text.encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        (np.savez_compressed if compressed else np.savez)(f, **members)
    return path


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", EXTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(MODELS))
def test_round_trip_bitwise(tmp_path, case, dtype, ext):
    model = MODELS[case](dtype)
    path = tmp_path / ("model" + ext)
    model.save(path)
    loaded = fusedrnn.load(path)
    assert type(loaded) is type(model)
    for name in ARGS:
        assert getattr(loaded, name, None) == getattr(model, name, None), name
    a, b = model.state_dict(), loaded.state_dict()
    assert list(a) == list(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes(), k
    x = inputs(model)
    for got, want in zip(flatten(loaded(x)), flatten(model(x))):
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()


@pytest.mark.parametrize("ext", EXTS)
def test_file_holds_torch_names_and_json_config_without_pickle(tmp_path, ext):
    """Read back with the libraries alone: PyTorch's keys, the JSON config, no object arrays."""
    torch = pytest.importorskip("torch")
    tm = torch.nn.LSTM(3, 5, num_layers=2, proj_size=2)
    model = fusedrnn.from_torch(tm)
    path = tmp_path / ("m" + ext)
    model.save(str(path))
    if ext == ".npz":
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        raw = arrays.pop("__config__")
        assert raw.dtype == np.uint8 and raw.ndim == 1
        config = json.loads(raw.tobytes().decode("utf-8"))
    else:
        from safetensors import safe_open
        with safe_open(str(path), framework="np") as f:
            config = json.loads(f.metadata()["__config__"])
            arrays = {k: f.get_tensor(k) for k in f.keys()}
    assert sorted(arrays) == sorted(tm.state_dict())
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(arrays[k], v.numpy(), err_msg=k)
    assert config == {"format": "fusedrnn", "format_version": 1, "class": "LSTM",
                      "config": dict(input_size=3, hidden_size=5, num_layers=2, bias=True,
                                     batch_first=False, dropout=0.0, bidirectional=False,
                                     proj_size=2, dtype="float32",
                                     **({"merge_mode": model.merge_mode}
                                        if hasattr(model, "merge_mode") else {}))}


@pytest.mark.parametrize("writer", ["safetensors", "npz", "npz-compressed"])
def test_files_written_by_the_libraries_load(tmp_path, writer):
    """A torch GRU's state_dict saved by safetensors / numpy directly, plus a hand-written
    config: loads, and gives torch's outputs."""
    torch = pytest.importorskip("torch")
    tm = torch.nn.GRU(3, 5, num_layers=2, bidirectional=True, batch_first=True).double().eval()
    weights = {k: v.numpy() for k, v in tm.state_dict().items()}
    text = doc("GRU", input_size=3, hidden_size=5, num_layers=2, bias=True, batch_first=True,
               dropout=0.0, bidirectional=True, reset_after=True, dtype="float64")
    if writer == "safetensors":
        path = write_safetensors(tmp_path / "g.safetensors", weights, raw_config=text)
    else:
        path = write_npz(tmp_path / "g.npz", weights, raw_config=text,
                         compressed=writer == "npz-compressed")
    model = fusedrnn.load(path)
    x = np.random.default_rng(1).standard_normal((2, 7, 3))
    assert_tree_close(model(x), run_torch(tm, x, None), np.float64)


def test_save_overwrites_and_accepts_upper_case_extension(tmp_path):
    a, b = fusedrnn.GRU(3, 4, seed=0), fusedrnn.GRU(3, 4, seed=1)
    path = tmp_path / "m.NPZ"
    a.save(path)
    b.save(path)
    np.testing.assert_array_equal(fusedrnn.load(path).weight_hh_l0, b.weight_hh_l0)


def test_packages_not_imported_by_import_or_npz():
    code = ("import sys, tempfile, os, fusedrnn\n"
            "p = os.path.join(tempfile.mkdtemp(), 'm.npz')\n"
            "fusedrnn.GRU(3, 4).save(p); fusedrnn.load(p)\n"
            "assert 'safetensors' not in sys.modules and 'dask' not in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ----------------------------------------------------------------------------- bad files


def assert_refused(path, exc, match):
    tracemalloc.start()
    try:
        with pytest.raises(exc, match=match) as info:
            fusedrnn.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value), f"message does not name the file: {info.value}"
    assert peak < 32 << 20, f"{peak} bytes allocated while refusing the file"


BAD_FILES = [(".safetensors", case) for case in BAD_SAFETENSORS] + \
    [(".npz", case) for case in BAD_NPZ]


@pytest.mark.parametrize("ext, case", BAD_FILES, ids=[e[1:] + "-" + c for e, c in BAD_FILES])
def test_bad_file(tmp_path, ext, case):
    _, exc, match = (BAD_SAFETENSORS if ext == ".safetensors" else BAD_NPZ)[case]
    assert_refused(write_bad(str(tmp_path), ext, case), exc, match)


def test_good_files_of_the_bad_cases_load(tmp_path):
    """The bad cases above are single defects: the same builders without one load."""
    (tmp_path / "a.safetensors").write_bytes(st_bytes(W()))
    (tmp_path / "a.npz").write_bytes(npz_bytes({**W(), "__config__": config_array()}))
    (tmp_path / "b.npz").write_bytes(npz_with_raw(
        {"weight_ih_l0.npy": npy_header_claiming((20, 3), data=W()["weight_ih_l0"].tobytes())},
        {**W(weight_ih_l0=None), "__config__": config_array()}))
    for name in ("a.safetensors", "a.npz", "b.npz"):
        m = fusedrnn.load(tmp_path / name)
        np.testing.assert_array_equal(m.weight_ih_l0, W()["weight_ih_l0"])


@pytest.mark.parametrize("path, exc, match", [
    ("model.pt", ValueError, r"\.safetensors or \.npz.*'\.pt'"),
    ("model", ValueError, r"\.safetensors or \.npz.*'none'"),
    (3, TypeError, "path must be a str or os.PathLike"),
])
def test_bad_path(path, exc, match):
    with pytest.raises(exc, match=match):
        fusedrnn.load(path)
    with pytest.raises(exc, match=match):
        fusedrnn.GRU(3, 4).save(path)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fusedrnn.load(tmp_path / "nope.npz")


def test_subclass_refused_by_save(tmp_path):
    class Mine(fusedrnn.GRU):
        pass
    with pytest.raises(TypeError, match="model must be a fusedrnn"):
        Mine(3, 4).save(tmp_path / "m.npz")
    assert not os.path.exists(tmp_path / "m.npz")


@pytest.mark.parametrize("ext", EXTS)
def test_every_corrupted_byte_is_refused_cleanly(tmp_path, ext):
    """Each byte of a small file changed in turn (and the file cut at each length): load
    either gives a model (a changed weight value, or a byte no reader looks at) or raises
    ValueError/TypeError naming the file, never another exception."""
    model = fusedrnn.GRUCell(2, 3, seed=0)
    good = tmp_path / ("good" + ext)
    model.save(good)
    raw = good.read_bytes()
    bad = tmp_path / ("bad" + ext)
    variants = [raw[:i] + bytes([raw[i] ^ 0x5A]) + raw[i + 1:] for i in range(len(raw))]
    variants += [raw[:n] for n in range(0, len(raw), 7)]
    refused = 0
    for data in variants:
        bad.write_bytes(data)
        try:
            fusedrnn.load(bad)
        except (ValueError, TypeError) as exc:
            assert str(bad) in str(exc), exc
            refused += 1
    assert refused > len(variants) // 2


@pytest.mark.parametrize("ext", [".npz", ".safetensors"])
@pytest.mark.parametrize("wrapper", ["Reversed", "GoBackwards"])
def test_wrapped_models_round_trip(tmp_path, wrapper, ext):
    """Reversed (from_onnx's reverse layers) and GoBackwards (from_keras's go_backwards) save
    their wrapped model and come back wrapped, with bitwise the same outputs."""
    if ext == ".safetensors":
        pytest.importorskip("safetensors")
    inner = fusedrnn.GRU(3, 5, num_layers=2, batch_first=True, seed=1)
    model = getattr(fusedrnn, wrapper)(inner)
    path = tmp_path / ("m" + ext)
    model.save(path)
    back = fusedrnn.load(path)
    assert type(back) is type(model) and type(back.model) is fusedrnn.GRU
    x = np.random.default_rng(0).standard_normal((2, 7, 3)).astype(np.float32)
    for a, b in zip(model(x), back(x)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("wrapper", ["Sequential", 3, ["Reversed"]])
def test_bad_wrapper_in_file(tmp_path, wrapper):
    """An unknown wrapper name in a file is refused before anything is built."""
    import json
    path = tmp_path / "m.npz"
    fusedrnn.GRU(3, 5, seed=1).save(path)
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    doc = json.loads(members["__config__"].tobytes().decode())
    doc["wrapper"] = wrapper
    members["__config__"] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **members)
    assert_refused(path, ValueError, "wrapper")


def test_wrapper_refusing_the_model_in_file(tmp_path):
    """A file saying Reversed around a bidirectional model (which Reversed refuses) raises the
    wrapper's error, naming the file."""
    path = tmp_path / "m.npz"
    fusedrnn.GRU(3, 5, bidirectional=True, seed=1).save(path)
    with np.load(path) as z:
        members = {k: z[k] for k in z.files}
    text = members["__config__"].tobytes().decode()
    text = text.replace('"class"', '"wrapper": "Reversed", "class"')
    members["__config__"] = np.frombuffer(text.encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **members)
    with pytest.raises(ValueError, match="Reversed") as info:
        fusedrnn.load(path)
    assert str(path) in str(info.value)


# An .npz weight member must hold exactly the bytes its .npy header claims: test_files covers
# members claiming more than they hold, not members with bytes left over (a corrupted or
# mis-written member whose header was cut, e.g. a (20, 3) header over a (20, 4) array).
@pytest.mark.parametrize("extra", [4, 4 * 20])
def test_member_with_bytes_past_its_shape_is_refused(tmp_path, extra):
    data = W()["weight_ih_l0"].tobytes() + b"\x01" * extra
    path = tmp_path / "m.npz"
    path.write_bytes(npz_with_raw({"weight_ih_l0.npy": npy_header_claiming((20, 3), data=data)},
                                  {**W(weight_ih_l0=None), "__config__": config_array()}))
    with pytest.raises(ValueError, match=r"weight_ih_l0.*claims shape \(20, 3\)"):
        fusedrnn.load(path)


def test_member_of_exact_size_loads(tmp_path):
    data = W()["weight_ih_l0"].tobytes()
    path = tmp_path / "m.npz"
    path.write_bytes(npz_with_raw({"weight_ih_l0.npy": npy_header_claiming((20, 3), data=data)},
                                  {**W(weight_ih_l0=None), "__config__": config_array()}))
    np.testing.assert_array_equal(fusedrnn.load(path).weight_ih_l0, W()["weight_ih_l0"])
