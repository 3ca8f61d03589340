"""The fused LSTM and GRU kernels: one module, one time loop for every cell.

Notation (src/fusedrnn/_notation.py): T steps, B batch rows, I input features, H hidden units,
P = H_out (proj_size, or H), G = gates * H.  Rows of every 2-D buffer are (t, b) pairs in
time-major order, row index t * B + b.  Gate blocks per row: LSTM [i | f | g | o], GRU [r | z | n].

A layer and direction is described by a `Cell` (its weights, packed once per weight change and
owned by a `Kernel`) and one pass over a sequence by a `Run` (+ a `Grad` for backward); see
rnn_types.pxd.  The time loop, the thread split, the input projection, the choice of h_{t-1}, of
the state slot and of the time index, and the final-state copies are shared by all cells.  What
differs between the cells is only their step (`lstm_step`, `gru_step`), its backward
(`lstm_step_back`, `gru_step_back`) and the weight-gradient tail (`lstm_tail`, `gru_tail`).

Threads: a time loop runs in one OpenMP parallel region.  Every thread runs the same phases,
each on its own chunk (columns of a product, hidden units of a gate pass), and a barrier ends
each phase (fr_threads.h).  A forward step is split by hidden units when H splits into whole
panels (pgemm_gates): a thread computes the gate columns of its own units and then their gate
pass, which reads nothing another thread wrote, so the step needs one barrier (after the gate
pass) and no cache line moves between cores until h_t is read by the next step.  A large step
is split likewise, but in claimed chunks: a thread slowed by its core leaves its last chunks
to the others ("Claims" below).  With one thread there is no parallel region at all.  Two
directions of a bidirectional layer can run in the same region, each on its half of the
threads: they have the same phases, so the team barrier keeps them in step.
"""
import numpy as np
cimport numpy as cnp
from libc.string cimport memcpy, memset

from cython.parallel cimport parallel

from _blas cimport floating, gemm, NoTrans, Trans
from rnn_types cimport Cell, Run, Grad, LSTM_CELL, GRU_CELL, GRU_ORIG_CELL
from fr_threads cimport (fr_omp_max_threads, fr_thread_num, fr_num_threads, fr_barrier,
                         fr_fetch_inc)
from packed_gemm cimport (fr_packed_size_f32, fr_packed_size_f64, fr_packed_work_size_f32,
                          fr_packed_work_size_f64, fr_packed_work_bound_f32,
                          fr_packed_work_bound_f64, fr_gemm_packed_blocks_f32,
                          fr_gemm_packed_blocks_f64, fr_rev_bytes, fr_packed_nr)
from rnn_common cimport (pack_weights, pgemm_cols, pgemm_rows, pgemm_steps, unit_chunk,
                         pgemm_gates, units_split, chunk_lo, pgemm_prepacked,
                         rows_gemm, grad_gemm, pack_rows, pack_hprev, grad_packed,
                         colsum_rows, zero_rows)
from gate_passes cimport (lstm_fwd, lstm_bwd, gru_fwd, gru_rz, gru_n, gru_bwd, gru_bwd1,
                          gru_bwd2, add_rows)
from rnn_math cimport fr_activations_f32, fr_activations_f64
from fr_isa cimport fr_isa, fr_set_isa, fr_isa_name, fr_read_or

cnp.import_array()

CELL_KINDS = {"lstm": LSTM_CELL, "gru": GRU_CELL, "gru_orig": GRU_ORIG_CELL}

# The input projection runs on a packed W_ih (packed on the first forward, kept by the Kernel):
# the packed GEMM beat OpenBLAS's sgemm on every shape measured (1 thread, AVX-512: 111 vs 92
# GFLOP/s at 100 x 256 x 1024, 105 vs 75 at 100 x 1024 x 4096, 107 vs 105 at 6400 x 512 x 2048).
# A pass of at most SMALL_ROWS rows (T*B: a cell step, a stream step) splits its columns between
# the threads (a GEMV: split by rows it would run on one thread), a longer one its rows.
cdef enum:
    SMALL_ROWS = 4

# A pass may split its batch into parts (Kernel.forward's parts; fusedrnn._engine.PART_MIN_ROWS):
# each part is a solo pass (Run.solo) over its rows, on its own thread.
cdef enum:
    MAX_PARTS = 64
PARTS_MAX = MAX_PARTS

# Inference runs the input projection block by block, Run.gblk steps at a time, right before
# the block's steps, when a block of max(PROJ_BLOCK_ROWS, I) rows has gates of at most
# PROJ_BLOCK_BYTES (Kernel._gates_block).  The block's gates are then still in cache when its
# steps add the recurrent part and run the gate pass, where the whole sequence's (T*B*G values)
# go to memory and come back; and the gates buffer holds one block instead of every step.  W_ih
# is read once per block: at least I rows make that a small part of the block's work.
# Measured (LSTM, T100, 1 / 2 threads, C harness over the same kernels; Zen 4): B64 H128 1.06x /
# 1.07x, B16 H256 1.04x / 1.02x, B64 H256 1.05x / 1.03x, B256 H256 1.01-1.03x; H1024 B16 with
# 64-row blocks (smaller than I) 0.94x / 0.97x, which the rule excludes.
PROJ_BLOCK_ROWS = 256
PROJ_BLOCK_BYTES = 2 << 20

# How the threads of a forward pass share a step (decided once per pass for the whole team,
# whose barriers must match; see "Claims" below).
cdef enum Split:
    SPLIT_COLS = 0      # the columns of the product, a barrier, then hidden units of the pass
    SPLIT_UNITS = 1     # each thread its own hidden units in whole panels, product and pass
    SPLIT_CLAIMS = 2    # chunks of whole panels, each thread its own first, then the others'

cdef enum:
    CLAIM_STRIDE = 8          # claim counters a cache line apart
    # a step in about this many chunks per thread; half as many from CLAIM_BIG_ROWS rows on
    # (measured, LSTM H256 on 2 threads, against the fixed own units: B16 1.23-1.27x with 4
    # chunks a thread, 1.09x with 2, when one core was slowed, the same otherwise; B256 with 4
    # 0.94-0.98x on the AVX2 path when neither was, with 2 1.00-1.02x)
    CLAIMS_PER_THREAD = 4
    CLAIM_BIG_ROWS = 128

# claims for steps of at least this many multiply-adds (B * G * P): below, a step lasts a few
# microseconds and the fixed own units (their weights in their core's cache) win.  claim_skew:
# thread tid claims from owner (tid + claim_skew) % nt first (0; tests set 1, so that chunks
# are computed by other threads than their owners).  Both: claim_settings().
cdef Py_ssize_t claim_min_work = 1 << 21
cdef int claim_skew = 0


# ================================================================ shared by every cell
cdef inline Py_ssize_t step_time(const Run *r, Py_ssize_t s) noexcept nogil:
    """The time index of step s (steps run t = 0 .. T-1, or T-1 .. 0 when reverse)."""
    return r.T - 1 - s if r.reverse else s


cdef inline Py_ssize_t block_time(const Run *r, Py_ssize_t s) noexcept nogil:
    """The first time index of the block of Run.gblk steps that step s is in (its input
    projection covers the time indices from there, in time order)."""
    cdef Py_ssize_t s1 = s - s % r.gblk + r.gblk
    return (r.T - (s1 if s1 < r.T else r.T)) if r.reverse else s - s % r.gblk


cdef inline Py_ssize_t gates_row(const Run *r, Py_ssize_t s) noexcept nogil:
    """First row of step s's gates in Run.gates: its place in its block's (with one block,
    gblk = T, its time index's)."""
    return (step_time(r, s) - block_time(r, s)) * r.B


cdef inline Py_ssize_t state_row(const Run *r, Py_ssize_t s) noexcept nogil:
    """First row of step s's slot in Run.state: its time index when every step is kept,
    else one of two ping-pong slots."""
    return (step_time(r, s) if r.keep else (s & 1)) * r.B


cdef inline Py_ssize_t step_rows(const Run *r, Py_ssize_t t) noexcept nogil:
    """The rows running at time index t: the first nact[t] (variable lengths), else all B."""
    return r.nact[t] if r.nact != NULL else r.B


cdef void pad_step(const Cell *cl, const Run *r, Py_ssize_t s, int tid, int nt,
                   floating *tag) noexcept nogil:
    """Variable lengths, forward step s (time t), thread tid's columns: the padding rows of
    out at t (rows nact[t] .. B, which no phase of the step writes) become zero, but for the
    rows that start at the next step of a reverse pass (t - 1 is their last valid time index):
    those get h0 (and, LSTM, c0 in step s's state slot), the h_{t-1} / c_{t-1} that the next
    step (and backward) read there."""
    cdef Py_ssize_t t = step_time(r, s), B = r.B, Bt, nxt, b, lo, hi, P = cl.P, H = cl.H
    if r.nact == NULL:
        return
    Bt = r.nact[t]
    nxt = r.nact[t - 1] if r.reverse and t > 0 else Bt
    cdef floating *out = <floating *>r.out + t * r.ldt * r.ldo
    unit_chunk(P, tid, nt, &lo, &hi)
    if lo < hi:
        for b in range(Bt, nxt):
            memcpy(out + b * r.ldo + lo, <const floating *>r.h0 + b * P + lo,
                   (hi - lo) * sizeof(floating))
        zero_rows(lo, hi, nxt, B, out, r.ldo)
    if cl.kind == LSTM_CELL and nxt > Bt:
        unit_chunk(H, tid, nt, &lo, &hi)
        for b in range(Bt, nxt):
            if lo < hi:
                memcpy(<floating *>r.state + (state_row(r, s) + b) * H + lo,
                       <const floating *>r.c0 + b * H + lo, (hi - lo) * sizeof(floating))


cdef inline void phase_end(const Run *r) noexcept nogil:
    """The end of a phase of a forward pass: a barrier of the team, but in a solo pass."""
    if not r.solo:
        fr_barrier()


cdef inline const floating *h_prev(const Run *r, const floating *out, Py_ssize_t s,
                                   Py_ssize_t P, Py_ssize_t *ld) noexcept nogil:
    """h_{t-1} of step s: h0 (row stride P) at the first step, else the previous step's rows
    of out (row stride ldo)."""
    if s == 0:
        ld[0] = P
        return <const floating *>r.h0
    ld[0] = r.ldo
    return out + step_time(r, s - 1) * r.ldt * r.ldo


cdef inline const floating *state_prev(const Run *r, const floating *state, Py_ssize_t s,
                                       Py_ssize_t H) noexcept nogil:
    """c_{t-1} of step s (LSTM): c0 at the first step, else the previous step's slot."""
    if s == 0:
        return <const floating *>r.c0
    return state + state_row(r, s - 1) * H


# ---------------------------------------------------------------- claims
# SPLIT_CLAIMS: the hidden units of a step are cut into chunks of whole panels; each thread
# owns a run of chunks (as SPLIT_UNITS would give it) and claims them one by one from its
# counter, then claims what is left of the other threads' (their counters).  A chunk is the
# gate columns of its units (and, at a block's first step, their input projection) and then
# their gate pass, which reads nothing another chunk writes.  When the cores run at the same
# speed every thread does its own chunks, as with SPLIT_UNITS; when one is slowed (a busy SMT
# sibling, a neighbour on the host, a preempted vCPU), the others take over its last chunks
# instead of waiting for them at the barrier.  Each thread packs a step's left operand once
# (Run.pk) for all the chunks it claims.  The result is the same, to the bit, whoever computes a
# chunk.  A round (a step's product and pass; GRU_ORIG has two per step) uses counters
# claims[round % 2]: each thread zeroes its counter of the next round during this one (after
# the barrier that ended the previous round, before the one that starts the next).
cdef struct Claims:
    int split               # Split: with SPLIT_COLS and SPLIT_UNITS one fixed range, no claims
    Py_ssize_t *ctr         # this round's counters, CLAIM_STRIDE apart
    Py_ssize_t csz, nch     # units per chunk (whole panels), chunks
    int tid, nt, k          # k: the owner being claimed from is (tid + k) % nt
    bint rev                # take chunks last first (odd steps: W walked backwards)
    bint packed, xpacked    # the left operand of this round is in apk, the x block in xpk
    void *apk
    void *xpk


