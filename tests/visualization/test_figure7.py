"""Figure 7 numbers on hand-made inputs, and against scikit-learn where it has them."""

import itertools
import math

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from keras_vit.visualization import attention_rollout  # noqa: E402
from keras_vit.visualization import mean_attention_distance  # noqa: E402
from keras_vit.visualization import patch_distances  # noqa: E402
from keras_vit.visualization import patch_embedding_components  # noqa: E402
from keras_vit.visualization import plot_mean_attention_distance  # noqa: E402
from keras_vit.visualization import plot_patch_embedding_components  # noqa: E402
from keras_vit.visualization import plot_position_embedding_similarity  # noqa: E402
from keras_vit.visualization import position_embedding_similarity  # noqa: E402


def test_patch_distances_on_a_2x2_grid():
    d = patch_distances((2, 2), 4)
    # Patches (0,0), (0,1), (1,0), (1,1), centres 4 px apart.
    expected = np.array(
        [[0, 4, 4, 4 * math.sqrt(2)], [4, 0, 4 * math.sqrt(2), 4], [4, 4 * math.sqrt(2), 0, 4], [4 * math.sqrt(2), 4, 4, 0]]
    )
    np.testing.assert_allclose(d, expected, atol=1e-12)


def test_uniform_attention_has_the_mean_pairwise_distance():
    h, w, patch = 3, 4, 16
    n = h * w
    uniform = np.full((2, 3, 1 + n, 1 + n), 1.0 / (1 + n))  # class token included
    cells = list(itertools.product(range(h), range(w)))
    expected = np.mean([math.dist((16 * a, 16 * b), (16 * c, 16 * d)) for (a, b) in cells for (c, d) in cells])
    out = mean_attention_distance(uniform, (h, w), patch)
    assert out.shape == (3,)
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_self_attention_only_has_zero_distance_and_layers_stack():
    n = 1 + 4
    identity = np.broadcast_to(np.eye(n), (1, 2, n, n))
    out = mean_attention_distance({"block_0": identity, "block_1": identity}, (2, 2), 8)
    assert out.shape == (2, 2)
    np.testing.assert_allclose(out, 0.0)


def test_pca_matches_scikit_learn():
    decomposition = pytest.importorskip("sklearn.decomposition")
    kernel = np.random.default_rng(0).normal(size=(4, 4, 3, 40))
    components, explained = patch_embedding_components(kernel, num_components=5)
    reference = decomposition.PCA(n_components=5).fit(kernel.reshape(48, 40).T)
    assert components.shape == (5, 4, 4, 3)
    for ours, theirs in zip(components.reshape(5, -1), reference.components_):
        np.testing.assert_allclose(abs(ours @ theirs), 1.0, atol=1e-8)  # same up to sign
    np.testing.assert_allclose(explained, reference.explained_variance_ratio_, rtol=1e-8)


def test_pca_recovers_planted_patterns():
    rng = np.random.default_rng(1)
    patterns = np.linalg.qr(rng.normal(size=(27, 2)))[0].T  # two orthonormal 3x3x3 patches
    weights = rng.normal(size=(64, 2)) * [5.0, 1.0]
    kernel = (weights @ patterns).T.reshape(3, 3, 3, 64)
    components, explained = patch_embedding_components(kernel, num_components=2)
    np.testing.assert_allclose(explained.sum(), 1.0, atol=1e-10)
    np.testing.assert_allclose(abs(components[0].ravel() @ patterns[0]), 1.0, atol=1e-2)


def test_position_similarity_matches_scikit_learn():
    pairwise = pytest.importorskip("sklearn.metrics.pairwise")
    table = np.random.default_rng(0).normal(size=(1, 1 + 6, 8))
    out = position_embedding_similarity(table, (2, 3))
    assert out.shape == (2, 3, 2, 3)
    expected = pairwise.cosine_similarity(table[0, 1:]).reshape(2, 3, 2, 3)
    np.testing.assert_allclose(out, expected, atol=1e-12)
    np.testing.assert_allclose(out[1, 2, 1, 2], 1.0)


def test_rollout_hand_cases():
    n = 1 + 4
    uniform = {"block_0": np.full((1, 2, n, n), 1.0 / n)}
    # One layer, r = 0.5: the class row gives 0.5 / N to every patch.
    np.testing.assert_allclose(attention_rollout(uniform, (2, 2)), np.full((1, 2, 2), 0.5 / n))
    identity = {f"block_{i}": np.broadcast_to(np.eye(n), (1, 3, n, n)) for i in range(3)}
    np.testing.assert_allclose(attention_rollout(identity, (2, 2)), 0.0)
    # Two layers of "everything attends to patch 1": all mass ends there.
    focus = np.zeros((1, 1, n, n))
    focus[..., 1] = 1.0
    out = attention_rollout({"block_0": focus, "block_1": focus}, (2, 2), residual_weight=0.0)
    np.testing.assert_allclose(out[0].ravel(), [1, 0, 0, 0])


def test_bad_arguments():
    with pytest.raises(ValueError, match="kernel must have shape"):
        patch_embedding_components(np.zeros((3, 3, 8)))
    with pytest.raises(ValueError, match="head_fusion"):
        attention_rollout({"block_0": np.zeros((1, 1, 5, 5))}, (2, 2), head_fusion="median")
    with pytest.raises(ValueError, match="N = num_prefix_tokens"):
        mean_attention_distance(np.zeros((1, 1, 6, 6)), (2, 2), 16)
    with pytest.raises(ValueError, match="table has 5 rows"):
        position_embedding_similarity(np.zeros((5, 4)), (3, 3))


def test_plots_return_figures():
    rng = np.random.default_rng(0)
    figure = plot_patch_embedding_components(rng.normal(size=(4, 4, 3, 32)), num_components=14)
    assert len(figure.axes) == 14
    figure = plot_position_embedding_similarity(rng.normal(size=(1, 1 + 12, 8)), (3, 4))
    assert len(figure.axes) == 12 + 1  # tiles + colour bar
    figure = plot_mean_attention_distance(rng.uniform(size=(6, 4)))
    assert len(figure.axes[0].collections) == 4
