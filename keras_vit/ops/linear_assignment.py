"""Exact minimum-cost bipartite matching (the Hungarian step of DETR's loss).

Contract: a batched cost `(B, Q, T)` between Q predictions and T padded
targets, plus a target mask `(B, T)`, gives `query_index (B, T)`: the
prediction matched to each valid target, -1 for padding. Every valid target
gets a distinct prediction (T_valid <= Q is required), and the total cost is
the minimum, as `scipy.optimize.linear_sum_assignment` finds it (ties may pick
another assignment of the same cost).

Two paths:

- `linear_sum_assignment_host`: scipy on numpy arrays, outside any graph.
- `linear_sum_assignment_ops`: the same optimum in pure `keras.ops`
  (shortest augmenting paths with row/column potentials, Jonker-Volgenant /
  Kuhn-Munkres, O(T^2 Q) per image), batched, usable inside a compiled graph
  on every backend.

Padded targets are given a constant cost row: whatever predictions they take,
they add the same amount, so the valid targets' optimum is unchanged.
"""

import numpy as np
from keras import ops


def _check(cost, target_mask):
    if len(cost.shape) != 3:
        raise ValueError(
            f"cost must have shape (batch, num_queries, num_targets). Received: cost.shape={tuple(cost.shape)}"
        )
    if target_mask is not None and tuple(target_mask.shape) != (cost.shape[0], cost.shape[2]):
        raise ValueError(
            "target_mask must have shape (batch, num_targets) = "
            f"{(cost.shape[0], cost.shape[2])}. Received: target_mask.shape={tuple(target_mask.shape)}"
        )


def _check_finite(cost, target_mask):
    """A ValueError naming the images whose cost (over their valid targets)
    holds NaN or infinity; `cost` and `target_mask` are numpy arrays."""
    finite = np.isfinite(cost)
    if target_mask is not None:
        finite = finite | ~np.asarray(target_mask, bool)[:, None, :]
    bad = np.flatnonzero(~finite.reshape(len(cost), -1).all(axis=1))
    if len(bad):
        raise ValueError(
            f"cost holds NaN or infinite values for image(s) {bad.tolist()[:10]}: no assignment is the minimum. "
            "Check the predictions and targets that built it (a NaN pixel, a diverged run, a degenerate box)."
        )


def _concrete(value):
    """`value` as a numpy array when it has values (eager), None while traced."""
    try:
        return np.asarray(ops.convert_to_numpy(value))
    except Exception:  # a symbolic tensor or tracer: no values yet
        return None


def linear_sum_assignment_host(cost, target_mask=None):
    """scipy's `linear_sum_assignment` per image, on numpy arrays.

    Args:
        cost: `(B, Q, T)` array.
        target_mask: `(B, T)` bool array, True for real targets; all True if None.

    Returns:
        int32 numpy array `(B, T)`: the query matched to each target, -1 for padding.
    """
    from scipy.optimize import linear_sum_assignment

    cost = np.asarray(cost, dtype="float64")
    _check(cost, target_mask)
    _check_finite(cost, target_mask)
    batch, num_queries, num_targets = cost.shape
    mask = np.ones((batch, num_targets), bool) if target_mask is None else np.asarray(target_mask, bool)
    out = np.full((batch, num_targets), -1, dtype="int32")
    for b in range(batch):
        valid = np.flatnonzero(mask[b])
        if len(valid) > num_queries:
            raise ValueError(
                f"Image {b} has {len(valid)} targets but only {num_queries} predictions; "
                "every target needs its own prediction (use more queries)."
            )
        if len(valid) == 0:
            continue
        rows, cols = linear_sum_assignment(cost[b][:, valid])
        out[b, valid[cols]] = rows
    return out


