"""Blockwise evaluation of a cascade of second-order sections with matrix products.

Used by the sound level meter for the A and C frequency weightings of IEC 61672-1:2013
clause 5.5 (:mod:`tingbao.edge.iec61672`): the same sections that ``scipy.signal.sosfilt``
would run sample by sample, evaluated without a per-sample recursion, several outputs (taps of
the cascade) at once. The result agrees with ``sosfilt`` to about 1e-11 of the signal's RMS
(up to about 1e-10 at 96 kHz with short calls; tests/test_block_weighting.py asks 1e-9).

The state. A cascade of K sections is one real linear system of order n = 2K,
s[t+1] = A s[t] + B x[t], y_o[t] = C_o s[t] + D_o x[t], whose state is exactly the sections'
own transposed-direct-form-II state, in the layout of ``sosfilt``'s ``zi`` (section by section,
[z1, z2]): section k's update is z1' = −a1 z1 + z2 + (b1 − a1 b0) u, z2' = −a2 z1 +
(b2 − a2 b0) u, y = z1 + b0 u, and its input u is the output of section k − 1. A is block
lower triangular (a section hears only the ones before it) and no coordinate change is made:
no partial fractions, no diagonal, Jordan or companion form. That is how repeated poles are
handled. The A and C weightings have a double pole at f1 = 20.6 Hz (an exact double root of
one section) and two nearly equal real poles near f4 = 12.2 kHz (one fitted section): a
parallel (partial-fraction) form has residues that grow without bound as two poles merge and
cancel one another, so it loses digits in proportion; the cascade's own state has no such
terms.

Precision. The TDF-II matrix of a double pole near z = 1 is far from normal: A^k has entries
near k·r^k that cancel, and a state rounded in float64 carries errors of 1e-16 of its largest
component into the slow mode, which is small beside it. Every block matrix (the powers A^k,
the impulse response, the free response, Γ) is therefore computed from A in long double
(64-bit mantissa on x86-64; powers by repeated squaring) and rounded once to float64.
Measured on pink noise of 1 Pa RMS at 96 kHz against an 80-bit reference of the same
recursion: the block result errs by 1e-11 (with float64 matrices: 4e-11; ``sosfilt`` itself:
2e-12); against ``sosfilt`` the difference stays near 1e-10 over 10 s (at most 1.1e-10 with
15-sample calls at 96 kHz; white noise: 4e-12,
at 44.1 to 96 kHz). Where long double is float64 (some platforms) the float64 figures hold,
still ten times inside the 1e-9 asked. The error does not grow with time: the state's
errors decay with the filter's own poles.

The blocks. For a block of L samples x_b with state s_b at its start,

    y_b = T_o x_b + O_o s_b          (T_o: L×L lower-triangular Toeplitz of the impulse
                                       response h_o[0] = D_o, h_o[k] = C_o A^(k−1) B;
                                       O_o: row i is C_o A^i, the free response)
    s_(b+1) = Φ s_b + g_b,  Φ = A^L,  g_b = Γ x_b  (Γ: column j is A^(L−1−j) B).

The outputs of all blocks are then one matrix product [x_b | s_b] · [T_oᵀ; O_oᵀ] for each
output o (C and A of the meter come from the raw signal with the same state, each in one
product). The states at the block starts come from a prefix scan over blocks: in groups of J
blocks, the zero-start states of a group are one product of the group's g_b with the
block-lower-triangular matrix of powers Φ^(i−j); the states at the group starts are the same
scan one level up (groups of 16 groups, and so on), until at most 64 elements remain, which a
Hillis–Steele scan finishes (steps d = 1, 2, 4, … with the element's power of A, run to the
end: no term is left out); each block's start state is its group-local state plus Φ^i times
its group's start state. A call's last samples that do not fill a block are evaluated as one
short block (the first r rows and columns of the same matrices, A^r for the state), so
nothing waits for the next call and the output of every call is complete. The product for
each output is two BLAS calls on Fortran views of the same memory (T·Xᵀ, then += O·Sᵀ in
place), so the blocks are never copied next to their states. The scan's work arrays, and the
views of them that a call uses, are made once per call size (:class:`_ScanPlan`): made
afresh at every call they cost a third of the weighting's time (313 against 199 µs per
second of 48 kHz audio, measured). Products are in float64: the
Toeplitz product alone in float32 errs by 3e-7 of the signal (pink noise, 48 kHz, measured),
three hundred times the 1e-9 asked, so float32 is not used anywhere here; the states are
float64 throughout.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg
from scipy.linalg import blas

_PIECE = 4096
"""Calls on several channels longer than this (samples) run channel by channel."""
_UPPER_GROUP = 16
"""Elements per group at the scan levels above the first (the first groups ``chunk``)."""
_HILLIS_STEELE = 64
"""Sequences of at most this many elements are scanned by Hillis–Steele steps directly."""


def cascade_state_space(sos, taps, dtype=np.float64) -> tuple[np.ndarray, ...]:
    """Real state-space (A, B, C, D) of the cascade of second-order sections ``sos`` (shape
    (K, 6), rows b0, b1, b2, a0, a1, a2 as for ``scipy.signal.sosfilt``) with outputs taken
    after the sections numbered ``taps`` (1 … K: tap k is the output of the first k sections).

    The state (n = 2K) is the sections' transposed-direct-form-II state in ``sosfilt``'s
    ``zi`` layout flattened (z1, z2 of section 0, then section 1, …). Shapes: A (n, n),
    B (n,), C (len(taps), n), D (len(taps),). Dimensionless (the output has the input's unit).
    """
    sos = np.asarray(sos, dtype=dtype)
    if sos.ndim != 2 or sos.shape[1] != 6 or sos.shape[0] < 1:
        raise ValueError(f"sos must have shape (sections, 6), got {sos.shape}")
    taps = [int(t) for t in taps]
    if not taps or min(taps) < 1 or max(taps) > sos.shape[0]:
        raise ValueError(f"taps must lie in 1 … {sos.shape[0]}, got {taps}")
    K = sos.shape[0]
    n = 2 * K
    A = np.zeros((n, n), dtype=dtype)
    B = np.zeros(n, dtype=dtype)
    cu, du = np.zeros(n, dtype=dtype), dtype(1.0)  # input of the current section = cu·s + du·x
    outs_c, outs_d = {}, {}
    for k in range(K):
        b0, b1, b2, a0, a1, a2 = sos[k] / sos[k, 3]
        i = 2 * k
        A[i] += (b1 - a1 * b0) * cu
        A[i, i] += -a1
        A[i, i + 1] += 1.0
        B[i] = (b1 - a1 * b0) * du
        A[i + 1] += (b2 - a2 * b0) * cu
        A[i + 1, i] += -a2
        B[i + 1] = (b2 - a2 * b0) * du
        cu = b0 * cu
        cu[i] += 1.0
        du = b0 * du
        outs_c[k + 1], outs_d[k + 1] = cu.copy(), du
    C = np.array([outs_c[t] for t in taps])
    D = np.array([outs_d[t] for t in taps])
    return A, B, C, D


class BlockCascade:
    """Streaming blockwise evaluator of a cascade of second-order sections with several
    output taps, vectorised over channels (see the module docstring for the algebra).

    ``sos`` (K, 6) as for ``scipy.signal.sosfilt``; ``taps``: after which sections an output
    is taken (1 … K); ``block`` L (samples) and ``chunk`` J (blocks per chunk of the scan).
    Holds no signal state itself: :meth:`run` takes and returns the state, shape
    (channels, 2K), in ``sosfilt``'s ``zi`` layout (``zi.transpose(1, 0, 2).reshape(C, -1)``).
    """

    def __init__(self, sos, taps, block: int = 16, chunk: int = 4):
        taps = tuple(int(t) for t in taps)
        L, J = int(block), int(chunk)
        if L < 1 or J < 1:
            raise ValueError("block and chunk must be positive integers")
        # The block matrices are powers and responses of A computed in extended precision
        # (long double, 64-bit mantissa on x86-64) and rounded once to float64: A of a double
        # pole near z = 1 is far from normal (A^k has entries near k·r^k that cancel), and
        # the same products in float64 let the state drift by up to 1e-10 of the signal in
        # that mode (pink noise, 96 kHz), twenty to fifty times sosfilt's own rounding.
        Ae, Be, Ce, De = cascade_state_space(sos, taps, dtype=np.longdouble)
        n = Ae.shape[0]
        self.order, self.block, self.chunk, self.outputs = n, L, J, len(taps)
        self._squares = [Ae]  # A^(2^k) in long double
        pw = [np.eye(n, dtype=np.longdouble)]
        for _ in range(L):
            pw.append(Ae @ pw[-1])
        free = np.stack([np.stack([c @ pw[i] for i in range(L)], axis=1) for c in Ce])
        h = np.zeros((len(taps), L), dtype=np.longdouble)
        h[:, 0] = De
        for k in range(1, L):
            h[:, k] = Ce @ (pw[k - 1] @ Be)
        free, h = free.astype(np.float64), h.astype(np.float64)  # free: (outputs, n, L)
        # W_o = [T_oᵀ; O_oᵀ], (L + n, L): output of a block is the row [x_b | s_b] · W_o
        self._w = np.stack(
            [np.vstack([linalg.toeplitz(h[o], np.zeros(L)).T, free[o]]) for o in range(len(h))]
        )
        # Γ (L, n): row j is the state at the block end left by a unit sample at j
        self._gamma = np.stack([pw[L - 1 - j] @ Be for j in range(L)]).astype(np.float64)
        self._power_cache: dict[int, np.ndarray] = {}
        # (A^r)ᵀ for the short last block of a call, r = 0 … L
        self._powers_t = np.stack([self._power_t(r) for r in range(L + 1)])
        self._levels: list[tuple[np.ndarray, np.ndarray]] = []
        self._tails: dict[int, list[np.ndarray]] = {}
        self._plans: dict[tuple[int, int], _ScanPlan] = {}
        self._wf = [(np.asfortranarray(w[:L].T), np.asfortranarray(w[L:].T)) for w in self._w]

    def _power_t(self, samples: int) -> np.ndarray:
        """(A^samples)ᵀ in float64, by binary powering in long double (rounded once)."""
        if samples not in self._power_cache:
            n = self.order
            result = np.eye(n, dtype=np.longdouble)
            k, e = 0, samples
            while e:
                while len(self._squares) <= k:
                    self._squares.append(self._squares[-1] @ self._squares[-1])
                if e & 1:
                    result = result @ self._squares[k]
                e >>= 1
                k += 1
            self._power_cache[samples] = np.ascontiguousarray(result.T.astype(np.float64))
        return self._power_cache[samples]

    def _group(self, k: int) -> int:
        """Elements per group at scan level k: ``chunk`` blocks at level 0, _UPPER_GROUP above
        (the levels above are small: fewer, larger products cost less call overhead)."""
        return self.chunk if k == 0 else _UPPER_GROUP

    def _span(self, k: int) -> int:
        """Samples per element at scan level k: L, then L·J, then L·J·_UPPER_GROUP, …"""
        span = self.block
        for i in range(k):
            span *= self._group(i)
        return span

    def _level(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Matrices of scan level k (J = :meth:`_group` elements per group, P = A^span): Λ
        (J·n, J·n) with blocks (P^(i−j))ᵀ for j ≤ i (zero-start end states within a group,
        row vectors) and [P¹ᵀ … P^Jᵀ] (n, J·n) (what a group's start state adds)."""
        while len(self._levels) <= k:
            lv = len(self._levels)
            J, n, span = self._group(lv), self.order, self._span(lv)
            pw = [self._power_t(i * span) for i in range(J + 1)]
            lam = np.zeros((J * n, J * n))
            for i in range(J):
                for j in range(i + 1):
                    lam[j * n : (j + 1) * n, i * n : (i + 1) * n] = pw[i - j]
            self._levels.append((lam, np.hstack(pw[1:])))
        return self._levels[k]

    def _plan(self, C: int, m: int) -> _ScanPlan:
        """The scan over m blocks of C channels, its work arrays and views made once per
        call size (a few sizes kept)."""
        plan = self._plans.get((C, m))
        if plan is None:
            if len(self._plans) > 4:  # calls of varying size: keep a few shapes only
                self._plans.clear()
            plan = self._plans[(C, m)] = _ScanPlan(self, C, m, 0)
        return plan

    def _tail(self, r: int) -> list[np.ndarray]:
        """The matrices [T_oᵀ; O_oᵀ] of a short block of r < L samples."""
        if r not in self._tails:
            rows = np.r_[0:r, self.block : self.block + self.order]
            self._tails[r] = [np.ascontiguousarray(w[np.ix_(rows, np.arange(r))]) for w in self._w]
        return self._tails[r]

    def run(self, x: np.ndarray, state: np.ndarray,
            out=None) -> tuple[list[np.ndarray], np.ndarray]:
        """Filter ``x`` (channels, N), any N ≥ 0, from ``state`` (channels, n). Returns the
        outputs, one (channels, N) array per tap (same unit as ``x``), and the state after
        the last sample (channels, n). Nothing is kept: the caller carries the state.
        ``out``: optional list of C-contiguous (channels, N) float64 arrays, one per tap, to
        write the outputs into (a caller that reuses them spares the page faults of fresh
        megabyte-sized arrays, which cost as much as the products)."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        C, N = x.shape
        state = np.asarray(state, dtype=np.float64)
        if out is None:
            out = [np.empty((C, N)) for _ in range(self.outputs)]
        elif not all(o.shape == (C, N) and o.dtype == np.float64 and o.flags.c_contiguous
                     for o in out):
            raise ValueError(f"out must hold {self.outputs} C-contiguous float64 arrays of "
                             f"shape {(C, N)}")
        if C > 1 and N > _PIECE:
            # one channel at a time: the products are memory-bound (inner dimension 16), and
            # a channel's blocks stay in the core's cache where all channels' would not
            # (8 channels at once took twice the time per channel)
            new_state = np.empty_like(state)
            for c in range(C):
                _, new_state[c] = self._run(x[c : c + 1], state[c : c + 1],
                                            [o[c : c + 1] for o in out])
            return out, new_state
        return self._run(x, state, out)

    def _run(self, x, state, outs):
        C, N = x.shape
        L, n = self.block, self.order
        nb, r = divmod(N, L)
        if nb:
            X = x[:, : nb * L].reshape(C, nb, L)
            plan = self._plan(C, nb)
            np.matmul(X, self._gamma, out=plan.g)
            states = plan.run(state)  # row b: the state at the start of block b
            # (C·nb, n), C-contiguous: a view for one channel
            S = states[0, :nb] if C == 1 else np.ascontiguousarray(states[:, :nb]).reshape(-1, n)
            Xt = X.reshape(C * nb, L).T  # Fortran-ordered views: BLAS reads them in place
            for o, (t, f) in enumerate(self._wf):
                direct = r == 0 or C == 1  # the output's first nb·L columns are one block
                y = outs[o][:, : nb * L].reshape(C * nb, L) if direct else np.empty((C * nb, L))
                # yᵀ = T Xᵀ, then yᵀ += O Sᵀ in place (beta = 1)
                blas.dgemm(1.0, t, Xt, 0.0, y.T, overwrite_c=1)
                blas.dgemm(1.0, f, S.T, 1.0, y.T, overwrite_c=1)
                if not direct:
                    outs[o][:, : nb * L] = y.reshape(C, nb * L)
            state = states[:, nb].copy()
        if r:
            tail = x[:, nb * L :]
            xs = np.concatenate((tail, state), axis=1)
            for o, w in enumerate(self._tail(r)):
                outs[o][:, nb * L :] = xs @ w
            state = state @ self._powers_t[r] + tail @ self._gamma[L - r :]
        return outs, np.array(state)


class _ScanPlan:
    """One level of the prefix scan of :class:`BlockCascade` over m elements of C channels:
    s_(i+1) = P s_i + g_i, P = A^span (see the module docstring), with its work arrays and
    the views of them made once. The caller writes the elements' zero-start end states g_i
    into :attr:`g` (C, m, n); :meth:`run` returns ``out`` (C, ≥ m + 1, n) whose row 0 is the
    state before the first element and row i + 1 the state after element i (rows past m are
    scratch). Groups of J elements are one product with Λ; the states at the group starts
    are the same scan one level up; at most _HILLIS_STEELE elements are scanned by
    Hillis–Steele steps d = 1, 2, 4, … with P^d, to the end."""

    def __init__(self, bc: BlockCascade, C: int, m: int, k: int):
        n = bc.order
        if m <= _HILLIS_STEELE:
            self.out = np.empty((C, m + 1, n))
            self.g = self.out[:, 1:]
            tmp = np.empty((C, m, n))
            self.steps = []
            d = 1
            while d <= m:
                self.steps.append((self.out[:, :-d], bc._power_t(d * bc._span(k)),
                                   tmp[:, : m + 1 - d], self.out[:, d:]))
                d *= 2
            self.up = None
            return
        J = bc._group(k)
        self.lam, self.to_elements = bc._level(k)
        ng = -(-m // J)
        self.out = np.empty((C, 1 + ng * J, n))
        self.local = self.out[:, 1:].reshape(C, ng, J * n)  # zero-start states in each group
        if not np.shares_memory(self.local, self.out):  # written in place: must be a view
            raise AssertionError("the scan's group view is a copy")
        g = np.zeros((C, ng * J, n))  # the padding after m stays zero
        self.g = g[:, :m]
        self.groups = g.reshape(C, ng, J * n)
        self.up = _ScanPlan(bc, C, ng, k + 1)
        self.ends = self.local[:, :, (J - 1) * n :]  # each group's zero-start end state
        self.starts = self.up.out[:, :ng]  # the state at each group's start
        self.tmp = np.empty((C, ng, J * n))

    def run(self, state: np.ndarray) -> np.ndarray:
        self.out[:, 0] = state
        if self.up is None:
            for src, power, tmp, dst in self.steps:
                np.matmul(src, power, out=tmp)
                np.add(dst, tmp, out=dst)
            return self.out
        np.matmul(self.groups, self.lam, out=self.local)
        self.up.g[...] = self.ends
        self.up.run(state)
        np.matmul(self.starts, self.to_elements, out=self.tmp)
        np.add(self.local, self.tmp, out=self.local)
        return self.out
