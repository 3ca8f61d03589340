"""Weight files: model.save(path) / fusedrnn.load(path) in .safetensors and .npz.

Round trips give bitwise the same model; files written by the libraries themselves (numpy,
safetensors) with PyTorch's names and a hand-written configuration load and give torch's
outputs; every truncated, corrupted or hostile file raises ValueError/TypeError without
allocating more than a few MB (tracemalloc), and nothing is ever unpickled.
"""
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
import zipfile

import numpy as np
import pytest

from conftest import assert_tree_close, flatten, import_fusedrnn, run_torch

fusedrnn = import_fusedrnn()
safetensors_numpy = pytest.importorskip("safetensors.numpy")

MODELS = {
    "lstm": lambda dt: fusedrnn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2,
                                     dropout=0.25, batch_first=True, dtype=dt, seed=1),
    "lstm-nobias": lambda dt: fusedrnn.LSTM(3, 5, bias=False, dtype=dt, seed=2),
    "gru": lambda dt: fusedrnn.GRU(3, 5, num_layers=3, bidirectional=True, dtype=dt, seed=3),
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


def doc(cls, **config):
    """The configuration document as docs/api.md describes it, written by hand."""
    return json.dumps({"format": "fusedrnn", "format_version": 1, "class": cls,
                       "config": config})


LSTM_CONFIG = dict(input_size=3, hidden_size=5, num_layers=1, bias=True, batch_first=False,
                   dropout=0.0, bidirectional=False, proj_size=0, dtype="float32")


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


def lstm_weights(dtype=np.float32, **change):
    w = fusedrnn.LSTM(3, 5, dtype=dtype, seed=0).state_dict()
    for k, v in change.items():
        if v is None:
            del w[k]
        else:
            w[k] = v
    return dict(w)


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


def st_bytes(weights, config=LSTM_CONFIG):
    buf = io.BytesIO(safetensors_numpy.save({k: np.ascontiguousarray(v)
                                              for k, v in weights.items()},
                                             metadata={"__config__": doc("LSTM", **config)}))
    return buf.getvalue()


def st_with_header(header, data=b""):
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def npz_bytes(members):
    """A zip of .npy members written by numpy's own writer (members: name -> array)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, arr in members.items():
            with z.open(name + ".npy", "w") as f:
                np.lib.format.write_array(f, np.asanyarray(arr), allow_pickle=True)
    return buf.getvalue()


def deflated_member_claiming_4gb():
    """A compressed .npz whose central directory says weight_ih_l0.npy inflates to ~4 GB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, arr in {**W(), "__config__": config_array()}.items():
            with z.open(name + ".npy", "w") as f:
                np.lib.format.write_array(f, arr)
    raw = bytearray(buf.getvalue())
    entry = raw.index(b"PK\x01\x02")
    while raw[entry + 46:entry + 46 + 16] != b"weight_ih_l0.npy":
        entry = raw.index(b"PK\x01\x02", entry + 4)
    raw[entry + 24:entry + 28] = struct.pack("<I", 0xFFFFFFF0)   # uncompressed size
    return bytes(raw)


def config_array(config=LSTM_CONFIG, cls="LSTM"):
    return np.frombuffer(doc(cls, **config).encode(), np.uint8)


