"""Both matching paths against scipy.optimize.linear_sum_assignment, and each other."""

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

from keras_vit.ops.linear_assignment import linear_sum_assignment as keras_linear_sum_assignment
from keras_vit.ops.linear_assignment import linear_sum_assignment_host
from keras_vit.ops.linear_assignment import linear_sum_assignment_ops
from layer_checks import to_np


def _total(cost, query_index, mask):
    """Cost of an assignment; checks that it is one (distinct queries, every valid target)."""
    totals = []
    for b in range(cost.shape[0]):
        valid = np.flatnonzero(mask[b])
        chosen = query_index[b, valid]
        assert np.all(chosen >= 0) and len(set(chosen.tolist())) == len(valid)
        assert np.all(query_index[b, ~mask[b]] == -1)
        totals.append(cost[b, chosen, valid].sum())
    return np.array(totals)


def _optimum(cost, mask):
    out = []
    for b in range(cost.shape[0]):
        valid = np.flatnonzero(mask[b])
        rows, cols = linear_sum_assignment(cost[b][:, valid])
        out.append(cost[b][:, valid][rows, cols].sum())
    return np.array(out)


CASES = {
    "square": (2, 6, 6),
    "tall": (3, 20, 7),  # DETR's shape: more queries than targets
    "one_target": (2, 9, 1),
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("path", ["host", "ops"])
def test_cost_equals_scipy(name, path):
    rng = np.random.default_rng(sum(map(ord, name)))
    cost = rng.uniform(size=CASES[name]).astype("float32")
    mask = np.ones(cost.shape[::2], bool)
    fn = linear_sum_assignment_host if path == "host" else linear_sum_assignment_ops
    query_index = to_np(fn(cost, mask))
    np.testing.assert_allclose(_total(cost, query_index, mask), _optimum(cost, mask), rtol=1e-5)


@pytest.mark.parametrize("path", ["host", "ops"])
def test_padded_targets_and_empty_images(path):
    rng = np.random.default_rng(3)
    cost = rng.normal(size=(3, 12, 5)).astype("float32")
    mask = np.array([[1, 1, 0, 1, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    fn = linear_sum_assignment_host if path == "host" else linear_sum_assignment_ops
    query_index = to_np(fn(cost, mask))
    assert query_index.shape == (3, 5) and np.all(query_index[1] == -1)
    np.testing.assert_allclose(_total(cost, query_index, mask), _optimum(cost, mask), rtol=1e-5, atol=1e-5)


def test_tied_costs_give_the_optimal_total():
    cost = np.tile(np.array([[1.0, 2.0, 2.0]], "float32"), (4, 1))[None]  # (1, 4, 3), many ties
    cost = np.concatenate([cost, np.ones((1, 4, 3), "float32")])
    mask = np.ones((2, 3), bool)
    for fn in (linear_sum_assignment_host, linear_sum_assignment_ops):
        np.testing.assert_allclose(_total(cost, to_np(fn(cost, mask)), mask), _optimum(cost, mask))


def test_paths_agree_and_batch_equals_singles():
    rng = np.random.default_rng(7)
    cost = rng.uniform(size=(4, 15, 6)).astype("float32")
    mask = rng.uniform(size=(4, 6)) > 0.3
    host = linear_sum_assignment_host(cost, mask)
    graph = to_np(linear_sum_assignment_ops(cost, mask))
    np.testing.assert_allclose(_total(cost, graph, mask), _total(cost, host, mask), rtol=1e-5)
    for b in range(4):
        single = to_np(linear_sum_assignment_ops(cost[b : b + 1], mask[b : b + 1]))
        np.testing.assert_allclose(_total(cost[b : b + 1], single, mask[b : b + 1]), _total(cost[b : b + 1], host[b : b + 1], mask[b : b + 1]), rtol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match="exceeds num_queries"):
        linear_sum_assignment_ops(np.zeros((1, 2, 3), "float32"))
    with pytest.raises(ValueError, match="only 2 predictions"):
        linear_sum_assignment_host(np.zeros((1, 2, 3), "float32"))
    with pytest.raises(ValueError, match=r"cost must have shape \(batch"):
        linear_sum_assignment_host(np.zeros((2, 3), "float32"))
    with pytest.raises(ValueError, match="target_mask must have shape"):
        linear_sum_assignment_ops(np.zeros((1, 4, 3), "float32"), np.ones((1, 4), bool))
    # The shape is checked first on every path (the default path read cost.shape[2]: IndexError).
    for method in ("host", "ops"):
        with pytest.raises(ValueError, match=r"cost must have shape \(batch"):
            keras_linear_sum_assignment(np.zeros((2, 3), "float32"), method=method)
    # Eagerly, non-finite costs of valid targets are refused on both paths,
    # naming the images (the ops path returned an assignment silently).
    cost = np.zeros((3, 4, 2), "float32")
    cost[1, 2, 0] = np.nan
    cost[2, 0, 1] = np.inf
    for method in ("host", "ops"):
        with pytest.raises(ValueError, match=r"NaN or infinite values for image\(s\) \[1, 2\]"):
            keras_linear_sum_assignment(cost, method=method)
    # ... but not those of padded targets.
    mask = np.array([[1, 1], [0, 1], [1, 0]], bool)
    for method in ("host", "ops"):
        assert to_np(keras_linear_sum_assignment(cost, mask, method=method)).shape == (3, 2)


def test_ops_path_runs_inside_a_compiled_function():
    """The in-graph path must trace: jax.jit and tf.function (torch runs eagerly)."""
    import keras

    rng = np.random.default_rng(11)
    cost = rng.uniform(size=(3, 10, 4)).astype("float32")
    mask = np.array([[1, 1, 1, 0], [1, 0, 0, 0], [1, 1, 1, 1]], bool)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        compiled = jax.jit(linear_sum_assignment_ops)
    elif backend == "tensorflow":
        import tensorflow as tf

        compiled = tf.function(linear_sum_assignment_ops)
    else:
        pytest.skip("torch runs keras.ops loops eagerly")
    query_index = to_np(compiled(cost, mask))
    np.testing.assert_allclose(_total(cost, query_index, mask), _optimum(cost, mask), rtol=1e-5)
