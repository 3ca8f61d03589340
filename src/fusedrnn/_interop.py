"""Models trained elsewhere, in one call: ``fusedrnn.from_torch(module)``.

torch is imported only by these functions, and only when given a torch module.
"""
import numpy as np

from ._cells import GRUCell, LSTMCell
from ._rnn import GRU, LSTM


def from_torch(module):
    """The fusedrnn twin of a ``torch.nn.LSTM``, ``GRU``, ``LSTMCell`` or ``GRUCell``: the same
    constructor options (``num_layers``, ``bias``, ``batch_first``, ``dropout``,
    ``bidirectional``, ``proj_size``), dtype (float32 or float64) and weights, so that calling it
    gives the module's outputs in eval mode.  The module is not changed."""
    import torch

    kinds = ((torch.nn.LSTMCell, LSTMCell), (torch.nn.GRUCell, GRUCell),
             (torch.nn.LSTM, LSTM), (torch.nn.GRU, GRU))
    cls = next((ours for theirs, ours in kinds if type(module) is theirs), None)
    if cls is None:
        raise TypeError("module must be a torch.nn.LSTM, GRU, LSTMCell or GRUCell, got "
                        f"{type(module).__module__}.{type(module).__name__}")
    params = dict(module.state_dict())
    dtypes = {v.dtype for v in params.values()}
    if len(dtypes) != 1 or next(iter(dtypes)) not in (torch.float32, torch.float64):
        raise ValueError(f"module's parameters must all be float32 or all float64, got "
                         f"{sorted(str(d) for d in dtypes)}")
    dtype = np.float64 if next(iter(dtypes)) == torch.float64 else np.float32
    kw = dict(bias=module.bias, dtype=dtype)
    if cls in (LSTM, GRU):
        kw.update(num_layers=module.num_layers, batch_first=module.batch_first,
                  dropout=float(module.dropout), bidirectional=module.bidirectional)
        if cls is LSTM:
            kw["proj_size"] = module.proj_size
    model = cls(module.input_size, module.hidden_size, **kw)
    model.load_state_dict(params)
    return model
