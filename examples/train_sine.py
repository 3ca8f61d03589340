"""Train a small fusedrnn LSTM to predict the next value of a noisy sine, without PyTorch.

Task: each sequence is a sine wave with a random frequency, phase and amplitude, observed with
Gaussian noise.  At every step t the model sees the noisy samples x_0 .. x_t and predicts the
clean value s_{t+1} of the next step.  The first WARMUP steps of each sequence are not scored
(the model needs a few samples to see the frequency).

Model: fusedrnn.LSTM (1 layer) followed by a linear read-out y_t = W_out h_t + b_out written in
numpy.  Gradients come from ``forward_train`` / ``backward`` only; the optimiser is a few-line
Adam.  The script prints the mean squared error on a fixed held-out set every ``--log-every``
steps next to two trivial baselines: predicting the last observed (noisy) value, and predicting
the mean (0).  A trained model ends well below both.

    python examples/train_sine.py --steps 600
"""
import argparse

import numpy as np

import fusedrnn

WARMUP = 5          # steps of each sequence that are not scored
NOISE = 0.1         # standard deviation of the observation noise


def make_batch(rng, batch, seq_len):
    """Noisy inputs x (T, B, 1) and clean next-step targets y (T, B, 1), float32."""
    omega = rng.uniform(0.15, 0.6, size=batch)             # radians per step
    phase = rng.uniform(0.0, 2.0 * np.pi, size=batch)
    amp = rng.uniform(0.5, 1.5, size=batch)
    t = np.arange(seq_len + 1)[:, None]
    clean = amp * np.sin(omega * t + phase)                 # (T + 1, B)
    x = clean[:-1] + NOISE * rng.standard_normal((seq_len, batch))
    y = clean[1:]
    return x[..., None].astype(np.float32), y[..., None].astype(np.float32)


def baseline_losses(x, y):
    """MSE of the trivial predictors over the scored steps: (last observed value, zero)."""
    last = np.mean((x[WARMUP:] - y[WARMUP:]) ** 2)
    zero = np.mean(y[WARMUP:] ** 2)
    return float(last), float(zero)


class Readout:
    """y_t = W h_t + b on top of the LSTM output; numpy forward and backward."""

    def __init__(self, hidden, rng):
        self.params = {"W": (rng.standard_normal((1, hidden)) * 0.1).astype(np.float32),
                       "b": np.zeros(1, dtype=np.float32)}

    def forward(self, out):
        return out @ self.params["W"].T + self.params["b"]

    def backward(self, out, d_pred):
        """-> (d_out, grads) from dL/d(pred)."""
        grads = {"W": np.einsum("tbo,tbh->oh", d_pred, out),
                 "b": d_pred.sum(axis=(0, 1))}
        return d_pred @ self.params["W"], grads


def loss_and_grad(pred, y):
    """Mean squared error over the scored steps and its gradient with respect to pred."""
    diff = np.zeros_like(pred)
    diff[WARMUP:] = pred[WARMUP:] - y[WARMUP:]
    n = diff[WARMUP:].size
    return float(np.sum(diff ** 2) / n), (2.0 / n) * diff


class Adam:
    """Adam on a dict name -> array, updated in place."""

    def __init__(self, params, lr=1e-2, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.m = {k: np.zeros_like(v) for k, v in params.items()}
        self.v = {k: np.zeros_like(v) for k, v in params.items()}

    def step(self, grads, lr=None):
        lr = self.lr if lr is None else lr
        b1, b2 = self.betas
        self.t += 1
        for k, p in self.params.items():
            self.m[k] = b1 * self.m[k] + (1 - b1) * grads[k]
            self.v[k] = b2 * self.v[k] + (1 - b2) * grads[k] ** 2
            m_hat = self.m[k] / (1 - b1 ** self.t)
            v_hat = self.v[k] / (1 - b2 ** self.t)
            p -= lr * m_hat / (np.sqrt(v_hat) + self.eps)


def main(steps=600, seed=0, hidden=32, batch=32, seq_len=40, lr=1e-2, log_every=100,
         verbose=True):
    """Train; return (final held-out loss, best trivial baseline loss)."""
    rng = np.random.default_rng(seed)
    lstm = fusedrnn.LSTM(1, hidden, seed=seed)
    head = Readout(hidden, rng)
    # The model's parameters are read-only numpy attributes (the model keeps packed copies of
    # its weights): the optimiser updates its own copies in place and loads them after each step.
    params = {f"lstm.{k}": v for k, v in lstm.state_dict().items()}
    params.update({f"head.{k}": v for k, v in head.params.items()})
    opt = Adam(params, lr=lr)

    x_val, y_val = make_batch(np.random.default_rng(seed + 1), 256, seq_len)
    base_last, base_zero = baseline_losses(x_val, y_val)
    baseline = min(base_last, base_zero)

    def evaluate():
        out, _ = lstm(x_val)                                  # inference call
        return loss_and_grad(head.forward(out), y_val)[0]

    if verbose:
        print(f"baselines on the held-out set: last value {base_last:.5f}, "
              f"mean (zero) {base_zero:.5f}")
        print(f"step {0:5d}  train loss       -  val loss {evaluate():.5f}")
    for step in range(1, steps + 1):
        x, y = make_batch(rng, batch, seq_len)
        out, _, tape = lstm.forward_train(x)
        loss, d_pred = loss_and_grad(head.forward(out), y)
        d_out, head_grads = head.backward(out, d_pred)
        _, _, lstm_grads = lstm.backward(tape, d_out)          # d_h_n=None: h_n is unused
        grads = {f"lstm.{k}": g for k, g in lstm_grads.items()}
        grads.update({f"head.{k}": g for k, g in head_grads.items()})
        # cosine decay of the learning rate over the run
        opt.step(grads, lr=lr * 0.5 * (1 + np.cos(np.pi * (step - 1) / steps)))
        lstm.load_state_dict({k[5:]: v for k, v in params.items() if k.startswith("lstm.")})
        if verbose and (step % log_every == 0 or step == steps):
            print(f"step {step:5d}  train loss {loss:.5f}  val loss {evaluate():.5f}")
    final = evaluate()
    if verbose:
        print(f"final val loss {final:.5f} vs trivial baseline {baseline:.5f} "
              f"(ratio {final / baseline:.3f})")
    return final, baseline


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="optimiser steps (default 600)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=100)
    args = parser.parse_args()
    main(steps=args.steps, seed=args.seed, log_every=args.log_every)
