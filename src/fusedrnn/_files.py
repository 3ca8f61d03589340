"""Weight files: ``model.save(path)`` and ``fusedrnn.load(path)``, without pickle.

Two formats, chosen by the file's extension:

- ``.safetensors`` (the ``safetensors`` package, an optional extra): the weights as tensors, the
  configuration as the JSON string ``metadata["__config__"]``;
- ``.npz`` (numpy, read with our own checks and ``allow_pickle=False``): one ``.npy`` member per
  weight, the configuration as the member ``__config__``, a uint8 array of UTF-8 JSON.

The configuration is ``{"format": "fusedrnn", "format_version": 1, "class": "LSTM",
"config": {constructor arguments but seed, dtype as "float32"/"float64"}}``, plus
``"wrapper": "Reversed"`` or ``"GoBackwards"`` for a model so wrapped (what ``from_onnx`` and
``from_keras`` return for reverse layers); the weights have PyTorch's names (the keys of
``state_dict()``).

``load`` trusts nothing in the file: the configuration goes through the constructor's own checks
(without allocating the weights), the tensors must have exactly the expected names, shapes and
dtype, and every size a header claims is checked against the bytes actually in the file before
anything of that size is allocated or read, so a truncated, corrupted or hostile file raises
ValueError (TypeError for a configuration value of the wrong type) and costs at most about its
own size in memory.
"""
import inspect
import json
import os
import struct
import zipfile

import numpy as np

from ._cells import GRUCell, LSTMCell
from ._keras import GoBackwards
from ._reversed import Reversed
from ._rnn import GRU, LSTM

FORMAT = "fusedrnn"
FORMAT_VERSION = 1
CONFIG_KEY = "__config__"
CLASSES = {cls.__name__: cls for cls in (LSTM, GRU, LSTMCell, GRUCell)}
WRAPPERS = {cls.__name__: cls for cls in (Reversed, GoBackwards)}
EXTENSIONS = (".safetensors", ".npz")
OPTIONAL_ARGS = ("merge_mode",)       # absent in a file: the constructor's default
MAX_CONFIG_BYTES = 1 << 16            # the JSON document (a few hundred bytes in practice)
MAX_NPY_HEADER = 1 << 16              # numpy writes <= 64 KiB headers
DEFLATE_MAX_RATIO = 1100              # deflate cannot expand more than ~1032:1
_ST_DTYPES = {"F32": "float32", "F64": "float64"}   # other safetensors dtypes keep their names
_NPZ_ERRORS = (ValueError, EOFError, OSError, RuntimeError, NotImplementedError, struct.error,
               zipfile.BadZipFile)


def _format(path):
    """(path as str, extension) or TypeError/ValueError naming `path`."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    path = os.fspath(path)
    if not isinstance(path, str):
        path = os.fsdecode(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in EXTENSIONS:
        raise ValueError(f"path {path!r}: the extension must be .safetensors or .npz (it chooses "
                         f"the format), got {ext or 'none'!r}")
    return path, ext


def _constructor_args(cls):
    """The constructor's argument names but self and seed, in order."""
    return [n for n in inspect.signature(cls.__init__).parameters if n not in ("self", "seed")]


def config_document(model):
    """The JSON document describing `model` (class and constructor arguments, and the wrapper
    around it if any)."""
    extra = {}
    if WRAPPERS.get(type(model).__name__) is type(model):
        extra["wrapper"] = type(model).__name__
        model = model.model
    cls = type(model)
    if CLASSES.get(cls.__name__) is not cls:
        raise TypeError(f"model must be a fusedrnn LSTM, GRU, LSTMCell or GRUCell, got "
                        f"{cls.__module__}.{cls.__name__}")
    config = {}
    for name in _constructor_args(cls):
        value = getattr(model, name, None)
        if value is None and name in OPTIONAL_ARGS:
            continue
        config[name] = value.name if name == "dtype" else value
    return json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION,
                       "class": cls.__name__, "config": config, **extra}, sort_keys=True)


