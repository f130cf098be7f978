# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The coordinator's core, compiled: the Cython twin of `interp_py`, with identical behaviour.

`interp_py` is the reference (and its docstring states the routing rules); this module does
the same with the routing state in C arrays, so routing a completion touches no Python
object. `drain`, the hot loop, uses Python objects only for what the workflow sees: the
inputs dict, the call and its value, and the run's `values`, `done` and `order`.

Safety: bounds checking is off module-wide, so every C array index here must be in range by
construction. `Routing.__init__` checks the IR's arrays once (lengths, and that every offset
and every node index stays in range); node indices that come from callers (`complete`,
`skip`, the `ready` list) are checked where they enter. Python sequences (`fns`, `ids`,
`values`, `guarded`, `taken`) are only indexed through `_item`/`_set_item`, which keep
Python's own bounds checks. A malformed input raises; it never reads or writes out of range.

Where the two implementations may differ, only on inputs the runtime never produces: a
negative node index (a list would wrap around, this raises IndexError), an IR whose arrays
are inconsistent (this refuses it in `Routing(ir)`), and counters beyond 2**31.
"""

from collections.abc import Sequence

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.string cimport memcpy, memset

from aobc.runtime import execir as _execir

# The status codes and their names, as in interp_py (the driver compares against them).
PENDING, READY, RUNNING, DONE, SKIPPED, FAILED = range(6)
STATUS_NAMES = ("pending", "ready", "running", "done", "skipped", "failed")

cdef enum:
    C_PENDING = 0
    C_READY = 1
    C_RUNNING = 2
    C_DONE = 3
    C_SKIPPED = 4
    C_FAILED = 5

# Join modes and the join kind, as C constants; checked against execir at import below, so
# a renumbering there fails the import (and `core` falls back to the reference, visibly).
cdef enum:
    C_J_ALL = 0
    C_J_ANY = 1
    C_K_JOIN = 3

if (_execir.J_ALL, _execir.J_ANY, _execir.K_JOIN) != (C_J_ALL, C_J_ANY, C_K_JOIN):
    raise ImportError("aobc.runtime._interp is out of date with execir's constants: rebuild it")


# --- a growable stack of node indices -----------------------------------------------------

cdef enum:
    INLINE = 16  # a stack's first entries live in the struct itself: most never grow


cdef struct Stack:
    Py_ssize_t *data  # `small` until the stack outgrows it, then memory of its own
    Py_ssize_t len
    Py_ssize_t cap
    Py_ssize_t small[INLINE]


cdef int _stack_init(Stack *s, Py_ssize_t cap) except -1:
    # A small stack costs no allocation (a run's drain makes three per call). The struct
    # must stay where it is while `data` points into it: stacks are locals, passed by address.
    s.len = 0
    if cap <= INLINE:
        s.data = s.small
        s.cap = INLINE
        return 0
    s.cap = cap
    s.data = <Py_ssize_t *> PyMem_Malloc(s.cap * sizeof(Py_ssize_t))
    if s.data == NULL:
        s.cap = 0
        raise MemoryError()
    return 0


cdef inline int _push(Stack *s, Py_ssize_t v) except -1:
    # Every push checks capacity: a node normally enters a stack once per call, but Python
    # code reachable from here (a `taken` sequence, a workflow function) can change statuses,
    # so no fixed bound is trusted.
    cdef Py_ssize_t cap
    cdef Py_ssize_t *data
    if s.len == s.cap:
        cap = s.cap * 2
        if s.data == s.small:
            data = <Py_ssize_t *> PyMem_Malloc(cap * sizeof(Py_ssize_t))
            if data != NULL:
                memcpy(data, s.small, s.len * sizeof(Py_ssize_t))
        else:
            data = <Py_ssize_t *> PyMem_Realloc(s.data, cap * sizeof(Py_ssize_t))
        if data == NULL:
            raise MemoryError()
        s.data = data
        s.cap = cap
    s.data[s.len] = v
    s.len += 1
    return 0


cdef inline void _stack_free(Stack *s) noexcept:
    if s.data != s.small:
        PyMem_Free(s.data)
    s.data = NULL
    s.len = 0
    s.cap = 0


cdef list _stack_list(Stack *s, Py_ssize_t start):
    cdef list out = []
    cdef Py_ssize_t k
    for k in range(start, s.len):
        out.append(s.data[k])
    return out


# --- a min-heap of node indices (on a Stack's array), for `drain` ------------------------------

cdef int _heap_push(Stack *h, Py_ssize_t v) except -1:
    cdef Py_ssize_t k, parent
    _push(h, v)
    k = h.len - 1
    while k > 0:
        parent = (k - 1) >> 1
        if h.data[parent] <= v:
            break
        h.data[k] = h.data[parent]
        k = parent
    h.data[k] = v
    return 0


cdef inline Py_ssize_t _heap_pop(Stack *h) noexcept:
    """The smallest index (the heap must not be empty)."""
    cdef Py_ssize_t top = h.data[0], last, k = 0, child, n
    h.len -= 1
    n = h.len
    if n == 0:
        return top
    last = h.data[n]
    while True:
        child = 2 * k + 1
        if child >= n:
            break
        if child + 1 < n and h.data[child + 1] < h.data[child]:
            child += 1
        if last <= h.data[child]:
            break
        h.data[k] = h.data[child]
        k = child
    h.data[k] = last
    return top


# --- Python sequences, always bounds-checked ----------------------------------------------

@cython.boundscheck(True)
cdef inline object _item(object seq, Py_ssize_t i):
    # Python's own check (a list's fast path keeps it): these sequences belong to the caller.
    return seq[i]


@cython.boundscheck(True)
cdef inline int _set_item(object seq, Py_ssize_t i, object value) except -1:
    seq[i] = value
    return 0


cdef int *_int_array(object values, Py_ssize_t n, str name) except NULL:
    """A C copy of `values`, which must hold exactly n ints that fit a C int."""
    if len(values) != n:
        raise ValueError(f"ExecIR.{name} has {len(values)} entries, expected {n}")
    cdef int *out = <int *> PyMem_Malloc((n if n > 0 else 1) * sizeof(int))
    if out == NULL:
        raise MemoryError()
    cdef Py_ssize_t k
    try:
        for k in range(n):
            out[k] = _item(values, k)  # checked: an item's __index__ could shrink the list
    except BaseException:
        PyMem_Free(out)
        raise
    return out


cdef int *_zeros(Py_ssize_t n) except NULL:
    """n C ints, all 0."""
    cdef int *out = <int *> PyMem_Malloc((n if n > 0 else 1) * sizeof(int))
    if out == NULL:
        raise MemoryError()
    memset(out, 0, (n if n > 0 else 1) * sizeof(int))
    return out


cdef int _check_csr(
    int *offsets, Py_ssize_t n, int *targets, Py_ssize_t m, str offsets_name, str targets_name
) except -1:
    """Every offset within the target array, every target a node: what makes indexing safe."""
    cdef Py_ssize_t k
    for k in range(n + 1):
        if offsets[k] < 0 or offsets[k] > m:
            raise ValueError(f"ExecIR.{offsets_name}[{k}] = {offsets[k]} is outside 0..{m}")
    for k in range(m):
        if targets[k] < 0 or targets[k] >= n:
            raise ValueError(f"ExecIR.{targets_name}[{k}] = {targets[k]} is not a node index")
    return 0


# --- views: the routing arrays as Python sees them -----------------------------------------

@cython.final
cdef class IntView:
    """A fixed-length sequence of ints over one of a Routing's C arrays.

    Indexing works as on a list (negative indices count from the end, a slice gives a list),
    and it compares equal to a list with the same items. The status view is writable by
    index (the driver marks nodes RUNNING); the others are read-only. Its length never
    changes: the arrays are sized by the IR.
    """

    cdef object owner  # the Routing whose memory `data` points into: kept alive by the view
    cdef int *data
    cdef Py_ssize_t n
    cdef bint writable

    def __init__(self) -> None:
        raise TypeError("IntView is made by Routing, not directly")

    def __len__(self) -> int:
        return self.n

    cdef Py_ssize_t _index(self, object index) except -1:
        cdef Py_ssize_t i = index  # via __index__, as a list does: a float is a TypeError
        if i < 0:
            i += self.n
        if i < 0 or i >= self.n:
            raise IndexError("routing index out of range")
        return i

    def __getitem__(self, index: object) -> object:
        if isinstance(index, slice):
            return [self.data[k] for k in range(*index.indices(self.n))]
        return self.data[self._index(index)]

    def __setitem__(self, index: object, value: object) -> None:
        if not self.writable:
            raise TypeError("this routing array is read-only")
        if isinstance(index, slice):
            raise TypeError("routing arrays have a fixed length: assign items one by one")
        cdef Py_ssize_t i = self._index(index)
        self.data[i] = value

    def __iter__(self):
        cdef Py_ssize_t k
        for k in range(self.n):
            yield self.data[k]

    def __contains__(self, value: object) -> bool:
        return value in self.tolist()

    def tolist(self) -> list:
        """The items, as a new list."""
        return [self.data[k] for k in range(self.n)]

    def __eq__(self, other: object) -> object:
        if isinstance(other, IntView):
            return self.tolist() == (<IntView> other).tolist()
        if isinstance(other, list):
            return self.tolist() == other
        return NotImplemented

    def __ne__(self, other: object) -> object:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    __hash__ = None  # mutable, like the list it stands in for

    def __repr__(self) -> str:
        return f"IntView({self.tolist()!r})"

    def __reduce__(self) -> object:
        raise TypeError("IntView is a view of routing state and cannot be pickled")


Sequence.register(IntView)


cdef IntView _view(object owner, int *data, Py_ssize_t n, bint writable):
    cdef IntView v = IntView.__new__(IntView)
    v.owner = owner
    v.data = data
    v.n = n
    v.writable = writable
    return v


# --- routing state -------------------------------------------------------------------------

@cython.final
cdef class Routing:
    """Mutable routing state of one run on one IR: a status and two counters per node.

    The same attributes as the reference's, as views over C arrays: `status` is writable by
    index, the rest read-only. `current` is the node `drain` is running (-1: none).
    """

    cdef public Py_ssize_t current
    cdef readonly Py_ssize_t n
    # The views of status, arrived and taken, made on first use: a view keeps its Routing
    # alive, so a Routing holding its views is a reference cycle, which only the cycle
    # collector frees. A run that never reads them from Python (the fast path: `drain`
    # and `settled` read the C arrays) then leaves nothing for the collector.
    cdef IntView _status_view, _arrived_view, _taken_view
    # C arrays, owned here, allocated once and never resized: pointers to them stay valid for
    # the life of the object, so the hot loop may keep them in locals across Python calls.
    cdef int *_status
    cdef int *_arrived
    cdef int *_taken
    cdef int *_succ_offsets
    cdef int *_succ_targets
    cdef int *_pred_offsets
    cdef int *_pred_sources
    cdef int *_pred_counts
    cdef int *_is_join
    cdef int *_join_mode
    cdef int *_join_n
    cdef Py_ssize_t n_succ, n_pred
    # The Routing that owns the IR's arrays above when this one is a `copy` (which shares
    # them: they never change; the reference keeps it alive). `_shared` says so, not
    # `_base is None`: the cycle collector may clear `_base` before `__dealloc__` runs.
    cdef Routing _base
    cdef bint _shared

    def __cinit__(self) -> None:
        self.current = -1

    def __init__(self, ir: object) -> None:
        if self._status != NULL:
            raise TypeError("Routing is initialized once")
        nodes = ir.nodes
        cdef Py_ssize_t n = len(nodes)
        cdef Py_ssize_t k = 0
        self.n_succ = len(ir.succ_targets)
        self.n_pred = len(ir.pred_sources)
        self._succ_offsets = _int_array(ir.succ_offsets, n + 1, "succ_offsets")
        self._succ_targets = _int_array(ir.succ_targets, self.n_succ, "succ_targets")
        self._pred_offsets = _int_array(ir.pred_offsets, n + 1, "pred_offsets")
        self._pred_sources = _int_array(ir.pred_sources, self.n_pred, "pred_sources")
        self._pred_counts = _int_array(ir.pred_counts, n, "pred_counts")
        _check_csr(self._succ_offsets, n, self._succ_targets, self.n_succ, "succ_offsets", "succ_targets")
        _check_csr(self._pred_offsets, n, self._pred_sources, self.n_pred, "pred_offsets", "pred_sources")
        self._is_join = _zeros(n)
        self._join_mode = _zeros(n)
        self._join_n = _zeros(n)
        for node in nodes:
            if k >= n:
                raise ValueError("ExecIR.nodes changed while it was read")
            self._is_join[k] = node.kind == C_K_JOIN
            self._join_mode[k] = node.join_mode
            self._join_n[k] = node.join_n
            k += 1
        if k != n:
            raise ValueError("ExecIR.nodes changed while it was read")
        self._arrived = _zeros(n)
        self._taken = _zeros(n)
        self._status = _zeros(n)  # all PENDING, which is 0
        self.n = n  # last: until here every loop over the nodes sees none

    @property
    def status(self) -> IntView:
        if self._status_view is None:
            if self._status == NULL:
                return _view(self, NULL, 0, True)  # not initialized: no nodes
            self._status_view = _view(self, self._status, self.n, True)
        return self._status_view

    @property
    def arrived(self) -> IntView:
        if self._arrived_view is None:
            if self._status == NULL:
                return _view(self, NULL, 0, False)
            self._arrived_view = _view(self, self._arrived, self.n, False)
        return self._arrived_view

    @property
    def taken(self) -> IntView:
        if self._taken_view is None:
            if self._status == NULL:
                return _view(self, NULL, 0, False)
            self._taken_view = _view(self, self._taken, self.n, False)
        return self._taken_view

    # The IR's arrays, read-only, as the reference exposes them; made on demand, since
    # nothing on the hot path reads them from Python.
    @property
    def succ_offsets(self) -> IntView:
        return _view(self, self._succ_offsets, self.n + 1 if self._status != NULL else 0, False)

    @property
    def succ_targets(self) -> IntView:
        return _view(self, self._succ_targets, self.n_succ if self._status != NULL else 0, False)

    @property
    def pred_offsets(self) -> IntView:
        return _view(self, self._pred_offsets, self.n + 1 if self._status != NULL else 0, False)

    @property
    def pred_sources(self) -> IntView:
        return _view(self, self._pred_sources, self.n_pred if self._status != NULL else 0, False)

    @property
    def pred_counts(self) -> IntView:
        return _view(self, self._pred_counts, self.n, False)

    @property
    def is_join(self) -> IntView:
        return _view(self, self._is_join, self.n, False)

    @property
    def join_mode(self) -> IntView:
        return _view(self, self._join_mode, self.n, False)

    @property
    def join_n(self) -> IntView:
        return _view(self, self._join_n, self.n, False)

    def __dealloc__(self) -> None:
        PyMem_Free(self._status)
        PyMem_Free(self._arrived)
        PyMem_Free(self._taken)
        if self._shared:
            return  # the IR's arrays belong to the base
        PyMem_Free(self._succ_offsets)
        PyMem_Free(self._succ_targets)
        PyMem_Free(self._pred_offsets)
        PyMem_Free(self._pred_sources)
        PyMem_Free(self._pred_counts)
        PyMem_Free(self._is_join)
        PyMem_Free(self._join_mode)
        PyMem_Free(self._join_n)

    def __reduce__(self) -> object:
        raise TypeError("Routing cannot be pickled: rebuild it from the run's completions")

    cdef inline Py_ssize_t _node(self, object i) except -1:
        """A caller's node index as a C index, refused unless it is a node."""
        if self._status == NULL:
            raise TypeError("Routing was not initialized")
        cdef Py_ssize_t j = i
        if j < 0 or j >= self.n:
            raise IndexError(f"node index {j} out of range (0..{self.n - 1})")
        return j


