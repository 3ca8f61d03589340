"""fusedrnn: fused LSTM and GRU kernels for the CPU behind a torch.nn-compatible API.

Notation, gate order and shapes: see :mod:`fusedrnn._notation`.
"""
from ._rnn import GRU, LSTM
from ._cells import GRUCell, LSTMCell
from ._threads import get_num_threads, set_num_threads
from ._kernels import isa, set_isa
from ._interop import from_torch
from ._keras import GoBackwards, from_keras
from ._onnx import from_onnx
from ._reversed import Reversed
from ._files import load
from . import dask  # noqa: F401  (fusedrnn.dask.predict; dask itself is imported only there)

__version__ = "0.1.0"
__all__ = ["LSTM", "GRU", "LSTMCell", "GRUCell", "get_num_threads", "set_num_threads", "isa",
           "set_isa", "from_torch", "from_keras", "GoBackwards", "from_onnx", "Reversed", "load",
           "__version__"]