def linear_sum_assignment_ops(cost, target_mask=None):
    """The exact assignment in pure `keras.ops`, batched; see the module docstring.

    Called eagerly, a NaN or infinite cost (over the valid targets) raises a
    `ValueError` naming the images. Inside a traced graph (`jit`,
    `tf.function`) values are not known when it is built: there such costs
    count as 0, the solver ends and returns an arbitrary assignment for those
    images, so check the costs in the graph first (DETR does).

    Args:
        cost: `(B, Q, T)` tensor, Q >= T.
        target_mask: `(B, T)` bool tensor, True for real targets; all True if None.

    Returns:
        int32 tensor `(B, T)`: the query matched to each target, -1 for padding.
    """
    cost = ops.convert_to_tensor(cost)
    _check(cost, target_mask)
    values = _concrete(cost)
    if values is not None:  # eager: refuse non-finite costs, naming the images
        mask_values = None if target_mask is None else _concrete(target_mask)
        _check_finite(values.astype("float64"), mask_values)
    _, num_queries, num_targets = cost.shape
    # The batch may be unknown while tracing (TensorFlow's partial last batch).
    batch = ops.shape(cost)[0]
    if num_targets > num_queries:
        raise ValueError(
            f"num_targets={num_targets} exceeds num_queries={num_queries}: every target "
            "needs its own prediction (use more queries or fewer padded targets)."
        )
    dtype = "float32" if cost.dtype in ("float16", "bfloat16") else cost.dtype
    # Rows are targets (n), columns are queries (m), both 1-based; index 0 is
    # the algorithm's virtual row/column. (B, Q, T) -> (B, T, Q)
    rows_cost = ops.transpose(ops.cast(cost, dtype), (0, 2, 1))
    # Inside a traced graph the values are not known here: a NaN or inf cost
    # would keep the search below from ever finishing (and an inf one is no
    # cost to compare), so they count as 0 and the solver always ends; the
    # assignment is then arbitrary. Callers that can get such costs check
    # for them in the graph (DETR does, naming the images).
    rows_cost = ops.where(ops.isfinite(rows_cost), rows_cost, ops.zeros_like(rows_cost))
    if target_mask is not None:
        mask = ops.cast(target_mask, "bool")
        rows_cost = ops.where(mask[:, :, None], rows_cost, ops.zeros_like(rows_cost))
    n, m = num_targets, num_queries
    if n == 0:
        return ops.zeros((batch, 0), "int32")
    inf = ops.cast(float("inf"), dtype)
    columns = ops.arange(m + 1, dtype="int32")[None, :]  # (1, m+1)
    row_ids = ops.arange(n + 1, dtype="int32")[None, None, :]  # (1, 1, n+1)
    # (B, n, m) -> (B, n, m+1): virtual column 0 is never a candidate.
    padded_cost = ops.concatenate([ops.full((batch, n, 1), inf, dtype=dtype), rows_cost], axis=2)

    def gather(values, index):
        # values (B, K), index (B,) -> (B,)
        return ops.take_along_axis(values, index[:, None], axis=1)[:, 0]

    def add_row(i, state):
        u, v, p, way = state
        p = ops.where(columns == 0, ops.cast(i, "int32"), p)
        j0 = ops.zeros((batch,), "int32")
        minv = ops.full((batch, m + 1), inf, dtype=dtype)
        used = ops.zeros((batch, m + 1), "bool")

        def searching(u, v, p, way, j0, minv, used):
            return ops.any(gather(p, j0) != 0)

        def step(u, v, p, way, j0, minv, used):
            active = gather(p, j0) != 0  # (B,)
            used_next = used | (columns == j0[:, None])
            i0 = gather(p, j0)  # (B,) current row, 1-based
            row = ops.take_along_axis(
                padded_cost, ops.maximum(i0 - 1, 0)[:, None, None] * ops.ones((1, 1, m + 1), "int32"), axis=1
            )[:, 0]  # (B, m+1)
            reduced = row - gather(u, i0)[:, None] - v  # (B, m+1)
            free = ~used_next
            better = free & (reduced < minv)
            minv_next = ops.where(better, reduced, minv)
            way_next = ops.where(better, j0[:, None], way)
            candidates = ops.where(free, minv_next, inf)
            delta = ops.min(candidates, axis=1)  # (B,)
            j1 = ops.cast(ops.argmin(candidates, axis=1), "int32")
            # u[p[j]] += delta for used columns j: one-hot over rows (B, m+1, n+1).
            hits = ops.cast((p[:, :, None] == row_ids) & used_next[:, :, None], dtype)
            u_next = u + ops.sum(hits, axis=1) * delta[:, None]
            v_next = ops.where(used_next, v - delta[:, None], v)
            minv_next = ops.where(free, minv_next - delta[:, None], minv_next)
            keep = active[:, None]
            return (
                ops.where(keep, u_next, u),
                ops.where(keep, v_next, v),
                p,
                ops.where(keep, way_next, way),
                ops.where(active, j1, j0),
                ops.where(keep, minv_next, minv),
                ops.where(keep, used_next, used),
            )

        u, v, p, way, j0, minv, used = ops.while_loop(
            searching, step, (u, v, p, way, j0, minv, used)
        )

        def augmenting(p, j0):
            return ops.any(j0 != 0)

        def flip(p, j0):
            active = j0 != 0
            j1 = gather(way, j0)
            p_next = ops.where((columns == j0[:, None]) & active[:, None], gather(p, j1)[:, None], p)
            return p_next, ops.where(active, j1, j0)

        p, _ = ops.while_loop(augmenting, flip, (p, j0))
        return u, v, p, way

    state = (
        ops.zeros((batch, n + 1), dtype),
        ops.zeros((batch, m + 1), dtype),
        ops.zeros((batch, m + 1), "int32"),
        ops.zeros((batch, m + 1), "int32"),
    )
    _, _, p, _ = ops.fori_loop(1, n + 1, add_row, state)
    # p[b, j] is the row (1-based) given column j; invert to a column per row.
    matches = p[:, 1:, None] == ops.arange(1, n + 1, dtype="int32")[None, None, :]  # (B, m, n)
    query_index = ops.cast(ops.argmax(ops.cast(matches, "int32"), axis=1), "int32")  # (B, n)
    if target_mask is not None:
        query_index = ops.where(mask, query_index, -ops.ones_like(query_index))
    return query_index