# --- routing rules (see interp_py for their statement) ---------------------------------------

cdef inline int _arrive(
    Routing st, Py_ssize_t j, bint took, Stack *ready, Stack *skipped
) except -1:
    """Resolve one input edge of node j; push j to `ready` or `skipped` if that decides it."""
    cdef int *status = st._status
    cdef int arrived, taken, m, need, mode
    st._arrived[j] += 1
    if took:
        st._taken[j] += 1
    if status[j] != C_PENDING:
        return 0  # already decided (a join that fired, or a node skipped by an earlier input)
    arrived = st._arrived[j]
    taken = st._taken[j]
    m = st._pred_counts[j]
    if not st._is_join[j]:
        if not took:
            status[j] = C_SKIPPED
            _push(skipped, j)
        elif arrived == m:
            status[j] = C_READY
            _push(ready, j)
        return 0
    mode = st._join_mode[j]
    if mode == C_J_ALL:
        if arrived == m:
            if taken > 0:
                status[j] = C_READY
                _push(ready, j)
            else:
                status[j] = C_SKIPPED
                _push(skipped, j)
    elif mode == C_J_ANY:
        if took:
            status[j] = C_READY
            _push(ready, j)
        elif arrived == m:
            status[j] = C_SKIPPED
            _push(skipped, j)
    else:
        need = st._join_n[j]
        if taken >= need:
            status[j] = C_READY
            _push(ready, j)
        elif taken + (m - arrived) < need:
            status[j] = C_SKIPPED
            _push(skipped, j)
    return 0


