"""Shared by the bad-input tests (test_errors.py, test_bad_input_table.py): the models under
test, a valid input for each, and the check that a failed call leaves a model unchanged."""
import re

import numpy as np
import pytest

from conftest import assert_params_equal, flatten, import_fusedrnn, params_snapshot

I, H, P, B, T, L = 3, 4, 2, 5, 6, 2  # input, hidden, proj, batch, seq, layers; D = 2 below


def shape_re(shape):
    """Regex for a shape written as (5, 7), [5, 7], 5x7 or (5,)."""
    return r"[\(\[]?\s*" + r"\s*[,x×]\s*".join(str(n) for n in shape)


MODELS = {  # name -> (class name, kwargs); seeded, so two calls give equal models
    "lstm": ("LSTM", dict(num_layers=L, bidirectional=True, proj_size=P)),
    "gru": ("GRU", dict(num_layers=L, bidirectional=True)),
    "gru_bf": ("GRU", dict(num_layers=L, bidirectional=True, batch_first=True)),
    "lstmcell": ("LSTMCell", {}),
    "grucell": ("GRUCell", {}),
}


def make_model(name, **override):
    cls, kwargs = MODELS[name]
    return getattr(import_fusedrnn(), cls)(I, H, seed=0, **{**kwargs, **override})


def models():
    return {name: make_model(name) for name in MODELS}


def good_input(name):
    r = np.random.default_rng(0)
    if name.endswith("cell"):
        return r.standard_normal((B, I))
    if name == "gru_bf":
        return r.standard_normal((B, T, I))
    return r.standard_normal((T, B, I))


def expect_error(model, name, exc, match, *args, shape=None, **kwargs):
    """model(*args, **kwargs) raises exc matching `match`; the model is unchanged after."""
    before = params_snapshot(model)
    x = good_input(name)
    ok = [a.copy() for a in flatten(model(x))]
    with pytest.raises(exc, match=match) as info:
        model(*args, **kwargs)
    if shape is not None:
        assert re.search(shape_re(shape), str(info.value)), (str(info.value), shape)
    assert_params_equal(model, before)
    for a, b in zip(flatten(model(x)), ok):
        np.testing.assert_array_equal(a, b)
    return info