def _safetensors():
    """The safetensors package (an optional extra), with a hint when it is missing."""
    try:
        import safetensors
        import safetensors.numpy
    except ImportError as exc:
        raise ImportError(".safetensors files need the safetensors package: pip install "
                          "'fusedrnn[safetensors]' (or use a .npz path)") from exc
    return safetensors


def save(model, path):
    """Write `model`'s configuration and weights to `path` (.safetensors or .npz)."""
    path, ext = _format(path)
    doc = config_document(model)
    weights = model.state_dict()
    if ext == ".safetensors":
        _safetensors().numpy.save_file(dict(weights), path, metadata={CONFIG_KEY: doc})
    else:
        config = np.frombuffer(doc.encode("utf-8"), dtype=np.uint8)
        with open(path, "wb") as f:           # a file object: numpy adds no extension
            np.savez(f, **{CONFIG_KEY: config}, **weights)


def load(path):
    """The model saved in `path` by ``model.save`` (or any file of that layout)."""
    path, ext = _format(path)
    reader = _SafetensorsReader(path) if ext == ".safetensors" else _NpzReader(path)
    with reader:
        cls, config, wrapper = _parse_config(path, reader.config())
        shapes = _expected_shapes(path, cls, config, reader.count())
        dtype = np.dtype(config["dtype"])
        found = reader.entries()              # name -> (shape, dtype), nothing read yet
        missing = [k for k in shapes if k not in found]
        extra = [k for k in found if k not in shapes]
        if missing or extra:
            raise ValueError(f"{path}: the weights of this {cls.__name__} must be exactly "
                             f"{list(shapes)}; missing {missing}, unexpected {extra}")
        for name, shape in shapes.items():
            got_shape, got_dtype = found[name]
            if tuple(got_shape) != tuple(shape):
                raise ValueError(f"{path}: weight {name!r} must have shape {tuple(shape)}, "
                                 f"got {tuple(got_shape)}")
            if got_dtype != dtype.name:
                raise ValueError(f"{path}: weight {name!r} must have dtype {dtype} (the "
                                 f"config's dtype), got {got_dtype}")
        reader.verify()                       # a corrupted file fails before any weight is read
        weights = {name: reader.read(name, shapes[name], dtype) for name in shapes}
    model = cls(**config, seed=0)
    model.load_state_dict(weights)
    if wrapper is None:
        return model
    try:
        return wrapper(model)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{path}: wrapper {wrapper.__name__}: {exc}") from None


# ---------------------------------------------------------------------------------- config