def npy_header_claiming(shape, dtype="<f4", data=b"\0" * 64, version=1):
    """An .npy member whose header claims `shape` over a few bytes of data."""
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (63 - len(header) % 64) + b"\n"
    length = struct.pack("<H" if version == 1 else "<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header + data


def npz_with_raw(members_raw, base=None):
    """Zip of raw member bytes (name -> bytes), added to `base` members (name -> array)."""
    buf = io.BytesIO(npz_bytes(base or {}))
    with zipfile.ZipFile(buf, "a") as z:
        for name, raw in members_raw.items():
            z.writestr(name, raw)
    return buf.getvalue()


def cfg(**change):
    """LSTM_CONFIG changed (value None: removed)."""
    return {k: v for k, v in {**LSTM_CONFIG, **change}.items() if v is not None}


W = lstm_weights


BAD_SAFETENSORS = {
    # name: (bytes, exception, message regex)
    "empty": (lambda: b"", ValueError, "truncated"),
    "header-length-absurd": (lambda: struct.pack("<Q", 2**62) + b"{}", ValueError,
                             "header length 4611686018427387904 exceeds"),
    "header-length-past-end": (lambda: st_bytes(W())[:8] + b"{}", ValueError, "exceeds"),
    "truncated-data": (lambda: st_bytes(W())[:-10], ValueError, "not a valid safetensors"),
    "header-not-json": (lambda: struct.pack("<Q", 4) + b"{{{{" + b"\0" * 8, ValueError,
                        "not a valid safetensors"),
    "tensor-claims-terabytes": (
        lambda: st_with_header({"w": {"dtype": "F32", "shape": [2**20, 2**20],
                                      "data_offsets": [0, 2**42]}}, b"\0" * 16),
        ValueError, "not a valid safetensors"),
    "no-config": (lambda: safetensors_numpy.save(W()), ValueError, "no fusedrnn configuration"),
    "config-not-json": (lambda: safetensors_numpy.save(W(), metadata={"__config__": "{oops"}),
                        ValueError, "not valid JSON"),
    "config-deeply-nested": (lambda: safetensors_numpy.save(
        W(), metadata={"__config__": "[" * 100000 + "]" * 100000}), ValueError, "JSON"),
    "config-not-fusedrnn": (lambda: safetensors_numpy.save(W(), metadata={"__config__": "{}"}),
                            ValueError, "format"),
    "wrong-shape": (lambda: st_bytes(W(weight_hh_l0=np.zeros((20, 4), np.float32))),
                    ValueError, r"weight_hh_l0.*shape \(20, 5\).*\(20, 4\)"),
    "wrong-dtype": (lambda: st_bytes(W(bias_ih_l0=np.zeros(20))), ValueError,
                    "bias_ih_l0.*float32.*float64"),
    "float16": (lambda: st_bytes(W(bias_ih_l0=np.zeros(20, np.float16))), ValueError,
                "bias_ih_l0.*F16"),
    "missing-key": (lambda: st_bytes(W(bias_hh_l0=None)), ValueError, r"missing \['bias_hh_l0'\]"),
    "extra-key": (lambda: st_bytes(W(extra=np.zeros(3, np.float32))), ValueError,
                  r"unexpected \['extra'\]"),
    "config-sizes-claim-terabytes": (lambda: st_bytes(W(), cfg(input_size=2**40,
                                                               hidden_size=2**40)),
                                     ValueError, "weight_ih_l0.*shape"),
    "config-num-layers-absurd": (lambda: st_bytes(W(), cfg(num_layers=10**9)), ValueError,
                                 "num_layers"),
    "config-size-type": (lambda: st_bytes(W(), cfg(hidden_size="5")), TypeError,
                         "config: hidden_size must be an integer"),
    "config-size-bool": (lambda: st_bytes(W(), cfg(bias=1)), TypeError, "bias must be a bool"),
    "config-size-zero": (lambda: st_bytes(W(), cfg(hidden_size=0)), ValueError, "hidden_size"),
    "config-proj-too-large": (lambda: st_bytes(W(), cfg(proj_size=5)), ValueError, "proj_size"),
    "config-dropout-nan": (lambda: st_bytes(W(), cfg(dropout=float("nan"))), ValueError,
                           "dropout"),
    "config-dtype": (lambda: st_bytes(W(), cfg(dtype="object")), ValueError, "dtype"),
    "config-missing-arg": (lambda: st_bytes(W(), cfg(batch_first=None)),
                           ValueError, r"missing \['batch_first'\]"),
    "config-extra-arg": (lambda: st_bytes(W(), cfg(seed=3)), ValueError,
                         r"unexpected \['seed'\]"),
    "config-unknown-class": (lambda: safetensors_numpy.save(W(), metadata={"__config__": json.dumps(
        {"format": "fusedrnn", "format_version": 1, "class": "os.system", "config": {}})}),
        ValueError, "class must be one of"),
    "config-newer-version": (lambda: safetensors_numpy.save(W(), metadata={"__config__": json.dumps(
        {"format": "fusedrnn", "format_version": 2, "class": "LSTM", "config": LSTM_CONFIG})}),
        ValueError, "format_version"),
}

BAD_NPZ = {
    "empty": (lambda: b"", ValueError, "not a valid .npz"),
    "pickle-disguised": (lambda: pickle.dumps(fusedrnn.LSTM(3, 5)), ValueError,
                         "not a valid .npz"),
    "npy-not-npz": (lambda: npy_header_claiming((16,)), ValueError, "not a valid .npz"),
    "truncated": (lambda: npz_bytes({**W(), "__config__": config_array()})[:-30], ValueError,
                  "not a valid .npz"),
    "corrupted-data": (lambda: npz_bytes({**W(), "__config__": config_array()})
                       .replace(W()["weight_ih_l0"].tobytes()[:16], b"\xff" * 16), ValueError,
                       "weight_ih_l0.*(CRC|Bad)"),
    "no-config": (lambda: npz_bytes(W()), ValueError, "no fusedrnn configuration"),
    "config-pickled-object": (lambda: npz_bytes({**W(), "__config__": np.array(
        [{"format": "fusedrnn"}], dtype=object)}), ValueError, "__config__.*Python objects"),
    "config-string-array": (lambda: npz_bytes({**W(), "__config__": np.array(
        doc("LSTM", **LSTM_CONFIG))}), ValueError, "__config__ must be a 1-d uint8"),
    "config-claims-gigabytes": (lambda: npz_with_raw(
        {"__config__.npy": npy_header_claiming((2**31,), "|u1")}, W()), ValueError, "claims"),
    "config-not-utf8": (lambda: npz_bytes({**W(), "__config__": np.frombuffer(
        b"\xff\xfe{}", np.uint8)}), ValueError, "UTF-8|JSON"),
    "weight-object-array": (lambda: npz_bytes({**W(weight_ih_l0=np.array(
        [None] * 3, dtype=object)), "__config__": config_array()}), ValueError,
        "weight_ih_l0.*Python objects"),
    "weight-claims-terabytes": (lambda: npz_with_raw(
        {"weight_ih_l0.npy": npy_header_claiming((2**20, 2**20))},
        {**W(weight_ih_l0=None), "__config__": config_array()}), ValueError,
        r"weight_ih_l0.*claims shape \(1048576, 1048576\)"),
    "weight-header-v2-absurd-length": (lambda: npz_with_raw(
        {"weight_ih_l0.npy": b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**32 - 1) + b"{"},
        {**W(weight_ih_l0=None), "__config__": config_array()}), ValueError,
        "weight_ih_l0.*not an .npy"),
    "weight-header-garbage": (lambda: npz_with_raw(
        {"weight_ih_l0.npy": b"\x93NUMPY\x01\x00\x10\x00" + b"__import__('os')"},
        {**W(weight_ih_l0=None), "__config__": config_array()}), ValueError,
        "weight_ih_l0.*not an .npy"),
    "deflated-size-lie": (deflated_member_claiming_4gb, ValueError,
                          r"weight_ih_l0.*claims 4294967280 bytes"),
    "member-not-npy": (lambda: npz_with_raw({"evil.pkl": b"x"}, {**W(), "__config__":
                                                                   config_array()}),
                       ValueError, "evil.pkl"),
    "wrong-shape": (lambda: npz_bytes({**W(weight_hh_l0=np.zeros((20, 4), np.float32)),
                                       "__config__": config_array()}), ValueError,
                    "weight_hh_l0.*shape"),
    "wrong-dtype": (lambda: npz_bytes({**W(bias_hh_l0=np.zeros(20)),
                                       "__config__": config_array()}), ValueError,
                    "bias_hh_l0.*float32.*float64"),
    "big-endian": (lambda: npz_bytes({**W(bias_hh_l0=np.zeros(20, ">f4")),
                                      "__config__": config_array()}), ValueError,
                   "bias_hh_l0.*>f4"),
    "missing-key": (lambda: npz_bytes({**W(weight_ih_l0=None), "__config__": config_array()}),
                    ValueError, r"missing \['weight_ih_l0'\]"),
    "extra-key": (lambda: npz_bytes({**W(bias=np.zeros(3, np.float32)),
                                     "__config__": config_array()}), ValueError,
                  r"unexpected \['bias'\]"),
    "config-class-for-other-weights": (lambda: npz_bytes(
        {**W(), "__config__": config_array({**cfg(proj_size=None), "reset_after": True}, "GRU")}),
        ValueError, "weight_ih_l0.*shape"),
}


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
    make, exc, match = (BAD_SAFETENSORS if ext == ".safetensors" else BAD_NPZ)[case]
    path = tmp_path / ("bad" + ext)
    path.write_bytes(make())
    assert_refused(path, exc, match)


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