cdef int _propagate_skips(Routing st, Py_ssize_t k, Stack *ready, Stack *skipped) except -1:
    """Resolve, as untaken, every edge out of the skipped nodes from index k on."""
    cdef Py_ssize_t i, s
    while k < skipped.len:
        i = skipped.data[k]
        k += 1
        for s in range(st._succ_offsets[i], st._succ_offsets[i + 1]):
            _arrive(st, st._succ_targets[s], False, ready, skipped)
    return 0


cdef int _complete(
    Routing st, Py_ssize_t i, object taken, Stack *ready, Stack *skipped
) except -1:
    """Node i (a valid index) succeeded: push what becomes ready or skipped.

    Atomic for `ready`: if reading `taken` raises, nothing pushed here stays on it, as the
    reference's `complete` then returns no list for the caller to extend.
    """
    cdef Py_ssize_t first = st._succ_offsets[i]
    cdef Py_ssize_t last = st._succ_offsets[i + 1]
    cdef Py_ssize_t s, height = ready.len
    cdef bint took
    st._status[i] = C_DONE
    skipped.len = 0
    try:
        if taken is None:
            for s in range(first, last):
                _arrive(st, st._succ_targets[s], True, ready, skipped)
        else:
            for s in range(first, last):
                took = bool(_item(taken, s - first))
                _arrive(st, st._succ_targets[s], took, ready, skipped)
        _propagate_skips(st, 0, ready, skipped)
    except BaseException:
        ready.len = height
        raise
    return 0