def _parse_config(path, text):
    """-> (class, constructor kwargs, wrapper class or None) from the JSON document, types
    checked."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"{path}: the configuration is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"{path}: the configuration must be a JSON object with "
                         f"\"format\": \"{FORMAT}\"")
    version = doc.get("format_version")
    if type(version) is not int or not 1 <= version <= FORMAT_VERSION:
        raise ValueError(f"{path}: format_version must be an integer from 1 to "
                         f"{FORMAT_VERSION} (a newer fusedrnn wrote it?), got {version!r}")
    cls = CLASSES.get(doc.get("class")) if isinstance(doc.get("class"), str) else None
    if cls is None:
        raise ValueError(f"{path}: class must be one of {sorted(CLASSES)}, "
                         f"got {doc.get('class')!r}")
    config = doc.get("config")
    if not isinstance(config, dict):
        raise ValueError(f"{path}: config must be a JSON object, got {config!r}")
    expected = _constructor_args(cls)
    missing = [k for k in expected if k not in config and k not in OPTIONAL_ARGS]
    extra = [k for k in config if k not in expected]
    if missing or extra:
        optional = [k for k in expected if k in OPTIONAL_ARGS]
        required = [k for k in expected if k not in OPTIONAL_ARGS]
        may = f" (and may have {optional})" if optional else ""
        raise ValueError(f"{path}: the config of {cls.__name__} must have the keys {required}"
                         f"{may}; missing {missing}, unexpected {extra}")
    if config["dtype"] not in ("float32", "float64"):
        raise ValueError(f"{path}: config dtype must be \"float32\" or \"float64\", "
                         f"got {config['dtype']!r}")
    wrapper = doc.get("wrapper")
    if wrapper is not None and (not isinstance(wrapper, str) or wrapper not in WRAPPERS):
        raise ValueError(f"{path}: wrapper must be absent or one of {sorted(WRAPPERS)}, "
                         f"got {wrapper!r}")
    return cls, config, None if wrapper is None else WRAPPERS[wrapper]


def _expected_shapes(path, cls, config, count):
    """{weight name: shape} of the model the config describes, after the constructor's own
    checks of every value, without allocating its weights.  `count`: tensors in the file (a
    layer has at least two, which bounds num_layers before the constructor loops over it)."""
    layers = config.get("num_layers", 1)
    if type(layers) is int and layers > count:
        raise ValueError(f"{path}: config num_layers={layers} needs more weights than the "
                         f"{count} tensors in the file")
    shapes = {}

    class Probe(cls):
        def _init_params(self, param_shapes, hidden_size, seed):
            shapes.update(param_shapes)

    try:
        Probe(**config, seed=0)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{path}: config: {exc}") from None
    return shapes


# ---------------------------------------------------------------------------------- readers


class _SafetensorsReader:
    """A .safetensors file: its 8-byte header length is checked against the file's size before
    the safetensors library (which checks the rest of the layout) opens it."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        st = _safetensors()
        size = os.stat(self.path).st_size
        with open(self.path, "rb") as f:
            head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{self.path}: truncated: {size} bytes, a safetensors file "
                             "starts with an 8-byte header length")
        n = struct.unpack("<Q", head)[0]
        if n > size - 8:
            raise ValueError(f"{self.path}: the header length {n} exceeds the file's size "
                             f"({size} bytes): truncated or not a safetensors file")
        try:
            self.file = st.safe_open(self.path, framework="np")
            self.file.__enter__()
            self.specs = {k: (self.file.get_slice(k).get_shape(), self.file.get_slice(k).get_dtype())
                          for k in self.file.keys()}
            self.meta = self.file.metadata() or {}
        except st.SafetensorError as exc:
            raise ValueError(f"{self.path}: not a valid safetensors file: {exc}") from None
        return self

    def __exit__(self, *exc):
        self.file.__exit__(*exc)

    def config(self):
        if CONFIG_KEY not in self.meta:
            raise ValueError(f"{self.path}: no fusedrnn configuration (metadata "
                             f"{CONFIG_KEY!r}); metadata keys: {sorted(self.meta)}")
        return self.meta[CONFIG_KEY]

    def count(self):
        return len(self.specs)

    def entries(self):
        return {k: (tuple(shape), _ST_DTYPES.get(dt, dt)) for k, (shape, dt) in self.specs.items()}

    def verify(self):
        """Nothing to do: the header's offsets were checked against the file's size."""

    def read(self, name, shape, dtype):
        return self.file.get_tensor(name)