cdef inline void claims_start(Claims *cs, const Run *r, const Cell *cl, Py_ssize_t rnd,
                              int tid, int nt, int split, bint rev) noexcept nogil:
    """Thread tid's share of round rnd (over cl.H hidden units), split as `split` says."""
    cdef Py_ssize_t npan = (cl.H + fr_packed_nr() - 1) // fr_packed_nr(), per
    cs.split, cs.tid, cs.nt, cs.k, cs.rev = split, tid, nt, 0, rev
    cs.packed = cs.xpacked = False
    cs.ctr, cs.apk, cs.xpk, cs.csz, cs.nch = NULL, NULL, NULL, 0, 0
    if split != SPLIT_CLAIMS:
        return
    per = max(1, npan // ((CLAIMS_PER_THREAD if r.B < CLAIM_BIG_ROWS
                           else CLAIMS_PER_THREAD // 2) * nt))
    cs.csz = per * fr_packed_nr()
    cs.nch = (cl.H + cs.csz - 1) // cs.csz
    cs.ctr = r.claims + (rnd & 1) * nt * CLAIM_STRIDE
    cs.apk = <char *>r.pk + tid * r.pksz * (8 if cl.dbl else 4)
    cs.xpk = <char *>cs.apk + r.pkx * (8 if cl.dbl else 4)
    r.claims[((rnd + 1) & 1) * nt * CLAIM_STRIDE + tid * CLAIM_STRIDE] = 0


cdef inline bint claim_next(Claims *cs, Py_ssize_t H, Py_ssize_t *lo,
                            Py_ssize_t *hi) noexcept nogil:
    """The next chunk [lo, hi) of hidden units this thread claims; False when none is left."""
    cdef int o
    cdef Py_ssize_t c0, c1, i
    while cs.k < cs.nt:
        o = (cs.tid + cs.k + claim_skew) % cs.nt
        c0 = chunk_lo(cs.nch, 1, o, cs.nt)
        c1 = chunk_lo(cs.nch, 1, o + 1, cs.nt)
        if c0 < c1:
            i = fr_fetch_inc(cs.ctr + o * CLAIM_STRIDE)
            if i < c1 - c0:
                i = c1 - 1 - i if cs.rev else c0 + i
                lo[0] = i * cs.csz
                hi[0] = min(H, lo[0] + cs.csz)
                return True
        cs.k += 1
    return False


cdef inline Py_ssize_t claim_x_rows(Py_ssize_t T, Py_ssize_t B, Py_ssize_t gblk) noexcept nogil:
    """Rows of x that a claimed chunk projects at a block's first step, in a pass over T steps
    of B rows in blocks of gblk steps: a block's, or all of a short call's (at most
    SMALL_ROWS); 0 when the whole sequence is one product instead (Run.pk holds that many rows
    of x per thread)."""
    if gblk < T:
        return gblk * B
    return T * B if T * B <= SMALL_ROWS else 0


cdef inline bint claims_project(const Run *r) noexcept nogil:
    """Whether the claimed chunks run the input projection (of their units, at a block's first
    step): where project() would split it by own units without a barrier."""
    return r.nact == NULL and claim_x_rows(r.T, r.B, r.gblk) > 0


cdef inline Py_ssize_t claim_counters(Py_ssize_t threads) noexcept nogil:
    """Entries of Run.claims for a team of up to `threads`: two rounds' counters per thread,
    CLAIM_STRIDE apart."""
    return 2 * threads * CLAIM_STRIDE


cdef inline void claim_project(Claims *cs, const Cell *cl, const Run *r, Py_ssize_t s,
                               Py_ssize_t lo, Py_ssize_t hi, floating *tag) noexcept nogil:
    """At the first step s of a block (claims_project): gates = x W_ih^T for the block's
    rows and the gate columns of units [lo, hi); the x block packed once per thread (xpk)."""
    cdef Py_ssize_t n = min(r.gblk, r.T - s), B = r.B, G = cl.G, I = cl.I_
    pgemm_prepacked(&cs.xpacked, n * B, lo, hi, G // cl.H, cl.H, I,
                    <const floating *>r.x + block_time(r, s) * B * I, I, <floating *>cs.xpk,
                    <const floating *>r.wp_ih, G, <floating>0, <floating *>r.gates, G, False)


cdef inline bint next_units(Claims *cs, const Cell *cl, const Run *r, Py_ssize_t s, bint proj,
                            Py_ssize_t n0, Py_ssize_t ngates, Py_ssize_t M, Py_ssize_t K,
                            const floating *A, Py_ssize_t lda, const floating *Wp,
                            Py_ssize_t N, floating beta, floating *C, Py_ssize_t ldc,
                            floating *work, Py_ssize_t *lo, Py_ssize_t *hi) noexcept nogil:
    """The next hidden units [lo, hi) of this thread's share of a round (claims_start), with
    the round's product C[:, n0 + q H + j] (=, += when beta) A W^T, q < ngates, j in [lo, hi)
    done; False when the share is done.  SPLIT_CLAIMS: a claimed chunk (with proj, at a
    block's first step, its input projection first); otherwise the thread's fixed units, once
    (pgemm_gates: SPLIT_COLS has a barrier after the product)."""
    if cs.split != SPLIT_CLAIMS:
        if cs.k > 0:
            return False
        cs.k = 1
        pgemm_gates(cs.tid, cs.nt, cs.split == SPLIT_UNITS, n0, ngates, cl.H, M, K, A, lda, Wp,
                    N, beta, C, ldc, work, lo, hi, cs.rev)
        return lo[0] < hi[0]
    if not claim_next(cs, cl.H, lo, hi):
        return False
    if proj and s % r.gblk == 0 and claims_project(r):
        claim_project(cs, cl, r, s, lo[0], hi[0], C)
    pgemm_prepacked(&cs.packed, M, n0 + lo[0], n0 + hi[0], ngates, cl.H, K, A, lda,
                    <floating *>cs.apk, Wp, N, beta, C, ldc, cs.rev)
    return True


cdef void project(const Cell *cl, const Run *r, Py_ssize_t t0, Py_ssize_t n, int tid, int nt,
                  bint own, floating *tag) noexcept nogil:
    """The input projection of the n time indices from t0 (all T, or a block of Run.gblk):
    gates = x W_ih^T, one packed GEMM whose rows (few rows, or blocks with own units: columns)
    are shared between the threads, into Run.gates from its first row."""
    cdef Py_ssize_t B = r.B, G = cl.G, I = cl.I_, lo, hi, t
    cdef floating *work = <floating *>r.work + tid * r.wsz
    if r.nact != NULL:
        pgemm_steps(tid, nt, n, B, r.nact + t0, G, I,
                    <const floating *>r.x + (0 if r.xrow != NULL else t0 * B * I),
                    r.xrow + t0 * B if r.xrow != NULL else NULL, I,
                    <const floating *>r.wp_ih, <floating *>r.gates, G, work)
        phase_end(r)
    elif r.ldt != B:
        # a part of a batch split: its rows of x are B of every ldt, one product per time index
        for t in range(t0, t0 + n):
            pgemm_rows(tid, nt, B, G, I, <const floating *>r.x + t * r.ldt * I, I,
                       <const floating *>r.wp_ih, <floating>0,
                       <floating *>r.gates + (t - t0) * B * G, G, work)
        phase_end(r)
    elif n * B <= SMALL_ROWS or (own and r.gblk < r.T):
        # split as the steps split their products (pgemm_gates): with own units, a thread's
        # steps read only the columns it computes here, so no barrier (and none before the
        # next block overwrites them)
        pgemm_gates(tid, nt, own, 0, G // cl.H, cl.H, n * B, I,
                    <const floating *>r.x + t0 * B * I, I, <const floating *>r.wp_ih, G,
                    <floating>0, <floating *>r.gates, G, work, &lo, &hi, False)
    else:
        pgemm_rows(tid, nt, n * B, G, I, <const floating *>r.x + t0 * B * I, I,
                   <const floating *>r.wp_ih, <floating>0, <floating *>r.gates, G, work)
        phase_end(r)


cdef void forward_thread(const Cell *cl, const Run *r, int tid, int nt, int split,
                         floating *tag) noexcept nogil:
    """Thread tid of nt: its share of every phase of a forward pass over the sequence; split:
    how the steps are shared (Split; the same for the whole team)."""
    cdef Py_ssize_t s, T = r.T
    for s in range(T):
        if s % r.gblk == 0 and not (split == SPLIT_CLAIMS and claims_project(r)):
            project(cl, r, block_time(r, s), min(r.gblk, T - s), tid, nt,
                    split != SPLIT_COLS, tag)
        if cl.kind == LSTM_CELL:
            lstm_step(cl, r, s, tid, nt, split, tag)
        else:
            gru_step(cl, r, s, tid, nt, split, tag)


cdef void backward_thread(const Cell *cl, const Run *r, const Grad *gr, int tid, int nt,
                          floating *tag) noexcept nogil:
    """Thread tid of nt: its share of every phase of backpropagation through the sequence:
    the steps in reverse order, then the weight gradients (a packed product per block of
    gr.sblk steps, x and h_{t-1} packed for it first; then the tails) and dx (GEMMs over
    rows, output rows shared)."""
    cdef Py_ssize_t sb, t0, t1, T = r.T, B = r.B, G = cl.G, I = cl.I_
    for sb in range(T):
        if cl.kind == LSTM_CELL:
            lstm_step_back(cl, r, gr, T - 1 - sb, tid, nt, tag)
        else:
            gru_step_back(cl, r, gr, T - 1 - sb, tid, nt, tag)
    t0 = 0
    while t0 < T:
        t1 = min(T, t0 + gr.sblk)
        pack_rows(tid, nt, I, (t1 - t0) * B, 0, (t1 - t0) * B,
                  <const floating *>r.x + t0 * B * I, I, <floating *>gr.xp)
        pack_hprev(tid, nt, T, B, t0, t1, cl.P, <const floating *>r.out, r.ldo,
                   <const floating *>r.h0, r.reverse, <floating *>gr.hp)
        fr_barrier()
        if cl.kind == LSTM_CELL:
            lstm_wgrads(cl, r, gr, t0, t1, tid, nt, tag)
        else:
            gru_wgrads(cl, r, gr, t0, t1, tid, nt, tag)
        if t1 < T:                  # (every thread decides the same: the barriers match)
            fr_barrier()            # before the next block's packing; the tails need none
        t0 = t1
    if cl.kind == LSTM_CELL:
        lstm_tail(cl, r, gr, tid, nt, tag)
    else:
        gru_tail(cl, r, gr, tid, nt, tag)
    rows_gemm(tid, nt, NoTrans, T * B, I, G, <const floating *>r.gates, G,
              <const floating *>cl.W_ih, I, <floating>(1 if gr.accumulate else 0),
              <floating *>gr.dx, I)


cdef void run_forward(const Cell **cells, const Run **runs, int n, int threads) noexcept nogil:
    """Forward passes of n cells with the same phases (the two directions of a layer, or the
    parts of a batch split): with n >= 2 and >= 2 threads they run at the same time, solo
    passes (Run.solo) each on one thread, two directions otherwise each on its share."""
    cdef int tid = 0, nt = 1, k, group = 0, split = SPLIT_UNITS
    cdef bint together = n == 2 and threads >= 2
    if n >= 2 and threads < 2:
        for k in range(n):
            run_forward(cells + k, runs + k, 1, threads)
        return
    if threads <= 1:
        # no parallel region (its start costs about a microsecond, much of a short call);
        # fr_barrier outside one is a no-op
        forward_cell(cells[0], runs[0], 0, 1, SPLIT_UNITS)
        finish_forward(cells[0], runs[0])
        return
    for k in range(n):
        if runs[k].claims != NULL:
            memset(runs[k].claims, 0, claim_counters(threads) * sizeof(Py_ssize_t))
    with parallel(num_threads=threads):
        tid = fr_thread_num()
        nt = fr_num_threads()
        group = 0
        if runs[0].solo:
            # each thread its passes alone: tid, tid + nt, ...
            k = tid
            while k < n:
                forward_cell(cells[k], runs[k], 0, 1, SPLIT_UNITS)
                k = k + nt
        else:
            # every thread decides the same (the team's barriers must match in number)
            split = team_split(cells[0], runs[0], nt)
            if together and nt >= 2:
                split = min(team_split(cells[0], runs[0], (nt + 1) // 2),
                            team_split(cells[1], runs[1], nt // 2))
                # thread tid of the team is thread tid // 2 of its direction's group
                group = tid % 2
                nt = (nt - group + 1) // 2
                tid = tid // 2
            if together and fr_num_threads() < 2:
                # a team of one (OpenMP gave fewer threads than asked): the directions in turn
                forward_cell(cells[0], runs[0], 0, 1, SPLIT_UNITS)
                forward_cell(cells[1], runs[1], 0, 1, SPLIT_UNITS)
            else:
                forward_cell(cells[group], runs[group], tid, nt, split)
    for k in range(n):
        finish_forward(cells[k], runs[k])


cdef inline void *rows_at(const void *p, Py_ssize_t n, Py_ssize_t isz) noexcept nogil:
    """p advanced by n elements of isz bytes (a buffer without rows stays NULL)."""
    return <char *>p + n * isz if p != NULL else NULL


cdef void part_run(const Cell *cl, const Run *whole, Run *part, Py_ssize_t b0, Py_ssize_t b1,
                   int p) noexcept nogil:
    """Part p of a batch split of the pass `whole` (may be the same Run): a solo pass over
    its rows b0 .. b1 of every time index, on workspace p and its own rows of the buffers."""
    cdef Py_ssize_t isz = 8 if cl.dbl else 4
    cdef Py_ssize_t B = whole.B
    part[0] = whole[0]
    part.B, part.ldt, part.solo = b1 - b0, B, True
    part.x = rows_at(whole.x, b0 * cl.I_, isz)
    part.out = rows_at(whole.out, b0 * whole.ldo, isz)
    part.h0 = rows_at(whole.h0, b0 * cl.P, isz)
    part.h_n = rows_at(whole.h_n, b0 * cl.P, isz)
    part.c0 = rows_at(whole.c0, b0 * cl.H, isz)
    part.c_n = rows_at(whole.c_n, b0 * cl.H, isz)
    part.gates = rows_at(whole.gates, whole.gblk * b0 * cl.G, isz)
    part.state = rows_at(whole.state, 2 * b0 * cl.H, isz)     # (2 slots of B rows)
    part.aux = rows_at(whole.aux, b0 * (cl.G if cl.kind == GRU_CELL else cl.H), isz)
    part.work = rows_at(whole.work, p * whole.wsz, isz)
    part.pk, part.claims = NULL, NULL


cdef inline int team_split(const Cell *cl, const Run *r, int nt) noexcept nogil:
    """How nt threads share the steps of a pass (Split): claims when each thread gets whole
    panels, the steps are large enough and the buffers have room for pre-packed operands."""
    if nt < 2 or not units_split(cl.H, nt):
        return SPLIT_COLS if nt >= 2 else SPLIT_UNITS
    if r.pk != NULL and r.claims != NULL and r.B * cl.G * cl.P >= claim_min_work:
        return SPLIT_CLAIMS
    return SPLIT_UNITS


cdef inline void forward_cell(const Cell *cl, const Run *r, int tid, int nt,
                              int split) noexcept nogil:
    """forward_thread of the cell's floating type."""
    if cl.dbl:
        forward_thread(cl, r, tid, nt, split, <double *>NULL)
    else:
        forward_thread(cl, r, tid, nt, split, <float *>NULL)


cdef inline void backward_cell(const Cell *cl, const Run *r, const Grad *gr, int tid,
                               int nt) noexcept nogil:
    """backward_thread of the cell's floating type."""
    if cl.dbl:
        backward_thread(cl, r, gr, tid, nt, <double *>NULL)
    else:
        backward_thread(cl, r, gr, tid, nt, <float *>NULL)


cdef void finish_forward(const Cell *cl, const Run *r) noexcept nogil:
    """Copy the final state: h_n from the last step's rows of out, c_n from its slot (LSTM)."""
    cdef Py_ssize_t b, isz = 8 if cl.dbl else 4
    cdef Py_ssize_t s = r.T - 1
    for b in range(r.B):
        if r.nact != NULL and not r.reverse:
            # row b's last step: the running rows only shrink, so its slots were kept since
            while s > 0 and r.nact[s] <= b:
                s -= 1
        memcpy(<char *>r.h_n + b * cl.P * isz,
               <char *>r.out + (step_time(r, s) * r.ldt + b) * r.ldo * isz, cl.P * isz)
        if cl.kind == LSTM_CELL:
            memcpy(<char *>r.c_n + b * cl.H * isz,
                   <char *>r.state + (state_row(r, s) + b) * cl.H * isz, cl.H * isz)


cdef void run_backward(const Cell *cl, const Run *r, const Grad *gr, int threads) noexcept nogil:
    """Backpropagation through time for one cell over a Run kept by a forward pass (keep)."""
    cdef int tid = 0, nt = 1
    cdef Py_ssize_t isz = 8 if cl.dbl else 4
    cdef Py_ssize_t n_bias
    memcpy(gr.dh0, gr.dh_n, r.B * cl.P * isz)         # dh0 holds the running dL/dh
    if cl.kind == LSTM_CELL:
        memcpy(gr.dc0, gr.dc_n, r.B * cl.H * isz)     # dc0 holds the running dL/dc
    if threads <= 1:                                  # as in run_forward
        backward_cell(cl, r, gr, 0, 1)
    else:
        with parallel(num_threads=threads):
            tid = fr_thread_num()
            nt = fr_num_threads()
            backward_cell(cl, r, gr, tid, nt)
    # b_ih and b_hh get the same gradient, but for GRU_CELL's b_hn (its own, in db_hh)
    n_bias = 2 * cl.H if cl.kind == GRU_CELL else cl.G
    memcpy(gr.db_hh, gr.db_ih, n_bias * isz)


# ================================================================ LSTM
cdef void lstm_step(const Cell *cl, const Run *r, Py_ssize_t s, int tid, int nt, int split,
                    floating *tag) noexcept nogil:
    """gates_t += h_{t-1} W_hh^T; the fused pass (i, f, g, o, c_t, h_t or the projection input
    o tanh(c_t)); with a projection h_t = (o tanh(c_t)) W_hr^T.  Only the Bt running rows."""
    cdef Py_ssize_t H = cl.H, P = cl.P, G = cl.G, lo, hi, ldhp, ldh
    cdef floating *out = <floating *>r.out
    cdef floating *state = <floating *>r.state
    cdef floating *work = <floating *>r.work + tid * r.wsz
    cdef Py_ssize_t t = step_time(r, s), B = r.B, Bt = step_rows(r, t)
    cdef floating *g_t = <floating *>r.gates + gates_row(r, s) * G
    cdef floating *h_t = out + t * r.ldt * r.ldo
    cdef const floating *hp = h_prev(r, out, s, P, &ldhp)
    cdef floating *hdst = <floating *>r.aux if cl.wp_hr != NULL else h_t
    cdef Claims cs
    ldh = H if cl.wp_hr != NULL else r.ldo
    claims_start(&cs, r, cl, s, tid, nt, split, s & 1)
    while next_units(&cs, cl, r, s, True, 0, 4, Bt, P, hp, ldhp, <const floating *>cl.wp_hh, G,
                     <floating>1, g_t, G, work, &lo, &hi):
        lstm_fwd(Bt, H, lo, hi, g_t, G, <const floating *>cl.bias,
                 state_prev(r, state, s, H), state + state_row(r, s) * H, hdst, ldh)
    pad_step(cl, r, s, tid, nt, tag)
    phase_end(r)
    if cl.wp_hr != NULL:
        pgemm_cols(tid, nt, Bt, 0, P, H, <const floating *>r.aux, H,
                   <const floating *>cl.wp_hr, P, <floating>0, h_t, r.ldo, work, s & 1)
        phase_end(r)


cdef void lstm_step_back(const Cell *cl, const Run *r, const Grad *gr, Py_ssize_t s, int tid,
                         int nt, floating *tag) noexcept nogil:
    """One step of BPTT: dL/dh_t = dout_t + the recurrent part (in dh0); with a projection
    dL/d(o tanh c_t) = dL/dh_t W_hr; the fused pass (gates -> pre-activation gradients dG_t,
    dc -> dL/dc_{t-1}); then the recurrent part of dL/dh_{t-1} = dG_t W_hh.  Only the Bt
    running rows; the padding rows of what the tail sums over become zero."""
    cdef Py_ssize_t H = cl.H, P = cl.P, G = cl.G, lo, hi, ldhp, b
    cdef floating *work = <floating *>r.work + tid * r.wsz
    cdef Py_ssize_t t = step_time(r, s), B = r.B, Bt = step_rows(r, t)
    cdef floating *g_t = <floating *>r.gates + t * B * G
    cdef floating *state = <floating *>r.state
    cdef floating *dh = <floating *>gr.dh0
    cdef floating *dhtot = <floating *>gr.dhtot
    cdef bint proj = cl.wp_hr != NULL
    unit_chunk(P, tid, nt, &lo, &hi)
    if lo < hi:
        add_rows(Bt, P, lo, hi, dh, <const floating *>gr.dout + t * B * gr.lddo, gr.lddo)
        if proj:
            for b in range(Bt):
                memcpy(dhtot + (t * B + b) * P + lo, dh + b * P + lo,
                       (hi - lo) * sizeof(floating))
            zero_rows(lo, hi, t * B + Bt, t * B + B, dhtot, P)
    fr_barrier()
    if proj:
        pgemm_cols(tid, nt, Bt, 0, H, P, dh, P, <const floating *>cl.wt_hr, H, <floating>0,
                   <floating *>gr.dr, H, work, s & 1)
        fr_barrier()
    unit_chunk(H, tid, nt, &lo, &hi)
    if lo < hi:
        lstm_bwd(Bt, H, lo, hi, g_t, state + t * B * H, state_prev(r, state, s, H),
                 <floating *>gr.dr if proj else dh, <floating *>gr.dc0,
                 <floating *>gr.r_all + (t * B * H if proj else 0))
        if proj:
            zero_rows(lo, hi, t * B + Bt, t * B + B, <floating *>gr.r_all, H)
    unit_chunk(G, tid, nt, &lo, &hi)
    zero_rows(lo, hi, Bt, B, g_t, G)
    fr_barrier()
    pgemm_cols(tid, nt, Bt, 0, P, G, g_t, G, <const floating *>cl.wt_hh, P, <floating>0, dh, P,
               work, s & 1)
    fr_barrier()


cdef void lstm_wgrads(const Cell *cl, const Run *r, const Grad *gr, Py_ssize_t t0,
                      Py_ssize_t t1, int tid, int nt, floating *tag) noexcept nogil:
    """The steps t0 .. t1's part of dW_ih and dW_hh from dG and x, h_{t-1} (packed in gr.xp,
    gr.hp): one product, dG is read once for both."""
    cdef Py_ssize_t B = r.B, P = cl.P, G = cl.G, I = cl.I_
    grad_packed(tid, nt, G, (t1 - t0) * B, <const floating *>r.gates + t0 * B * G, G, I,
                <const floating *>gr.xp, <floating *>gr.dW_ih, I, P, <const floating *>gr.hp,
                <floating *>gr.dW_hh, P, t0 > 0, <floating *>r.work + tid * r.wsz)


cdef void lstm_tail(const Cell *cl, const Run *r, const Grad *gr, int tid, int nt,
                    floating *tag) noexcept nogil:
    """db (the sum of dG's rows); dW_hr = sum_t dL/dh_t^T (o tanh c_t)."""
    cdef Py_ssize_t T = r.T, B = r.B, H = cl.H, P = cl.P, G = cl.G
    colsum_rows(tid, nt, T * B, G, <const floating *>r.gates, G, <const floating *>gr.ones,
                <floating *>gr.db_ih)
    if cl.wp_hr != NULL:
        grad_gemm(tid, nt, P, H, T * B, <const floating *>gr.dhtot, P,
                  <const floating *>gr.r_all, H, <floating *>gr.dW_hr, H)


# ================================================================ GRU
cdef void gru_step(const Cell *cl, const Run *r, Py_ssize_t s, int tid, int nt, int split,
                   floating *tag) noexcept nogil:
    """GRU_CELL: hg = h_{t-1} W_hh^T, then one fused pass (r, z, n, h_t; keeps W_hn h + b_hn).
    GRU_ORIG: [r | z] += h_{t-1} [W_hr | W_hz]^T; r, z and rh = r h_{t-1};
    n += rh W_hn^T; n and h_t.  Only the Bt running rows."""
    cdef Py_ssize_t H = cl.H, G = cl.G, lo, hi, ldhp
    cdef floating *out = <floating *>r.out
    cdef floating *work = <floating *>r.work + tid * r.wsz
    cdef Py_ssize_t t = step_time(r, s), B = r.B, Bt = step_rows(r, t)
    cdef floating *g_t = <floating *>r.gates + gates_row(r, s) * G
    cdef floating *h_t = out + t * r.ldt * r.ldo
    cdef const floating *hp = h_prev(r, out, s, H, &ldhp)
    cdef const floating *wp = <const floating *>cl.wp_hh
    cdef const floating *bias = <const floating *>cl.bias
    cdef floating *aux = <floating *>r.aux
    cdef Claims cs
    if cl.kind == GRU_CELL:
        claims_start(&cs, r, cl, s, tid, nt, split, s & 1)
        while next_units(&cs, cl, r, s, True, 0, 3, Bt, H, hp, ldhp, wp, G, <floating>0, aux, G,
                         work, &lo, &hi):
            gru_fwd(Bt, H, lo, hi, g_t, bias, aux, <const floating *>cl.b_hn, hp, ldhp, h_t,
                    r.ldo, <floating *>r.state + state_row(r, s) * H)
        pad_step(cl, r, s, tid, nt, tag)
        phase_end(r)
        return
    # GRU_ORIG: two rounds, the second reads r h_{t-1} of every unit
    claims_start(&cs, r, cl, 2 * s, tid, nt, split, s & 1)
    while next_units(&cs, cl, r, s, True, 0, 2, Bt, H, hp, ldhp, wp, G, <floating>1, g_t, G,
                     work, &lo, &hi):
        gru_rz(Bt, H, lo, hi, g_t, bias, hp, ldhp, aux)
    phase_end(r)
    claims_start(&cs, r, cl, 2 * s + 1, tid, nt, split, s & 1)
    while next_units(&cs, cl, r, s, False, 2 * H, 1, Bt, H, aux, H, wp, G, <floating>1, g_t, G,
                     work, &lo, &hi):
        gru_n(Bt, H, lo, hi, g_t, bias, hp, ldhp, h_t, r.ldo)
    pad_step(cl, r, s, tid, nt, tag)
    phase_end(r)


cdef void gru_step_back(const Cell *cl, const Run *r, const Grad *gr, Py_ssize_t s, int tid,
                        int nt, floating *tag) noexcept nogil:
    """One step of BPTT.  GRU_CELL: dL/dh_t = dout_t + dh; the fused pass (dG_t, dgh, the
    direct part z dh of dL/dh_{t-1}); dh += dgh W_hh.  GRU_ORIG: pass 1 (dz, dn, z dh);
    drh = dn W_hn; pass 2 (dr, dh += r drh, rh); dh += [dr | dz] [W_hr | W_hz].  Only the Bt
    running rows; the padding rows of what the tail sums over become zero."""
    cdef Py_ssize_t H = cl.H, G = cl.G, lo, hi, ldhp
    cdef floating *out = <floating *>r.out
    cdef floating *work = <floating *>r.work + tid * r.wsz
    cdef Py_ssize_t t = step_time(r, s), B = r.B, Bt = step_rows(r, t)
    cdef floating *g_t = <floating *>r.gates + t * B * G
    cdef const floating *hp = h_prev(r, out, s, H, &ldhp)
    cdef floating *dh = <floating *>gr.dh0
    cdef floating *drh = <floating *>gr.drh
    unit_chunk(H, tid, nt, &lo, &hi)
    if lo < hi:
        add_rows(Bt, H, lo, hi, dh, <const floating *>gr.dout + t * B * gr.lddo, gr.lddo)
        if cl.kind == GRU_CELL:
            gru_bwd(Bt, H, lo, hi, g_t, <floating *>r.state + t * B * H, hp, ldhp, dh,
                    <floating *>gr.dgh)
            zero_rows(lo, hi, t * B + Bt, t * B + B, <floating *>r.state, H)
        else:
            gru_bwd1(Bt, H, lo, hi, g_t, hp, ldhp, dh)
    cdef Py_ssize_t glo, ghi
    unit_chunk(G, tid, nt, &glo, &ghi)
    zero_rows(glo, ghi, Bt, B, g_t, G)
    fr_barrier()
    if cl.kind == GRU_CELL:
        pgemm_cols(tid, nt, Bt, 0, H, G, <const floating *>gr.dgh, G,
                   <const floating *>cl.wt_hh, H, <floating>1, dh, H, work, s & 1)
        fr_barrier()
        return
    pgemm_cols(tid, nt, Bt, 0, H, H, g_t + 2 * H, G, <const floating *>cl.wt_n, H,
               <floating>0, drh, H, work, s & 1)
    fr_barrier()
    if lo < hi:
        gru_bwd2(Bt, H, lo, hi, g_t, hp, ldhp, drh, dh, <floating *>gr.rh_all + t * B * H)
        zero_rows(lo, hi, t * B + Bt, t * B + B, <floating *>gr.rh_all, H)
    fr_barrier()
    pgemm_cols(tid, nt, Bt, 0, H, 2 * H, g_t, G, <const floating *>cl.wt_hh, H, <floating>1,
               dh, H, work, s & 1)
    fr_barrier()


cdef void gru_wgrads(const Cell *cl, const Run *r, const Grad *gr, Py_ssize_t t0,
                     Py_ssize_t t1, int tid, int nt, floating *tag) noexcept nogil:
    """The steps t0 .. t1's part of W_ih from dG and x, and of [W_hr | W_hz] from dG and
    h_{t-1} (with the r, z rows of W_ih: dG's r, z columns are read once for both), x and
    h_{t-1} packed in gr.xp, gr.hp; GRU_CELL: of W_hn from the gradient of W_hn h_{t-1} + b_hn
    (kept in Run.state)."""
    cdef Py_ssize_t B = r.B, H = cl.H, G = cl.G, I = cl.I_, K = (t1 - t0) * B
    cdef const floating *dG = <const floating *>r.gates + t0 * B * G
    cdef const floating *xp = <const floating *>gr.xp
    cdef const floating *hp = <const floating *>gr.hp
    cdef floating *dW_ih = <floating *>gr.dW_ih
    cdef floating *dW_hh = <floating *>gr.dW_hh
    cdef floating *work = <floating *>r.work + tid * r.wsz
    cdef bint add = t0 > 0
    grad_packed(tid, nt, 2 * H, K, dG, G, I, xp, dW_ih, I, H, hp, dW_hh, H, add, work)
    grad_packed(tid, nt, H, K, dG + 2 * H, G, I, xp, dW_ih + 2 * H * I, I, 0, NULL, NULL, 0,
                add, work)
    if cl.kind == GRU_CELL:
        grad_packed(tid, nt, H, K, <const floating *>r.state + t0 * B * H, H, H, hp,
                    dW_hh + 2 * H * H, H, 0, NULL, NULL, 0, add, work)


cdef void gru_tail(const Cell *cl, const Run *r, const Grad *gr, int tid, int nt,
                   floating *tag) noexcept nogil:
    """b_ih (the sum of dG's rows) and GRU_CELL's b_hn (of Run.state's); GRU_ORIG: W_hn from
    the gradient of r h_{t-1}."""
    cdef Py_ssize_t T = r.T, B = r.B, H = cl.H, G = cl.G, R = T * B
    cdef const floating *gates = <const floating *>r.gates
    cdef const floating *ones = <const floating *>gr.ones
    colsum_rows(tid, nt, R, G, gates, G, ones, <floating *>gr.db_ih)
    if cl.kind == GRU_CELL:
        colsum_rows(tid, nt, R, H, <const floating *>r.state, H, ones,
                    <floating *>gr.db_hh + 2 * H)
    else:
        grad_gemm(tid, nt, H, H, R, gates + 2 * H, G, <const floating *>gr.rh_all, H,
                  <floating *>gr.dW_hh + 2 * H * H, H)


# ================================================================ Python entry points
cdef inline void *buf(object a, str name, Py_ssize_t rows, Py_ssize_t cols, int typenum,
                      bint writable) except? NULL:
    """The data of `a` after checking it is a C-contiguous (rows, cols) array (cols < 0: 1-D of
    rows) of the kernel's dtype: a wrong buffer raises here, never reaches the time loop.  The
    rows may also come as several leading axes whose product is rows, e.g. x (T, B, I) or a
    state (1, B, H) or (H,): the same memory (the short calls pass the caller's arrays)."""
    cdef cnp.ndarray arr
    cdef Py_ssize_t n = 1, i, nd
    if not isinstance(a, cnp.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    arr = <cnp.ndarray>a
    if cnp.PyArray_TYPE(arr) != typenum or not cnp.PyArray_IS_C_CONTIGUOUS(arr) or (
            writable and not cnp.PyArray_ISWRITEABLE(arr)) or not cnp.PyArray_ISALIGNED(arr):
        raise ValueError(f"{name} must be a C-contiguous aligned"
                         f"{' writable' if writable else ''} "
                         f"{np.dtype(np.float64 if typenum == cnp.NPY_DOUBLE else np.float32)} "
                         f"array, got {arr.dtype} {'C' if arr.flags.c_contiguous else 'non-C'}"
                         "-contiguous")
    nd = cnp.PyArray_NDIM(arr)
    if cols < 0:
        if nd != 1 or arr.shape[0] != rows:
            raise ValueError(f"{name} must have shape ({rows},), got {a.shape}")
        return cnp.PyArray_DATA(arr)
    for i in range(nd - 1):
        n *= arr.shape[i]
    if nd < 1 or arr.shape[nd - 1] != cols or n != rows:
        raise ValueError(f"{name} must have shape ({rows}, {cols}), got {a.shape}")
    return cnp.PyArray_DATA(arr)


cdef inline bint is_ready(object a, cnp.dtype dtype) noexcept:
    """a is an ndarray (exactly) of dtype, C-contiguous and aligned: what the kernels take."""
    if not cnp.PyArray_CheckExact(a):
        return False
    return (<object>cnp.PyArray_DESCR(<cnp.ndarray>a) is dtype
            and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>a)
            and cnp.PyArray_ISALIGNED(<cnp.ndarray>a))


cdef inline bint has_dims(object a, int nd, const cnp.npy_intp *dims) noexcept:
    """The ndarray a has nd axes of sizes dims."""
    cdef int i
    if cnp.PyArray_NDIM(<cnp.ndarray>a) != nd:
        return False
    for i in range(nd):
        if cnp.PyArray_DIMS(<cnp.ndarray>a)[i] != dims[i]:
            return False
    return True


cdef inline void *index_buf(object a, str name, Py_ssize_t n) except? NULL:
    """The data of `a` after checking it is a C-contiguous (n,) array of Py_ssize_t."""
    if (not isinstance(a, np.ndarray) or a.dtype != np.intp or a.ndim != 1 or a.shape[0] != n
            or not a.flags.c_contiguous or not a.flags.aligned):
        raise ValueError(f"{name} must be a C-contiguous aligned ({n},) {np.dtype(np.intp)} "
                         "array")
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef class Buffers:
    """The work buffers of one pass (Run.gates and .gblk, .state, .aux, .work, and with 2+
    threads .pk, .pksz, .pkx, .claims) or, for backward, of Grad (dr, dhtot, r_all, dgh, drh,
    rh_all, ones, xp, hp) + .work; made by Kernel.buffers()."""
    cdef public object gates, state, aux, work, dr, dhtot, r_all, dgh, drh, rh_all, ones, xp, hp
    cdef public object pk, claims
    cdef public Py_ssize_t T, B, threads, wsz, sblk, gblk, pksz, pkx
    cdef public bint keep, backward


def aligned_empty(Py_ssize_t n, dtype, Py_ssize_t align=64):
    """An uninitialised 1-D array of n elements whose data starts on an `align`-byte boundary."""
    dtype = np.dtype(dtype)
    raw = np.empty(n + align // dtype.itemsize, dtype=dtype)
    off = (-raw.ctypes.data % align) // dtype.itemsize
    return raw[off:off + n]


def aligned_array(tuple shape, dtype, Py_ssize_t min_bytes=0):
    """An uninitialised C-contiguous array of `shape`, on a 64-byte (cache line) boundary when
    it has at least min_bytes: the threads of a step write neighbouring column ranges of the
    buffers (gates, out), and boundaries at multiples of 16 floats then never share a cache
    line.  Smaller arrays come from numpy as they are (for a new array per call: aligning
    costs ~1 us, much of a short call)."""
    cdef Py_ssize_t n = 1, d
    cdef cnp.dtype dt = dtype if isinstance(dtype, cnp.dtype) else np.dtype(dtype)
    for d in shape:
        n *= d
    if n * dt.itemsize < min_bytes:
        return np.empty(shape, dtype=dtype)
    return aligned_empty(n, dtype).reshape(shape)


# backward's weight gradients run over blocks of steps whose packed x and h_{t-1} take at most
# this (Kernel._grad_steps): a bounded workspace however long the sequence
GRAD_BLOCK_BYTES = 16 << 20


def packed_size(Py_ssize_t N, Py_ssize_t K, bint dbl):
    """Elements of the packed copy of an (N, K) weight (packed_gemm.h)."""
    return fr_packed_size_f64(N, K) if dbl else fr_packed_size_f32(N, K)


def packed_work_size(Py_ssize_t M, Py_ssize_t K, bint dbl):
    """Elements of one thread's workspace for a packed product on an (M, K) left operand."""
    return work_elems(M, K, dbl)


cdef inline Py_ssize_t work_elems(Py_ssize_t M, Py_ssize_t K, bint dbl) noexcept nogil:
    return fr_packed_work_size_f64(M, K) if dbl else fr_packed_work_size_f32(M, K)


cdef inline Py_ssize_t work_bound(Py_ssize_t M, Py_ssize_t K, bint dbl) noexcept nogil:
    """The most work_elems(M, k) for any k <= K (work_elems is not monotone in K)."""
    return fr_packed_work_bound_f64(M, K) if dbl else fr_packed_work_bound_f32(M, K)


cdef object pack(object W, bint trans):
    """The packed copy of W (N, K), or of W^T when trans (W then (K, N)), for the packed GEMM."""
    cdef cnp.ndarray A = np.ascontiguousarray(W)
    cdef Py_ssize_t N = A.shape[1] if trans else A.shape[0]
    cdef Py_ssize_t K = A.shape[0] if trans else A.shape[1]
    cdef bint dbl = A.dtype == np.float64
    Wp = aligned_empty(max(1, packed_size(N, K, dbl)), A.dtype)
    cdef void *dst = cnp.PyArray_DATA(<cnp.ndarray>Wp)
    cdef const void *src = cnp.PyArray_DATA(A)
    with nogil:
        if dbl:
            pack_weights(N, K, <const double *>src, <double *>dst, trans)
        else:
            pack_weights(N, K, <const float *>src, <float *>dst, trans)
    return Wp


cdef class Kernel:
    """One layer and direction of an LSTM or GRU, ready to run: its weights, packed once (the
    transposes for backward on first use).  Immutable: a weight change makes a new Kernel.

    kind: "lstm", "gru" (reset_after) or "gru_orig"; W_ih (G, I), W_hh (G, P), W_hr (P, H) or
    None, bias (G) and b_hn (H, GRU reset_after, else None) as Cell documents them.
    """
    cdef Cell cell
    cdef readonly str kind
    cdef readonly object dtype
    cdef object W_ih, W_hh, W_hr, bias, b_hn, wp_ih, wp_hh, wp_hr, wt_hh, wt_n, wt_hr
    cdef int typenum

    def __init__(self, str kind, W_ih, W_hh, W_hr, bias, b_hn):
        if kind not in CELL_KINDS:
            raise ValueError(f"kind must be one of {sorted(CELL_KINDS)}, got {kind!r}")
        self.kind = kind
        self.dtype = np.dtype(W_ih.dtype)
        if self.dtype not in (np.float32, np.float64):
            raise TypeError(f"weights must be float32 or float64, got {self.dtype}")
        self.typenum = cnp.NPY_DOUBLE if self.dtype == np.float64 else cnp.NPY_FLOAT
        cdef Cell *c = &self.cell
        c.kind = CELL_KINDS[kind]
        c.dbl = self.dtype == np.float64
        c.G, c.I_ = W_ih.shape
        c.H = c.G // (4 if c.kind == LSTM_CELL else 3)
        c.P = W_hh.shape[1]
        if (c.kind != LSTM_CELL or W_hr is None) and c.P != c.H:
            raise ValueError(f"W_hh must have shape ({c.G}, {c.H}), got {W_hh.shape}")
        self.W_ih, self.W_hh, self.W_hr, self.bias, self.b_hn = W_ih, W_hh, W_hr, bias, b_hn
        c.W_ih = buf(W_ih, "W_ih", c.G, c.I_, self.typenum, False)
        buf(W_hh, "W_hh", c.G, c.P, self.typenum, False)
        c.bias = buf(bias, "bias", c.G, -1, self.typenum, False)
        c.b_hn = buf(b_hn, "b_hn", c.H, -1, self.typenum, False) if c.kind == GRU_CELL else NULL
        self.wp_hh = pack(W_hh, False)
        c.wp_hh = cnp.PyArray_DATA(<cnp.ndarray>self.wp_hh)
        c.wp_hr = NULL
        if W_hr is not None:
            buf(W_hr, "W_hr", c.P, c.H, self.typenum, False)
            self.wp_hr = pack(W_hr, False)
            c.wp_hr = cnp.PyArray_DATA(<cnp.ndarray>self.wp_hr)
        c.wt_hh = c.wt_n = c.wt_hr = NULL

    cdef int _pack_transposes(self) except -1:
        """The packed W^T that the backward step products use (once per Kernel).  pack()
        releases the GIL, so two threads may pack at once: the copies are installed only if
        none is yet, in one step under the GIL, and never replaced (a running pass keeps
        reading them)."""
        cdef Cell *c = &self.cell
        H = c.H
        if c.wt_hh != NULL:
            return 0
        wt_n = wt_hr = None
        if c.kind == GRU_ORIG_CELL:
            wt_n = pack(self.W_hh[2 * H:], True)
            wt_hh = pack(self.W_hh[:2 * H], True)
        else:
            wt_hh = pack(self.W_hh, True)
        if self.W_hr is not None:
            wt_hr = pack(self.W_hr, True)
        if c.wt_hh != NULL:                     # another thread installed them meanwhile
            return 0
        self.wt_hh, self.wt_n, self.wt_hr = wt_hh, wt_n, wt_hr
        c.wt_n = cnp.PyArray_DATA(<cnp.ndarray>wt_n) if wt_n is not None else NULL
        c.wt_hr = cnp.PyArray_DATA(<cnp.ndarray>wt_hr) if wt_hr is not None else NULL
        c.wt_hh = cnp.PyArray_DATA(<cnp.ndarray>wt_hh)
        return 0

    @property
    def sizes(self):
        """(I, H, P, G)."""
        return self.cell.I_, self.cell.H, self.cell.P, self.cell.G

    def work_size(self, Py_ssize_t T, Py_ssize_t B, bint backward=False, Py_ssize_t I=0):
        """Elements of one thread's packed-GEMM workspace for passes over T steps of B rows
        (and inputs of up to max(I, this cell's I) features)."""
        return self._work_size(T, B, backward, I)

    cdef Py_ssize_t _work_size(self, Py_ssize_t T, Py_ssize_t B, bint backward,
                               Py_ssize_t I) noexcept:
        cdef Cell *c = &self.cell
        # (rows, K) of every packed product: the steps' (B rows), forward the input projection's
        # too (at most T*B rows per thread, K = I; the layers of a model share buffers, sized
        # for the largest I, so any smaller K must fit too)
        cdef Py_ssize_t w
        if backward:
            return self._bwd_work(B, self._grad_steps(T, B, I))
        w = max(work_elems(B, c.P, c.dbl), work_elems(B, c.H, c.dbl),
                work_bound(T * B, max(I, c.I_), c.dbl))
        return max(16, (w + 15) // 16 * 16)

    def gates_block(self, Py_ssize_t T, Py_ssize_t B, bint keep=False):
        """Steps of a block of the input projection (Run.gblk) in a pass over T steps of B
        rows: T (one projection of the whole sequence) but for inference when blocks pay
        (see PROJ_BLOCK_ROWS)."""
        return self._gates_block(T, B, keep, self.cell.I_)

    cdef Py_ssize_t _gates_block(self, Py_ssize_t T, Py_ssize_t B, bint keep,
                                 Py_ssize_t I) noexcept:
        """gates_block for inputs of I features (buffers for inputs of up to I features use
        it for all their passes: any block size is correct, this one within PROJ_BLOCK_BYTES)."""
        cdef Py_ssize_t n
        if keep or B <= 0 or T <= 1:
            return max(T, 1)
        n = (max(<Py_ssize_t>PROJ_BLOCK_ROWS, I) + B - 1) // B
        if n >= T or n * B * self.cell.G * (8 if self.cell.dbl else 4) > PROJ_BLOCK_BYTES:
            return T
        return n

    cdef tuple _pk_sizes(self, Py_ssize_t T, Py_ssize_t B, Py_ssize_t gblk, Py_ssize_t I):
        """(pkx, pksz) of Run.pk for passes over T steps of B rows (projection blocks of gblk
        steps, inputs of up to I features): a step's left operand (B rows of P, or of H), then,
        when claims run the input projection (claims_project), a block's x."""
        cdef Cell *c = &self.cell
        cdef Py_ssize_t pkx = (B * max(c.P, c.H) + 15) // 16 * 16
        return pkx, max(16, pkx + (claim_x_rows(T, B, gblk) * I + 15) // 16 * 16)

    cdef Py_ssize_t _bwd_work(self, Py_ssize_t B, Py_ssize_t sblk) noexcept:
        """A backward thread's workspace: the steps' products (B rows) and the weight
        gradients' (at most G rows, K = sblk*B)."""
        cdef Cell *c = &self.cell
        cdef Py_ssize_t w = max(work_elems(B, c.G, c.dbl), work_elems(B, c.P, c.dbl),
                                work_elems(c.G, sblk * B, c.dbl))
        if c.kind != LSTM_CELL:
            w = max(w, work_elems(B, 2 * c.H, c.dbl), work_elems(B, c.H, c.dbl))
        return max(16, (w + 15) // 16 * 16)

    cdef Py_ssize_t _grad_steps(self, Py_ssize_t T, Py_ssize_t B, Py_ssize_t I) noexcept:
        """Steps per block of backward's weight gradients (Grad.sblk), for inputs of up to
        max(I, this cell's I) features: the block's x and h_{t-1}, packed, take at most
        GRAD_BLOCK_BYTES (at least one step, at most T)."""
        cdef Cell *c = &self.cell
        cdef Py_ssize_t row = ((fr_packed_size_f32(max(I, c.I_), 1) + fr_packed_size_f32(c.P, 1))
                               * (8 if c.dbl else 4) * max(B, 1))
        return max(1, min(T, GRAD_BLOCK_BYTES // row))

    def buffers(self, Py_ssize_t T, Py_ssize_t B, int threads, bint keep=False,
                bint backward=False, Py_ssize_t I=0):
        """New work buffers for a forward pass (keep: a tape for backward) or a backward pass
        over T steps of B rows on `threads` threads; I: serve inputs of up to that many
        features too (the layers of a model share buffers)."""
        cdef Cell *c = &self.cell
        cdef Buffers b = Buffers()
        H, P, G, dt = c.H, c.P, c.G, self.dtype
        lstm, orig = c.kind == LSTM_CELL, c.kind == GRU_ORIG_CELL
        proj = c.wp_hr != NULL
        b.T, b.B, b.threads, b.keep, b.backward = T, B, threads, keep, backward
        b.wsz = self._work_size(T, B, backward, I)
        b.work = aligned_empty(max(1, threads) * b.wsz, dt)
        b.pk = b.claims = None
        b.pksz = b.pkx = 0
        if not backward:
            b.gblk = self._gates_block(T, B, keep, max(I, c.I_))
            b.gates = aligned_array((b.gblk * B, G), dt)
            if threads >= 2:
                b.pkx, b.pksz = self._pk_sizes(T, B, b.gblk, max(I, c.I_))
                b.pk = aligned_empty(threads * b.pksz, dt)
                b.claims = np.zeros(claim_counters(threads), dtype=np.intp)
            b.state = aligned_array(((T if keep else 2) * B if not orig else 0, H), dt)
            b.aux = aligned_array((B, H if lstm or orig else G), dt)
            return b
        b.ones = np.ones(T * B, dtype=dt)
        b.sblk = self._grad_steps(T, B, I)
        b.xp = aligned_empty(packed_size(max(I, c.I_), b.sblk * B, c.dbl), dt)
        b.hp = aligned_empty(packed_size(P, b.sblk * B, c.dbl), dt)
        z = np.empty((0, H), dtype=dt)
        b.dr = aligned_array((B, H), dt) if lstm else z
        b.dhtot = np.empty((T * B, P), dtype=dt) if lstm and proj else z
        b.r_all = np.empty((T * B if proj else B, H), dtype=dt) if lstm else z
        b.dgh = aligned_array((B, G), dt) if c.kind == GRU_CELL else z
        b.drh = aligned_array((B, H), dt) if orig else z
        b.rh_all = np.empty((T * B, H), dtype=dt) if orig else z
        return b

    cdef int _run(self, Run *r, Buffers b, x, out, Py_ssize_t col, init, final,
                  bint reverse, nact, xrow) except -1:
        """Fill r for a pass over x (T*B, I) with buffers b, checking every array (shape,
        dtype, layout, and the variable-length step counts nact and gather rows xrow).  final
        None: a backward's tape (no final state, aux or work)."""
        cdef Cell *c = &self.cell
        cdef Py_ssize_t T = b.T, B = b.B, H = c.H, P = c.P, tn = self.typenum, xrows = T * B
        cdef bint lstm = c.kind == LSTM_CELL
        if b.backward:
            raise ValueError("buffers must be forward buffers (Kernel.buffers(backward=False))")
        if out.ndim < 1 or not 0 <= col <= out.shape[out.ndim - 1] - P:
            raise ValueError(f"out must have col in [0, out.shape[-1] - {P}], got "
                             f"shape {out.shape}, col {col}")
        r.T, r.B, r.reverse, r.keep = T, B, reverse, b.keep
        r.nact = r.xrow = NULL
        if nact is not None:
            r.nact = <const Py_ssize_t *>index_buf(nact, "nact", T)
            if not steps_ok(r.nact, T, B):
                raise ValueError(f"nact must be non-increasing from {B} (B) to >= 1")
        if xrow is not None:
            if nact is None:
                raise ValueError("xrow needs nact")
            r.xrow = <const Py_ssize_t *>index_buf(xrow, "xrow", T * B)
            xrows = x.shape[0] if isinstance(x, np.ndarray) and x.ndim == 2 else 0
            if not in_range(r.xrow, T * B, xrows):
                raise ValueError(f"xrow must index the {xrows} rows of x")
        r.x = buf(x, "x", xrows, c.I_, tn, False)
        r.ldo = out.shape[out.ndim - 1]
        r.ldt, r.solo = B, False
        r.out = <char *>buf(out, "out", T * B, r.ldo, tn, final is not None) + col * (
            8 if c.dbl else 4)
        r.h0 = buf(init[0], "h0", B, P, tn, False)
        r.c0 = buf(init[1], "c0", B, H, tn, False) if lstm else NULL
        if not 1 <= b.gblk <= max(T, 1) or (b.keep and b.gblk != max(T, 1)):
            raise ValueError(f"buffers' gblk must be in [1, {max(T, 1)}] (all of it with keep), "
                             f"got {b.gblk}")
        r.gblk = b.gblk
        r.gates = buf(b.gates, "gates", b.gblk * B, c.G, tn, True)
        rows = 0 if c.kind == GRU_ORIG_CELL else (T if b.keep else 2) * B
        r.state = buf(b.state, "state", rows, H, tn, True)
        r.pk, r.claims, r.pksz, r.pkx = NULL, NULL, 0, 0
        if final is None:
            r.h_n = r.c_n = r.aux = r.work = NULL
            r.wp_ih = NULL
            return 0
        r.h_n = buf(final[0], "h_n", B, P, tn, True)
        r.c_n = buf(final[1], "c_n", B, H, tn, True) if lstm else NULL
        r.aux = buf(b.aux, "aux", B, c.G if c.kind == GRU_CELL else H, tn, True)
        if b.wsz < self._work_size(T, B, False, 0):
            raise ValueError(f"buffers were made for a smaller cell: work of {b.wsz} elements "
                             f"per thread, this pass needs {self._work_size(T, B, False, 0)}")
        r.work = buf(b.work, "work", b.threads * b.wsz, -1, tn, True)
        r.wsz = b.wsz
        if b.pk is not None:
            pkx, pksz = self._pk_sizes(T, B, b.gblk, c.I_)
            if b.pkx < pkx or b.pksz - b.pkx < pksz - pkx:
                raise ValueError(f"buffers were made for a smaller cell: pk of {b.pksz} "
                                 f"elements per thread (x from {b.pkx}), this pass needs "
                                 f"{pksz} (x from {pkx})")
            r.pk = buf(b.pk, "pk", b.threads * b.pksz, -1, tn, True)
            r.claims = <Py_ssize_t *>index_buf(b.claims, "claims", claim_counters(b.threads))
            r.pksz, r.pkx = b.pksz, b.pkx
        if self.wp_ih is None:
            # packed once, then kept: pack() releases the GIL, so install only if no other
            # thread did meanwhile (a running pass keeps reading the installed copy)
            wp_ih = pack(self.W_ih, False)
            if self.wp_ih is None:
                self.wp_ih = wp_ih
        r.wp_ih = cnp.PyArray_DATA(<cnp.ndarray>self.wp_ih)
        return 0

    def forward(self, Buffers b, x, out, Py_ssize_t col, init, final, bint reverse,
                int threads, Kernel other=None, Buffers other_b=None, Py_ssize_t other_col=0,
                other_init=None, other_final=None, nact=None, xrow=None, int parts=1):
        """Run the cell over x (T*B, I), writing h_t to out[:, col:col+P], the final state to
        final ((h_n,) or (h_n, c_n)), from init ((h0,) or (h0, c0)); b: this pass's buffers
        (b.gates / b.state are the tape when b.keep).  `other` (+ its buffers, column, states):
        the reverse direction of the same layer, run at the same time on half the threads.
        Variable lengths (Run.nact): the batch sorted by length, longest first, nact (T,) intp
        the running rows per time index; out's padding rows are zero but, in a reverse pass,
        at the time index after a row's last one (h0 there; see pad_step).  xrow (T*B,) intp:
        row q of the pass reads x[xrow[q]] (x then has any number of rows).  parts (not with
        `other`, nact or keep; at most min(PARTS_MAX, B, the buffers' threads)): the batch is
        split into that many parts of consecutive rows, each a pass of its own on one thread,
        with no barrier (Run.solo); the same results as the whole batch, up to rounding."""
        self._forward(b, x, out, col, init, final, reverse, threads, other, other_b, other_col,
                      other_init, other_final, nact, xrow, parts)

    cdef int _forward(self, Buffers b, x, out, Py_ssize_t col, init, final, bint reverse,
                      int threads, Kernel other, Buffers other_b, Py_ssize_t other_col,
                      other_init, other_final, nact, xrow, int parts=1) except -1:
        """forward (see there), callable from C without Python's call protocol."""
        cdef Run runs[MAX_PARTS]
        cdef const Run *rp[MAX_PARTS]
        cdef const Cell *cp[MAX_PARTS]
        cdef int n = 1, p
        if b.threads < threads:
            raise ValueError(f"buffers were made for {b.threads} threads, not {threads}")
        self._run(&runs[0], b, x, out, col, init, final, reverse, nact, xrow)
        cp[0], rp[0] = &self.cell, &runs[0]
        if parts != 1:
            if (parts < 1 or other is not None or nact is not None or b.keep
                    or parts > min(<Py_ssize_t>MAX_PARTS, b.threads, b.B)):
                raise ValueError(f"parts must be in [1, min({MAX_PARTS}, buffers' threads, B)] "
                                 f"and 1 with other, nact or keep, got {parts}")
            for p in range(parts - 1, -1, -1):
                part_run(&self.cell, &runs[0], &runs[p], p * b.B // parts,
                         (p + 1) * b.B // parts, p)
                cp[p], rp[p] = &self.cell, &runs[p]
            n = parts
        if other is not None:
            if (other.kind != self.kind or other.sizes != self.sizes or other_b.T != b.T
                    or other_b.B != b.B or other_b.threads < threads):
                raise ValueError("the two directions must have the same cell, sizes and T, B")
            other._run(&runs[1], other_b, x, out, other_col, other_init, other_final,
                       not reverse, nact, xrow)
            cp[1], rp[1] = &other.cell, &runs[1]
            n = 2
            runs[0].solo = runs[1].solo = threads <= 2
        if b.T == 0 or b.B == 0:
            return 0
        with nogil:
            run_forward(cp, rp, n, threads)
        return 0

    def backward(self, Buffers tape, Buffers b, x, out, Py_ssize_t col, init, dout,
                 dfinal, dx, bint accumulate, dinit, grads, bint reverse, int threads,
                 nact=None):
        """Backpropagation through the pass that wrote `tape` (a keep=True forward's buffers,
        overwritten with gradients) from dout[:, col:col+P] and dfinal ((dh_n,) or
        (dh_n, dc_n)).  Writes dx (added to when accumulate), dinit ((dh0,) or (dh0, dc0)) and
        grads (dW_ih, dW_hh, dW_hr or None, db_ih, db_hh).  nact: the forward's (variable
        lengths; x and out then hold finite values, e.g. zeros, in padding rows)."""
        cdef Cell *c = &self.cell
        cdef Run r
        cdef Grad g
        cdef Py_ssize_t T = tape.T, B = tape.B, H = c.H, P = c.P, G = c.G, tn = self.typenum
        cdef bint lstm = c.kind == LSTM_CELL
        cdef bint proj = c.wp_hr != NULL
        if not tape.keep:
            raise ValueError("tape must be the buffers of a forward pass with keep=True")
        if not b.backward or b.T != T or b.B != B or b.threads < threads:
            raise ValueError(f"b must be backward buffers for T={T}, B={B}, {threads} threads")
        self._run(&r, tape, x, out, col, init, None, reverse, nact, None)
        self._pack_transposes()
        if dout.ndim != 2 or not 0 <= col <= dout.shape[1] - P:
            raise ValueError(f"dout must be 2-D with col in [0, dout.shape[1] - {P}], got "
                             f"shape {dout.shape}, col {col}")
        g.lddo = dout.shape[1]
        g.dout = <char *>buf(dout, "dout", T * B, g.lddo, tn, False) + col * (8 if c.dbl else 4)
        g.dh_n = buf(dfinal[0], "dh_n", B, P, tn, False)
        g.dc_n = buf(dfinal[1], "dc_n", B, H, tn, False) if lstm else NULL
        g.dx = buf(dx, "dx", T * B, c.I_, tn, True)
        g.accumulate = accumulate
        g.dh0 = buf(dinit[0], "dh0", B, P, tn, True)
        g.dc0 = buf(dinit[1], "dc0", B, H, tn, True) if lstm else NULL
        g.dW_ih = buf(grads[0], "dW_ih", G, c.I_, tn, True)
        g.dW_hh = buf(grads[1], "dW_hh", G, P, tn, True)
        g.dW_hr = buf(grads[2], "dW_hr", P, H, tn, True) if proj else NULL
        g.db_ih = buf(grads[3], "db_ih", G, -1, tn, True)
        g.db_hh = buf(grads[4], "db_hh", G, -1, tn, True)
        g.ones = buf(b.ones, "ones", T * B, -1, tn, False)
        g.sblk = b.sblk
        n = packed_size(c.I_, b.sblk * B, c.dbl)
        g.xp = buf(b.xp[:n], "xp", n, -1, tn, True)
        n = packed_size(P, b.sblk * B, c.dbl)
        g.hp = buf(b.hp[:n], "hp", n, -1, tn, True)
        g.dr = buf(b.dr, "dr", B, H, tn, True) if lstm else NULL
        g.dhtot = buf(b.dhtot, "dhtot", T * B, P, tn, True) if proj else NULL
        g.r_all = buf(b.r_all, "r_all", T * B if proj else B, H, tn, True) if lstm else NULL
        g.dgh = buf(b.dgh, "dgh", B, G, tn, True) if c.kind == GRU_CELL else NULL
        g.drh = buf(b.drh, "drh", B, H, tn, True) if c.kind == GRU_ORIG_CELL else NULL
        g.rh_all = (buf(b.rh_all, "rh_all", T * B, H, tn, True) if c.kind == GRU_ORIG_CELL
                    else NULL)
        if not 1 <= b.sblk <= max(T, 1) or b.wsz < self._bwd_work(B, b.sblk):
            raise ValueError(f"b were made for a smaller cell: work of {b.wsz} elements per "
                             f"thread, this pass needs {self._bwd_work(B, b.sblk)}")
        r.work = buf(b.work, "work", b.threads * b.wsz, -1, tn, True)
        r.wsz = b.wsz
        if T == 0 or B == 0:
            return
        with nogil:
            run_backward(c, &r, &g, threads)


# ================================================================ short calls
cdef class ShortCall:
    """The path of short calls (cells, stream steps, short sequences) of a one-layer,
    one-direction model that is not batch_first: x and hx taken as they are when they are
    already what the kernels take (is_ready), without the general checks and conversions of
    fusedrnn._rnn, which are most of a short call's time in Python (an LSTMCell(16, 16) step:
    6.2 us in all, 0.5 us in Kernel.forward).  Made by the model's Engine; `inference` is its
    Engine._inference (this thread's kernel and buffers for T, B and the thread count, remade
    when a weight changes), sizes the state sizes ((P, H) LSTM, (H,) GRU), outputs of at least
    min_aligned bytes start on a cache line."""
    cdef object inference
    cdef cnp.dtype dtype
    cdef int typenum, ns
    cdef Py_ssize_t I_, P, min_aligned
    cdef cnp.npy_intp sizes[2]

    def __init__(self, inference, cnp.dtype dtype, Py_ssize_t I, Py_ssize_t P, tuple sizes,
                 Py_ssize_t min_aligned):
        if len(sizes) not in (1, 2):
            raise ValueError(f"sizes must be (P, H) or (H,), got {sizes}")
        self.inference, self.dtype, self.I_, self.P = inference, dtype, I, P
        self.typenum = dtype.num
        self.ns = len(sizes)
        for k in range(self.ns):
            self.sizes[k] = sizes[k]
        self.min_aligned = min_aligned

    def __call__(self, x, hx, bint cell):
        """x (T, B, I) or unbatched (T, I) (a cell: (B, I) or (I,)); hx None or the states (an
        array for a GRU, a tuple (h, c) for an LSTM) shaped (1, B, size) or (1, size) (a cell:
        (B, size) or (size,)).  -> (out shaped like x with P features, the tuple of the final
        states shaped like hx's), or None when an argument is not in that form: the caller
        then takes the general path, which checks everything and raises its errors."""
        cdef cnp.npy_intp dims[3]
        cdef cnp.npy_intp od[3]
        cdef cnp.npy_intp *xd
        cdef int nd, nlead = 0, k
        cdef Py_ssize_t T, B
        cdef bint batched
        if not is_ready(x, self.dtype):
            return None
        nd = cnp.PyArray_NDIM(<cnp.ndarray>x)
        xd = cnp.PyArray_DIMS(<cnp.ndarray>x)
        batched = nd == (2 if cell else 3)
        if (not batched and nd != (1 if cell else 2)) or xd[nd - 1] != self.I_:
            return None
        T = 1 if cell else xd[0]
        B = xd[nd - 2] if batched else 1
        if not 0 < T * B < 2**31:
            return None
        # the states' axes: (1, B, size) for a layer, (B, size) for a cell; no B unbatched
        if not cell:
            dims[nlead] = 1
            nlead += 1
        if batched:
            dims[nlead] = B
            nlead += 1
        if hx is None:
            init = []
            for k in range(self.ns):
                dims[nlead] = self.sizes[k]
                init.append(cnp.PyArray_ZEROS(nlead + 1, dims, self.typenum, 0))
            init = tuple(init)
        else:
            init = (hx,) if self.ns == 1 else hx
            if type(init) is not tuple or len(<tuple>init) != self.ns:
                return None
            for k in range(self.ns):
                dims[nlead] = self.sizes[k]
                if not (is_ready((<tuple>init)[k], self.dtype)
                        and has_dims((<tuple>init)[k], nlead + 1, dims)):
                    return None
        threads, _, parts, plan = self.inference(T, B, None)
        (kernel,), (buffers,) = plan[0]
        if T * B * self.P * self.dtype.itemsize >= self.min_aligned:
            out = aligned_array(x.shape[:nd - 1] + (self.P,), self.dtype)
        else:
            for k in range(nd - 1):
                od[k] = xd[k]
            od[nd - 1] = self.P
            out = cnp.PyArray_EMPTY(nd, od, self.typenum, 0)
        finals = []
        for k in range(self.ns):
            dims[nlead] = self.sizes[k]
            finals.append(cnp.PyArray_EMPTY(nlead + 1, dims, self.typenum, 0))
        finals = tuple(finals)
        (<Kernel?>kernel)._forward(<Buffers?>buffers, x, out, 0, init, finals, False, threads,
                                   None, None, 0, None, None, None, None, parts)
        return out, finals


# ================================================================ variable lengths
cdef bint in_range(const Py_ssize_t *a, Py_ssize_t n, Py_ssize_t end) noexcept nogil:
    """0 <= a[i] < end for every i < n."""
    cdef Py_ssize_t i
    for i in range(n):
        if a[i] < 0 or a[i] >= end:
            return False
    return True


cdef bint steps_ok(const Py_ssize_t *nact, Py_ssize_t T, Py_ssize_t B) noexcept nogil:
    """nact (T) describes a length-sorted batch of B: nact[0] == B, non-increasing, >= 1."""
    cdef Py_ssize_t t
    if T > 0 and (nact[0] != B or nact[T - 1] < 1):
        return False
    for t in range(1, T):
        if nact[t] > nact[t - 1]:
            return False
    return True


def sort_lengths(lengths, Py_ssize_t T):
    """(order, inverse, nact) of a batch of checked lengths (B,) intp in [1, T]: order (B,)
    the rows sorted by length, longest first (stable: equal lengths keep their order);
    inverse its inverse permutation; nact (max length,) the running rows per time index
    (Run.nact).  A counting sort, O(B + T)."""
    cdef Py_ssize_t B = lengths.shape[0], b, t, n, Tr = 0
    cdef const Py_ssize_t *ln = <const Py_ssize_t *>index_buf(lengths, "lengths", B)
    for b in range(B):
        if ln[b] < 1 or ln[b] > T:
            raise ValueError(f"lengths must be in [1, {T}]")
        Tr = ln[b] if ln[b] > Tr else Tr
    order = np.empty(B, dtype=np.intp)
    inverse = np.empty(B, dtype=np.intp)
    nact = np.zeros(Tr, dtype=np.intp)
    cdef Py_ssize_t[::1] od = order, iv = inverse, na = nact
    cdef Py_ssize_t[::1] start = np.zeros(Tr + 2, dtype=np.intp)
    with nogil:
        for b in range(B):              # how many sequences have each length
            start[Tr - ln[b] + 1] += 1
        for n in range(1, Tr + 2):      # first sorted slot of each length, longest first
            start[n] += start[n - 1]
        for b in range(B):
            n = start[Tr - ln[b]]
            start[Tr - ln[b]] += 1
            od[n] = b
            iv[b] = n
        b = B - 1                       # nact[t]: sequences longer than t
        for t in range(Tr):
            while b >= 0 and ln[od[b]] <= t:
                b -= 1
            na[t] = b + 1
    return order, inverse, nact


def permute_steps(src, dst, nact, order, bint to_caller):
    """Move the rows of a variable-length pass between the caller's batch order and the
    length-sorted one (Run.nact), zeros at padded steps.  Rows are (t, b), index t * B + b;
    order (B,) intp: sorted row b is the caller's row order[b].  to_caller: dst[t, order[b]] =
    src[t, b] (dst may have more steps than src: all zero); else dst[t, b] = src[t, order[b]]
    (src may have more steps than dst)."""
    cdef Py_ssize_t B = order.shape[0], T = nact.shape[0], t, b, row, n, rows_s, rows_d
    if (not isinstance(src, np.ndarray) or not isinstance(dst, np.ndarray) or src.ndim != 2
            or dst.ndim != 2 or src.dtype != dst.dtype or src.shape[1] != dst.shape[1]
            or not src.flags.c_contiguous or not dst.flags.c_contiguous
            or not dst.flags.writeable):
        raise ValueError("src and dst must be C-contiguous 2-D arrays of one dtype and width")
    rows_s, rows_d = src.shape[0], dst.shape[0]
    cdef Py_ssize_t Ts = rows_s // B if B else 0, Td = rows_d // B if B else 0
    if B == 0 or rows_s % B or rows_d % B or (Td if to_caller else Ts) < T or (
            Ts if to_caller else Td) != T:
        raise ValueError(f"src and dst must hold whole steps of {B} rows, the sorted one "
                         f"{T} steps")
    cdef const Py_ssize_t *na = <const Py_ssize_t *>index_buf(nact, "nact", T)
    cdef const Py_ssize_t *od = <const Py_ssize_t *>index_buf(order, "order", B)
    if not in_range(od, B, B) or not in_range(na, T, B + 1):
        raise ValueError("order must index the batch and nact be in [0, B]")
    cdef Py_ssize_t width = src.shape[1] * src.dtype.itemsize
    cdef char *sp = <char *>cnp.PyArray_DATA(<cnp.ndarray>src)
    cdef char *dp = <char *>cnp.PyArray_DATA(<cnp.ndarray>dst)
    with nogil:
        for t in range(Td):
            n = na[t] if t < T else 0
            for b in range(B):
                row = t * B + od[b]
                if to_caller:
                    if b < n:
                        memcpy(dp + row * width, sp + (t * B + b) * width, width)
                    else:
                        memset(dp + row * width, 0, width)
                elif b < n:
                    memcpy(dp + (t * B + b) * width, sp + row * width, width)
                else:
                    memset(dp + (t * B + b) * width, 0, width)


# ================================================================ module-level switches
ISA_NAMES = {"scalar": 1, "avx2": 2, "avx512": 3}


def isa():
    """The SIMD path every kernel uses now: "avx512", "avx2" or "scalar"."""
    return fr_isa_name(fr_isa()).decode()


def set_isa(name):
    """Force a SIMD path ("avx512", "avx2", "scalar"; one the CPU lacks falls back to the best
    it has) or go back to the default (None or "auto": the CPU's best, or FUSEDRNN_ISA).
    Returns the path now in use.  Not to be called while a kernel runs."""
    if name is None or name == "auto":
        code = 0
    elif name in ISA_NAMES:
        code = ISA_NAMES[name]
    else:
        raise ValueError(f"isa must be one of {sorted(ISA_NAMES)} or 'auto', got {name!r}")
    return fr_isa_name(fr_set_isa(code)).decode()


def claim_settings(min_work=None, skew=None):
    """(claim_min_work, claim_skew) before the call, setting those given (tests; see there)."""
    global claim_min_work, claim_skew
    old = (claim_min_work, claim_skew)
    if min_work is not None:
        claim_min_work = min_work
    if skew is not None:
        claim_skew = skew
    return old


def max_threads():
    """OpenMP's thread count for a parallel region (1 without OpenMP); threadpoolctl's
    limits apply to it."""
    return fr_omp_max_threads()


# ================================================================ test twins
def activations_memview(const floating[::1] x, floating[::1] sig, floating[::1] th):
    """sig = sigmoid(x), th = tanh(x) with the kernels' own activations (tests only)."""
    with nogil:
        if floating is float:
            fr_activations_f32(x.shape[0], &x[0], &sig[0], &th[0])
        else:
            fr_activations_f64(x.shape[0], &x[0], &sig[0], &th[0])


def gemm_memview(bint trans_a, bint trans_b, double alpha, const floating[:, ::1] A,
                 const floating[:, ::1] B, double beta, floating[:, ::1] C):
    """Row-major C = alpha op(A) op(B) + beta C through the _blas wrapper (tests only)."""
    cdef Py_ssize_t m = C.shape[0], n = C.shape[1]
    cdef Py_ssize_t k = A.shape[0] if trans_a else A.shape[1]
    with nogil:
        gemm(Trans if trans_a else NoTrans, Trans if trans_b else NoTrans, m, n, k,
             <floating>alpha, &A[0, 0], A.shape[1], &B[0, 0], B.shape[1], <floating>beta,
             &C[0, 0], C.shape[1])


def rev_bytes():
    """Bytes of packed panels up to which the products of 1-2 rows walk W last panel first on
    odd steps (packed_gemm.h fr_rev_bytes; tests only)."""
    return fr_rev_bytes()


def pack_memview(W, bint trans):
    """The packed copy of W (N, K), or of W^T for W (K, N) when trans (tests only)."""
    return pack(W, trans)


def packed_gemm_memview(const floating[:, ::1] A, W, double beta, floating[:, ::1] C,
                        Py_ssize_t n0=0, Py_ssize_t n1=-1, Py_ssize_t nblk=1,
                        Py_ssize_t bstride=0, bint rev=False):
    """C[:, n0:n1] = A (M, K) W[n0:n1]^T + beta C[:, n0:n1] through the packed GEMM, W (N, K)
    packed here (tests only: every block and chunk path of packed_gemm.h); nblk > 1: the
    columns n0 + q bstride .. n1 + q bstride for q < nblk (fr_gemm_packed_blocks); rev: the
    walk of an odd step (last panel first where that pays)."""
    cdef Py_ssize_t M = A.shape[0], K = A.shape[1], N = C.shape[1]
    if n1 < 0:
        n1 = N
    Wp = pack(np.ascontiguousarray(W, dtype=np.float64 if floating is double else np.float32),
              False)
    cdef floating[::1] wp = Wp
    work = aligned_empty(max(16, packed_work_size(M, K, floating is double)),
                         np.float64 if floating is double else np.float32)
    cdef floating[::1] wk = work
    with nogil:
        if floating is float:
            fr_gemm_packed_blocks_f32(M, n0, n1, nblk, bstride, K, &A[0, 0], NULL, K, &wp[0],
                                      N, <float>beta, &C[0, 0], N, &wk[0], rev)
        else:
            fr_gemm_packed_blocks_f64(M, n0, n1, nblk, bstride, K, &A[0, 0], NULL, K, &wp[0],
                                      N, beta, &C[0, 0], N, &wk[0], rev)


def pack_hprev_memview(Py_ssize_t T, Py_ssize_t B, Py_ssize_t t0, Py_ssize_t t1,
                       const floating[:, ::1] h0, const floating[:, ::1] out, bint reverse,
                       int pieces=1):
    """The packed (N, (t1 - t0) B) matrix Hp^T of backward's h_{t-1} rows of the steps t0 ..
    t1 (rnn_common.pack_hprev), packed in `pieces` shares as that many threads would (tests
    only)."""
    cdef Py_ssize_t N = h0.shape[1], c
    dt = np.float64 if floating is double else np.float32
    Hp = aligned_empty(packed_size(N, (t1 - t0) * B, floating is double), dt)
    cdef floating[::1] hp = Hp
    for c in range(pieces):
        pack_hprev(c, pieces, T, B, t0, t1, N, &out[0, 0], out.shape[1], &h0[0, 0], reverse,
                   &hp[0])
    return Hp


def grad_packed_memview(const floating[:, ::1] dG, const floating[:, ::1] X,
                        floating[:, ::1] dW, X2=None, dW2=None, db=None, bint add=False,
                        int pieces=1, bint work=True):
    """dW (=, += when add) dG^T X (and dW2 (=|+=) dG^T X2, db = the sum of dG's rows when
    given) through rnn_common.pack_rows, grad_packed and colsum_rows, each run in `pieces`
    shares as that many threads would; work False: no workspace (the packed GEMM's stack
    path) (tests only)."""
    cdef Py_ssize_t R = dG.shape[0], M = dG.shape[1], N = X.shape[1], N2 = 0, c
    cdef bint dbl = floating is double
    dt = np.float64 if dbl else np.float32
    Xp = aligned_empty(max(1, packed_size(N, R, dbl)), dt)
    cdef floating[::1] xp = Xp, x2p, w, ones
    cdef floating[:, ::1] x2, dw2
    cdef floating[::1] dbv
    cdef floating *x2ptr = NULL
    cdef floating *dw2ptr = NULL
    # no rows: a pointer to something all the same (no offset is applied to NULL)
    cdef floating[::1] none = np.zeros(max(M, N, 1), dtype=dt)
    cdef const floating *dg = &dG[0, 0] if R else &none[0]
    for c in range(pieces):
        pack_rows(c, pieces, N, R, 0, R, &X[0, 0] if R else &none[0], N, &xp[0])
    if X2 is not None:
        x2, dw2 = X2, dW2
        N2 = x2.shape[1]
        X2p = aligned_empty(max(1, packed_size(N2, R, dbl)), dt)
        x2p = X2p
        for c in range(pieces):
            pack_rows(c, pieces, N2, R, 0, R, &x2[0, 0] if R else &none[0], N2, &x2p[0])
        x2ptr, dw2ptr = &x2p[0], &dw2[0, 0]
    ones = np.ones(max(1, R), dtype=dt)
    W = aligned_empty(max(16, work_elems(M, R, dbl)), dt)
    w = W
    for c in range(pieces):
        grad_packed(c, pieces, M, R, dg, M, N, &xp[0], &dW[0, 0], N, N2, x2ptr, dw2ptr, N2, add,
                    &w[0] if work else NULL)
    if db is not None:
        dbv = db
        for c in range(pieces):
            colsum_rows(c, pieces, R, M, dg, M, &ones[0], &dbv[0])


# ================================================================ the bench's read bandwidth
def read_passes(const unsigned int[::1] buf, Py_ssize_t passes, int threads):
    """The bench's plain streaming read (fusedrnn.bench.timing.measure_read_bandwidth): in one
    parallel region of `threads` threads, thread t reads its t-th share of buf `passes` times
    over (fr_read_or), all at the same time and without the GIL (NumPy's reductions keep it,
    so Python threads ran them one after the other).  -> the OR of the words."""
    cdef Py_ssize_t n = buf.shape[0], lo, hi
    cdef int tid, nt
    cdef unsigned int acc = 0
    if n == 0:
        return 0
    if threads <= 1:
        with nogil:
            fr_read_or(&buf[0], n, passes, &acc)
        return acc
    parts = np.zeros(threads * 16, dtype=np.uint32)     # a cache line per thread
    cdef unsigned int[::1] pv = parts
    with nogil, parallel(num_threads=threads):
        tid = fr_thread_num()
        nt = fr_num_threads()
        lo = n * tid // nt
        hi = n * (tid + 1) // nt
        if hi > lo:
            fr_read_or(&buf[lo], hi - lo, passes, &pv[16 * tid])
    return int(np.bitwise_or.reduce(parts))