# --- the public functions --------------------------------------------------------------------

def start(ir: object) -> tuple:
    """A fresh routing state and the nodes ready at the start (the roots)."""
    cdef Routing st = Routing(ir)
    ready = list(ir.roots)
    for i in ready:
        st._status[st._node(i)] = C_READY
    return st, ready


def complete(Routing st not None, i: object, taken: object) -> tuple:
    """Node i succeeded. Resolve its outgoing edges and return (newly ready, newly skipped).

    `taken[s]` says whether the s-th outgoing edge of i (in CSR order) was taken; None means
    all were (no labels or guards to evaluate), which is the common, fast case.
    """
    cdef Py_ssize_t j = st._node(i)
    cdef Stack ready, skipped
    _stack_init(&ready, 8)
    try:
        _stack_init(&skipped, 8)
        try:
            _complete(st, j, taken, &ready, &skipped)
            return _stack_list(&ready, 0), _stack_list(&skipped, 0)
        finally:
            _stack_free(&skipped)
    finally:
        _stack_free(&ready)


def complete_many(Routing st not None, members: object) -> list:
    """Nodes `members`, in topological order, all succeeded and took every outgoing edge (a
    fused region, run as one call). Returns the nodes newly ready outside them.

    As the reference: `complete(st, i, None)` for each member in order, keeping the ready
    nodes still READY at the end. Indices are checked before anything changes.
    """
    cdef list idx = [st._node(i) for i in members]
    cdef Py_ssize_t j, k
    cdef Stack ready, skipped
    _stack_init(&ready, 16)
    try:
        _stack_init(&skipped, 8)
        try:
            for j in idx:
                _complete(st, j, None, &ready, &skipped)
            out = []
            for k in range(ready.len):
                if st._status[ready.data[k]] == C_READY:
                    out.append(ready.data[k])
            return out
        finally:
            _stack_free(&skipped)
    finally:
        _stack_free(&ready)