class _NpzReader:
    """A .npz file (a zip of .npy members), read member by member: each member's .npy header
    is read and checked (dtype, shape, and shape x itemsize against the member's size) before
    its data; object arrays are never unpickled."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        size = os.stat(self.path).st_size
        try:
            self.zip = zipfile.ZipFile(self.path)
        except _NPZ_ERRORS as exc:
            raise ValueError(f"{self.path}: not a valid .npz (zip) file: {exc}") from None
        self.members = {}
        for info in self.zip.infolist():
            name = info.filename
            if not name.endswith(".npy") or name[:-4] in self.members:
                self.zip.close()
                raise ValueError(f"{self.path}: an .npz holds distinct <name>.npy members, "
                                 f"got member {name!r}")
            limit = {zipfile.ZIP_STORED: size,
                     zipfile.ZIP_DEFLATED: DEFLATE_MAX_RATIO * info.compress_size + 1024}
            if info.compress_type not in limit:
                self.zip.close()
                raise ValueError(f"{self.path}: member {name!r} uses zip compression "
                                 f"{info.compress_type}; numpy writes stored or deflated members")
            if info.compress_size > size or info.file_size > limit[info.compress_type]:
                self.zip.close()
                raise ValueError(f"{self.path}: member {name!r} claims {info.file_size} bytes, "
                                 f"more than its {info.compress_size} stored bytes can hold")
            self.members[name[:-4]] = info
        self.headers = {}
        return self

    def __exit__(self, *exc):
        self.zip.close()

    def config(self):
        if CONFIG_KEY not in self.members:
            raise ValueError(f"{self.path}: no fusedrnn configuration (member "
                             f"{CONFIG_KEY + '.npy'!r})")
        shape, dtype = self._header(CONFIG_KEY)
        if dtype != "uint8" or len(shape) != 1 or shape[0] > MAX_CONFIG_BYTES:
            raise ValueError(f"{self.path}: {CONFIG_KEY} must be a 1-d uint8 array of at most "
                             f"{MAX_CONFIG_BYTES} bytes (UTF-8 JSON), got dtype {dtype}, "
                             f"shape {shape}")
        data = self.read(CONFIG_KEY, shape, dtype)
        try:
            return data.tobytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{self.path}: {CONFIG_KEY} is not UTF-8: {exc}") from None

    def count(self):
        return len(self.members) - (CONFIG_KEY in self.members)

    def entries(self):
        return {k: self._header(k) for k in self.members if k != CONFIG_KEY}

    def _header(self, name):
        """(shape, dtype) from the member's .npy header; checks that the data fits the member."""
        if name in self.headers:
            return self.headers[name]
        from numpy.lib import format as npy
        info = self.members[name]
        try:
            with self.zip.open(info) as f:
                version = npy.read_magic(f)
                if version not in ((1, 0), (2, 0)):
                    raise ValueError(f"unsupported .npy version {version}")
                read_header = npy.read_array_header_1_0 if version == (1, 0) else \
                    npy.read_array_header_2_0
                shape, _, dtype = read_header(f, max_header_size=MAX_NPY_HEADER)
                offset = f.tell()
        except _NPZ_ERRORS + (SyntaxError,) as exc:
            raise ValueError(f"{self.path}: member {name!r}: corrupted or not an .npy "
                             f"array: {exc}") from None
        if dtype.hasobject:
            raise ValueError(f"{self.path}: member {name!r} holds Python objects (a pickle), "
                             "which are never loaded")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if offset + nbytes != info.file_size:
            raise ValueError(f"{self.path}: member {name!r}: its header claims shape {shape} "
                             f"of {dtype} ({nbytes} bytes), the member holds "
                             f"{info.file_size - offset} bytes of data")
        self.headers[name] = (tuple(shape), str(dtype))
        return self.headers[name]

    def verify(self):
        """Inflate each deflated member once, in pieces thrown away, so that a corrupted one
        (its CRC-32, a truncated stream) fails before any weight is allocated: a deflated
        member may hold ~1000 times its stored bytes, and the members read before a bad one
        would be in memory.  (A stored member's data is part of the file's own size.)"""
        for name, info in self.members.items():
            if info.compress_type != zipfile.ZIP_DEFLATED:
                continue
            try:
                with self.zip.open(info) as f:
                    while f.read(1 << 20):
                        pass
            except _NPZ_ERRORS as exc:
                raise ValueError(f"{self.path}: member {name + '.npy'!r}: {exc}") from None

    def read(self, name, shape, dtype):
        """The member's array, known to be `shape` and `dtype` (checked by _header)."""
        from numpy.lib import format as npy
        try:
            with self.zip.open(self.members[name]) as f:
                return npy.read_array(f, allow_pickle=False, max_header_size=MAX_NPY_HEADER)
        except _NPZ_ERRORS as exc:
            raise ValueError(f"{self.path}: member {name!r}: {exc}") from None

