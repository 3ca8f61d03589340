"""Python threads may share a model: the kernels release the GIL and keep their scratch memory
per thread, so concurrent calls give the same results as sequential ones."""
import threading

import numpy as np
import pytest

from conftest import import_fusedrnn

fusedrnn = import_fusedrnn()


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_threads_sharing_a_model(kind):
    model = getattr(fusedrnn, kind)(12, 40, num_layers=2, bidirectional=True, seed=0)
    rng = np.random.default_rng(0)
    # different (T, B) per Python thread, so their cached workspaces differ in shape
    inputs = [rng.standard_normal((5 + k, 3 + k, 12)).astype(np.float32) for k in range(4)]
    expected = [model(x) for x in inputs]
    errors = []

    def work(k):
        try:
            for _ in range(15):
                out, h_n = model(inputs[k])
                ref_out, ref_h = expected[k]
                np.testing.assert_allclose(out, ref_out, rtol=1e-6, atol=1e-7)
                out_t, h_t, tape = model.forward_train(inputs[k])
                np.testing.assert_allclose(out_t, ref_out, rtol=1e-6, atol=1e-7)
                model.backward(tape, np.ones_like(out_t))
        except Exception as exc:  # collected: assertion errors in threads don't fail the test
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]