def copy(Routing st not None) -> Routing:
    """A new routing state equal to `st` (a run starts from its plan's template). The IR's
    arrays are shared, not copied: nothing ever writes them."""
    if st._status == NULL:
        raise TypeError("Routing was not initialized")
    cdef Routing new = Routing.__new__(Routing)
    cdef Py_ssize_t n = st.n
    cdef size_t size = (n if n > 0 else 1) * sizeof(int)
    new._base = st if st._base is None else st._base
    new._shared = True
    new._succ_offsets = st._succ_offsets
    new._succ_targets = st._succ_targets
    new._pred_offsets = st._pred_offsets
    new._pred_sources = st._pred_sources
    new._pred_counts = st._pred_counts
    new._is_join = st._is_join
    new._join_mode = st._join_mode
    new._join_n = st._join_n
    new.n_succ = st.n_succ
    new.n_pred = st.n_pred
    new._arrived = _zeros(n)
    new._taken = _zeros(n)
    new._status = _zeros(n)
    memcpy(new._arrived, st._arrived, size)
    memcpy(new._taken, st._taken, size)
    memcpy(new._status, st._status, size)
    new.current = st.current
    new.n = n
    return new


@cython.final
cdef class Region:
    """A fused region's routing, precomputed once per IR (see interp_py.Region): the same
    attributes, as lists, and C copies of them for `region_ready` and `complete_region`."""

    cdef readonly Py_ssize_t n
    cdef readonly list members, inner, roots, rest, inputs, outer
    cdef int *_members
    cdef int *_inner
    cdef int *_roots
    cdef int *_rest
    cdef int *_inputs
    cdef int *_outer
    cdef Py_ssize_t n_members, n_roots, n_rest, n_inputs, n_outer

    def __init__(self, ir: object, members: object) -> None:
        if self._members != NULL:
            raise TypeError("Region is initialized once")
        ref = _reference_region(ir, members)  # the reference computes and checks the lists
        self.n = ref.n
        self.members = list(ref.members)
        self.inner = list(ref.inner)
        self.roots = list(ref.roots)
        self.rest = list(ref.rest)
        self.inputs = list(ref.inputs)
        self.outer = list(ref.outer)
        self.n_members = len(self.members)
        self.n_roots = len(self.roots)
        self.n_rest = len(self.rest)
        self.n_inputs = len(self.inputs)
        self.n_outer = len(self.outer)
        self._members = _int_array(self.members, self.n_members, "members")
        self._inner = _int_array(self.inner, self.n_members, "inner")
        self._roots = _int_array(self.roots, self.n_roots, "roots")
        self._rest = _int_array(self.rest, self.n_rest, "rest")
        self._inputs = _int_array(self.inputs, self.n_inputs, "inputs")
        self._outer = _int_array(self.outer, self.n_outer, "outer")
        _check_nodes(self._members, self.n_members, self.n)
        _check_nodes(self._roots, self.n_roots, self.n)
        _check_nodes(self._rest, self.n_rest, self.n)
        _check_nodes(self._inputs, self.n_inputs, self.n)
        _check_nodes(self._outer, self.n_outer, self.n)

    def __dealloc__(self) -> None:
        PyMem_Free(self._members)
        PyMem_Free(self._inner)
        PyMem_Free(self._roots)
        PyMem_Free(self._rest)
        PyMem_Free(self._inputs)
        PyMem_Free(self._outer)

    def __reduce__(self) -> object:
        raise TypeError("Region cannot be pickled: make it again from the IR")


