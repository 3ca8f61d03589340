"""Weight files that fusedrnn.load must refuse, built byte by byte or by the libraries' own
writers: shared by tests/test_files.py (every case) and tests/test_bad_input_table.py (the rows
of docs/errors.md).  Each case: name -> (make() -> the file's bytes, exception, message regex)."""
import io
import json
import pickle
import struct
import zipfile
import zlib

import numpy as np

from conftest import import_fusedrnn

fusedrnn = import_fusedrnn()


def doc(cls, **config):
    """The configuration document as docs/api.md describes it, written by hand."""
    return json.dumps({"format": "fusedrnn", "format_version": 1, "class": cls,
                       "config": config})


LSTM_CONFIG = dict(input_size=3, hidden_size=5, num_layers=1, bias=True, batch_first=False,
                   dropout=0.0, bidirectional=False, proj_size=0, dtype="float32")


def lstm_weights(dtype=np.float32, **change):
    w = fusedrnn.LSTM(3, 5, dtype=dtype, seed=0).state_dict()
    for k, v in change.items():
        if v is None:
            del w[k]
        else:
            w[k] = v
    return dict(w)


def _st():
    import safetensors.numpy
    return safetensors.numpy


def st_bytes(weights, config=LSTM_CONFIG):
    buf = io.BytesIO(_st().save({k: np.ascontiguousarray(v)
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


def deflated_zeros_bad_crc():
    """A compressed .npz of an LSTM(2048, 2048) whose weights are zeros (deflate packs them
    ~1000:1: 128 MiB of weights in a ~130 KB file) and whose last member's CRC-32 is wrong:
    refused before any weight is inflated into memory."""
    H = 2048
    config = config_array(cfg(input_size=H, hidden_size=H))
    members = {"__config__": config, "weight_ih_l0": np.zeros((4 * H, H), np.float32),
               "weight_hh_l0": np.zeros((4 * H, H), np.float32),
               "bias_ih_l0": np.zeros(4 * H, np.float32),
               "bias_hh_l0": np.zeros(4 * H, np.float32)}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, arr in members.items():
            with z.open(name + ".npy", "w") as f:
                np.lib.format.write_array(f, arr)
    raw = bytearray(buf.getvalue())
    last = b"bias_hh_l0.npy"           # its central directory entry: CRC-32 at offset 16
    e = raw.index(b"PK\x01\x02")
    while raw[e + 46:e + 46 + len(last)] != last:
        e = raw.index(b"PK\x01\x02", e + 4)
    raw[e + 16:e + 20] = struct.pack("<I", zlib.crc32(b"not the data"))
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
    "no-config": (lambda: _st().save(W()), ValueError, "no fusedrnn configuration"),
    "config-not-json": (lambda: _st().save(W(), metadata={"__config__": "{oops"}),
                        ValueError, "not valid JSON"),
    "config-deeply-nested": (lambda: _st().save(
        W(), metadata={"__config__": "[" * 100000 + "]" * 100000}), ValueError, "JSON"),
    "config-not-fusedrnn": (lambda: _st().save(W(), metadata={"__config__": "{}"}),
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
    "config-missing-arg": (lambda: st_bytes(W(), cfg(batch_first=None)), ValueError,
                           r"'dtype'\] \(and may have \['merge_mode'\]\); "
                           r"missing \['batch_first'\]"),
    "config-extra-arg": (lambda: st_bytes(W(), cfg(seed=3)), ValueError,
                         r"unexpected \['seed'\]"),
    "config-unknown-class": (lambda: _st().save(W(), metadata={"__config__": json.dumps(
        {"format": "fusedrnn", "format_version": 1, "class": "os.system", "config": {}})}),
        ValueError, "class must be one of"),
    "config-newer-version": (lambda: _st().save(W(), metadata={"__config__": json.dumps(
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
    "deflated-zeros-bad-crc": (deflated_zeros_bad_crc, ValueError, r"bias_hh_l0.*CRC"),
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




def write_bad(directory, ext, case):
    """Write the bad file `case` into `directory`; -> its path."""
    import os
    path = os.path.join(directory, "bad" + ext)
    with open(path, "wb") as f:
        f.write((BAD_SAFETENSORS if ext == ".safetensors" else BAD_NPZ)[case][0]())
    return path