MATCHING_METHODS = ("host", "ops")


def linear_sum_assignment(cost, target_mask=None, method="host"):
    """The exact assignment of `cost (B, Q, T)`, through either path, in any context.

    `method="host"` (the default, chosen from `benchmarks/bench_matching.py`:
    10-300x faster on CPU) runs scipy on the host, through the backend's
    callback when traced (`keras_vit.backend.host_callback`); `"ops"` runs
    `linear_sum_assignment_ops` in the graph (no host round trip, e.g. on TPU).

    Returns:
        int32 tensor `(B, T)`: the query matched to each target, -1 for padding.
    """
    if method not in MATCHING_METHODS:
        raise ValueError(f"method must be one of {MATCHING_METHODS}. Received: method={method!r}")
    if method == "ops":
        return linear_sum_assignment_ops(cost, target_mask)
    from keras_vit.backend.host_callback import host_call

    cost = ops.convert_to_tensor(cost)
    _check(cost, None)  # the shape first: the mask below reads cost.shape[2]
    if target_mask is None:
        target_mask = ops.ones((ops.shape(cost)[0], cost.shape[2]), "bool")
    _check(cost, target_mask)
    values = _concrete(cost)
    if values is not None:  # eager: scipy directly, its errors as they are
        return ops.convert_to_tensor(linear_sum_assignment_host(values, _concrete(target_mask)), "int32")
    return host_call(
        linear_sum_assignment_host,
        [cost, ops.cast(target_mask, "bool")],
        (cost.shape[0], cost.shape[2]),
        "int32",
    )