def _reference_region(ir: object, members: object) -> object:
    from aobc.runtime.interp_py import Region as _Ref

    return _Ref(ir, members)


cdef int _check_nodes(int *data, Py_ssize_t k, Py_ssize_t n) except -1:
    cdef Py_ssize_t j
    for j in range(k):
        if data[j] < 0 or data[j] >= n:
            raise ValueError(f"node index {data[j]} out of range (0..{n - 1})")
    return 0


cdef int _check_region(Routing st, Region region) except -1:
    if st._status == NULL or region._members == NULL:
        raise TypeError("Routing or Region was not initialized")
    if region.n != st.n:
        raise ValueError(f"a region of a {region.n}-node IR used on {st.n} nodes")
    return 0


def region_ready(Routing st not None, Region region not None) -> bool:
    """Whether the region may run now as one call: every input done, every root ready, and
    no other member decided yet (an untaken edge from an input skips a member)."""
    _check_region(st, region)
    cdef int *status = st._status
    cdef Py_ssize_t k
    for k in range(region.n_inputs):
        if status[region._inputs[k]] != C_DONE:
            return False
    for k in range(region.n_roots):
        if status[region._roots[k]] != C_READY:
            return False
    for k in range(region.n_rest):
        if status[region._rest[k]] != C_PENDING:
            return False
    return True


