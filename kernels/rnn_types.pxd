# The description of a kernel run: a Cell (weights), a Run (one pass), a Grad (backward);
# built and checked by _kernels.Kernel, read by the time loops in _kernels.pyx.
# Notation: src/fusedrnn/_notation.py.  T steps, B batch rows, I input features, H hidden units,
# P = H_out (proj_size, or H), G = gates * H.  Rows of every 2-D buffer are (t, b) pairs in
# time-major order, row index t * B + b.  Pointers are float * or double * as Cell.dbl says.

cdef enum CellKind:
    LSTM_CELL = 0        # gates [i | f | g | o], states h, c; optional projection W_hr
    GRU_CELL = 1         # gates [r | z | n], r applied to W_hn h_{t-1} + b_hn (PyTorch)
    GRU_ORIG_CELL = 2    # gates [r | z | n], r applied to h_{t-1} before the product


cdef struct Cell:
    # One layer and direction's weights, fixed until a weight changes (owned by a Kernel).
    int kind             # CellKind
    bint dbl             # float64 (else float32)
    Py_ssize_t I_, H, P, G   # I_: I (a bare I is complex.h's imaginary unit)
    const void *W_ih     # (G, I)
    const void *bias     # (G): LSTM b_ih + b_hh; GRU bias_x (see fusedrnn._kernel.gru_biases)
    const void *b_hn     # (H): GRU_CELL's b_hn, else NULL
    const void *wp_hh    # packed W_hh (G, P)
    const void *wp_hr    # packed W_hr (P, H) (LSTM with projection), else NULL
    # packed transposes for backward (NULL until a backward needs them):
    const void *wt_hh    # LSTM W_hh^T (P, G); GRU_CELL W_hh^T (H, 3H); GRU_ORIG [W_hr|W_hz]^T
    const void *wt_n     # GRU_ORIG W_hn^T (H, H), else NULL
    const void *wt_hr    # LSTM W_hr^T (H, P) with projection, else NULL


cdef struct Run:
    # One pass of one Cell over a sequence (forward; the tape of a backward).
    Py_ssize_t T, B
    bint reverse         # t = T-1 .. 0
    bint keep            # state keeps every step (training) instead of two ping-pong slots
    const void *x        # (T*B, I) the layer input
    void *out            # (T*B, ldo): h_t, at this direction's column
    Py_ssize_t ldo
    # rows of x and out per time index: B, or for a part of a batch split (its B rows from
    # x's and out's row b0 on, at every time index) the whole batch's
    Py_ssize_t ldt
    # the pass runs on one thread while other threads run other passes (a direction, a part
    # of the batch): its phases end with no barrier
    bint solo
    const void *h0       # (B, P)
    const void *c0       # (B, H) LSTM, else NULL
    void *h_n            # (B, P)
    void *c_n            # (B, H) LSTM, else NULL
    void *gates          # (gblk*B, G): activated gates of every step (gblk = T), or of a block
    Py_ssize_t gblk      # T, or (inference) the steps of a block of the input projection
    void *state          # (S*B, H), S = T if keep else 2: LSTM c_t; GRU_CELL W_hn h_{t-1} + b_hn
    void *aux            # LSTM (B, H) o tanh(c_t); GRU_CELL (B, G) h_{t-1} W_hh^T; ORIG (B, H) r h
    void *work           # per-thread packed-GEMM workspaces, wsz elements each
    Py_ssize_t wsz
    const void *wp_ih    # packed W_ih (G, I) for the input projection (forward)
    # steps split in claimed chunks of hidden units (see _kernels.pyx, "Claims"): per-thread
    # space for pre-packed left operands, pksz elements each (h_{t-1} or r h from 0, the input
    # projection's x block from pkx), NULL when the buffers have none; the claim counters
    # (2 * threads * CLAIM_STRIDE), zeroed by each pass
    void *pk
    Py_ssize_t pksz, pkx
    Py_ssize_t *claims
    # variable lengths (NULL: every sequence runs all T steps).  The batch is sorted by length,
    # longest first, so the rows still running at time index t are the first nact[t] (nact: T
    # entries, non-increasing, nact[0] == B); padding rows get no arithmetic.
    const Py_ssize_t *nact
    const Py_ssize_t *xrow   # NULL, or (T*B): row q of the pass reads row xrow[q] of x (gather)


cdef struct Grad:
    # What a backward pass reads and writes besides its Run (the forward's tape).
    const void *dout     # (T*B, lddo) dL/dh_t from above, at this direction's column
    Py_ssize_t lddo
    const void *dh_n     # (B, P)
    const void *dc_n     # (B, H) LSTM
    void *dx             # (T*B, I), written (or added to, when accumulate)
    bint accumulate
    void *dh0            # (B, P): the running dL/dh, dL/dh0 at the end
    void *dc0            # (B, H): LSTM's running dL/dc
    void *dW_ih          # (G, I)
    void *dW_hh          # (G, P)
    void *dW_hr          # (P, H) LSTM with projection
    void *db_ih          # (G)
    void *db_hh          # (G)
    const void *ones     # (T*B) ones
    # the weight gradients run over blocks of sblk steps: a block's x (sblk*B, I) and h_{t-1}
    # (sblk*B, P) packed as X^T (grad_packed) in xp, hp
    Py_ssize_t sblk
    void *xp
    void *hp
    void *dr             # LSTM (B, H) dL/d(o tanh c_t)
    void *dhtot          # LSTM with projection (T*B, P): dL/dh_t of every step
    void *r_all          # LSTM: (T*B, H) o tanh(c_t) with projection, else (B, H)
    void *dgh            # GRU_CELL (B, 3H) pre-activation gradient of the hidden part
    void *drh            # GRU_ORIG (B, H) dL/d(r h_{t-1})
    void *rh_all         # GRU_ORIG (T*B, H) r h_{t-1} of every step