def complete_region(Routing st not None, Region region not None) -> list:
    """Every member succeeded and took every outgoing edge: as the reference, the same
    state and result as `complete_many(st, region.members)`, set in bulk."""
    _check_region(st, region)
    cdef Py_ssize_t k, m
    cdef Stack ready, skipped
    for k in range(region.n_members):
        m = region._members[k]
        st._status[m] = C_DONE
        st._arrived[m] += region._inner[k]
        st._taken[m] += region._inner[k]
    _stack_init(&ready, region.n_outer)
    try:
        _stack_init(&skipped, 8)
        try:
            for k in range(region.n_outer):
                _arrive(st, region._outer[k], True, &ready, &skipped)
            _propagate_skips(st, 0, &ready, &skipped)
            out = []
            for k in range(ready.len):
                if st._status[ready.data[k]] == C_READY:
                    out.append(ready.data[k])
            return out
        finally:
            _stack_free(&skipped)
    finally:
        _stack_free(&ready)


def skip(Routing st not None, i: object) -> tuple:
    """Node i will not run (its run was told so): resolve its edges as untaken."""
    cdef Py_ssize_t j = st._node(i)
    cdef Stack ready, skipped
    _stack_init(&ready, 8)
    try:
        _stack_init(&skipped, 8)
        try:
            _push(&skipped, j)
            st._status[j] = C_SKIPPED
            _propagate_skips(st, 0, &ready, &skipped)
            return _stack_list(&ready, 0), _stack_list(&skipped, 1)
        finally:
            _stack_free(&skipped)
    finally:
        _stack_free(&ready)


def settled(Routing st not None) -> bool:
    """True when no node can run any more: every node is done, skipped or failed."""
    cdef Py_ssize_t k
    cdef int s
    for k in range(st.n):
        s = st._status[k]
        if s != C_DONE and s != C_SKIPPED and s != C_FAILED:
            return False
    return True


def drain(
    Routing st not None,
    list ready not None,
    fns: object,
    ids: object,
    values: object,
    done: object,
    order: object,
    guarded: object,
    taken_of: object,
    start_node: object,
) -> None:
    """Run the ready nodes, smallest index first, until none is ready or `start_node` says
    the run has ended.

    As the reference (whose docstring says why the order is the smallest index first, and
    why a join that fires on some of its inputs runs at once): a node runs inline when
    `fns[i]` is a callable, gets its DONE predecessors' outputs by id, and its value goes to
    `values`, its id to `done` and `order`; successors are routed (asking `taken_of` only
    where `guarded[i]`). Every other ready node is marked RUNNING and handed to
    `start_node(i)`, whose True stops the drain; what it readies it appends to `ready`. If a
    function raises, the exception propagates with `st.current` naming the node (-1 if
    `start_node` raised), and `ready` holds what was still to run.
    """
    cdef Stack heap, fresh, skipped
    cdef Py_ssize_t i, k, p, n = st.n
    cdef int *status = st._status
    cdef int *offsets = st._pred_offsets
    cdef int *sources = st._pred_sources
    cdef dict inputs
    # The ready nodes live in a C min-heap while the loop runs; `ready` collects what
    # `start_node` readies, and gets the heap back when the loop stops.
    _stack_init(&heap, len(ready))
    try:
        _stack_init(&fresh, 16)
        _stack_init(&skipped, 16)
        try:
            if _admit(st, &heap, ready, start_node):
                return
            while heap.len:
                i = _heap_pop(&heap)
                if status[i] != C_READY:
                    continue
                status[i] = C_RUNNING
                fn = _item(fns, i)
                if fn is None:
                    st.current = -1
                    if start_node(i) or _admit(st, &heap, ready, start_node):
                        break
                    continue
                st.current = i
                inputs = {}
                for k in range(offsets[i], offsets[i + 1]):
                    p = sources[k]
                    if status[p] == C_DONE:
                        inputs[_item(ids, p)] = _item(values, p)
                value = fn(inputs)
                _set_item(values, i, value)
                node_id = _item(ids, i)
                done[node_id] = None
                order.append(node_id)
                fresh.len = 0
                _complete(
                    st, i, taken_of(i, value) if _item(guarded, i) else None, &fresh, &skipped
                )
                if _admit_fresh(st, &heap, &fresh, ready, start_node):
                    break
            st.current = -1
        finally:
            _stack_free(&skipped)
            _stack_free(&fresh)
    finally:
        ready.extend(_stack_list(&heap, 0))
        _stack_free(&heap)


cdef int _admit_fresh(
    Routing st, Stack *heap, Stack *fresh, list ready, object start_node
) except -1:
    """`_admit` of the nodes an inline node has just readied, straight from the C stack:
    onto the heap, until (rarely) a join that fires at once, from which on the rest goes
    the general way, in the same order."""
    cdef Py_ssize_t k, j
    cdef int *status = st._status
    for k in range(fresh.len):
        j = fresh.data[k]
        if status[j] == C_READY and st._is_join[j] and st._join_mode[j] != C_J_ALL:
            ready.extend(_stack_list(fresh, k))
            return _admit(st, heap, ready, start_node)
        _heap_push(heap, j)
    return 0


cdef int _admit(Routing st, Stack *heap, list ready, object start_node) except -1:
    """As the reference's `_admit`: move `ready`'s nodes, in order, onto the heap, starting
    at once a join that fires on some of its inputs; 1 when `start_node` said stop. Indices
    are checked as they come (a bad one raises before it is used)."""
    cdef list items = list(ready)
    cdef Py_ssize_t k = 0, j, n = st.n
    cdef int *status = st._status
    del ready[:]
    try:
        while k < len(items):
            j = items[k]
            if j < 0 or j >= n:
                raise IndexError(f"node index {j} out of range (0..{n - 1})")
            k += 1
            if status[j] == C_READY and st._is_join[j] and st._join_mode[j] != C_J_ALL:
                status[j] = C_RUNNING
                st.current = -1
                stop = start_node(j)  # it appends what it readies to `ready`
                items.extend(ready)
                del ready[:]
                if stop:
                    return 1
            else:
                _heap_push(heap, j)
    finally:
        for j in items[k:]:  # not admitted (none, unless it stopped or raised)
            if 0 <= j < n:
                _push(heap, j)
    return 0
