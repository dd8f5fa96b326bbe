import os

import keras
import numpy as np
import pytest

from keras_vit import ViT
from keras_vit import ViTBackbone
from keras_vit import ViTImagePreprocessor
from layer_checks import to_np
from training_utils import gradients


def _model(config, **kwargs):
    return ViT(ViTBackbone(**config), **kwargs)


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 30, 30, 3)).astype("float32")
    # A learnable rule: which colour channel is brightest on average.
    y = x.mean(axis=(1, 2)).argmax(-1).astype("int32")
    return x, y


def test_logits_shape_and_pooling(tiny_config):
    x = np.zeros((2, 30, 30, 3), "float32")
    assert tuple(_model(tiny_config, num_classes=7)(x).shape) == (2, 7)
    assert tuple(_model(tiny_config, num_classes=0)(x).shape) == (2, 32)
    gap = _model(tiny_config, num_classes=7, pooling="gap", representation_size=16)
    assert tuple(gap(x).shape) == (2, 7)
    assert gap.get_layer("pre_logits").kernel.shape == (32, 16)


def test_every_trainable_weight_gets_a_gradient(tiny_config):
    tiny_config.update(layer_scale_init=0.1)
    model = _model(tiny_config, num_classes=3, representation_size=16)
    x, y = _data(4)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    grads = gradients(model, x, y, loss_fn)
    assert len(grads) == len(model.trainable_variables) > 0
    for variable, grad in zip(model.trainable_variables, grads):
        grad = to_np(grad)
        assert np.all(np.isfinite(grad)), variable.path
        assert np.abs(grad).max() > 0, f"no gradient for {variable.path}"


def test_fit_lowers_the_loss(tiny_config):
    model = _model(tiny_config, num_classes=3)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    x, y = _data(32)
    before = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    model.fit(x, y, epochs=8, batch_size=8, verbose=0)
    after = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    assert np.isfinite(after) and after < 0.8 * before


def test_training_with_regularisation_runs(tiny_config):
    tiny_config.update(dropout_rate=0.1, attention_dropout_rate=0.1, drop_path_rate=0.1)
    model = _model(tiny_config, num_classes=3, head_dropout_rate=0.1)
    model.compile()
    x, y = _data(8)
    history = model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_mixed_bfloat16(tiny_config):
    x, y = _data(8)
    reference = _model(tiny_config, num_classes=3)
    mixed = ViT(ViTBackbone(**tiny_config, dtype="mixed_bfloat16"), num_classes=3, dtype="mixed_bfloat16")
    mixed.set_weights(reference.get_weights())
    assert all(v.dtype == "float32" for v in mixed.weights)
    out = mixed(x)
    assert keras.backend.standardize_dtype(out.dtype) == "bfloat16"
    expected = to_np(reference(x))
    np.testing.assert_allclose(to_np(out).astype("float32"), expected, atol=0.1)
    mixed.compile()
    history = mixed.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert np.isfinite(history.history["loss"][-1])


def test_keras_save_and_load(tiny_config, tmp_path):
    preprocessor = ViTImagePreprocessor(30)
    model = _model(tiny_config, num_classes=4, representation_size=8, preprocessor=preprocessor)
    x, _ = _data(2)
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, ViT) and isinstance(restored.backbone, ViTBackbone)
    assert restored.preprocessor.get_config() == preprocessor.get_config()
    np.testing.assert_allclose(to_np(restored(x)), to_np(model(x)), atol=1e-6)


def test_every_layer_is_built_after_construction(tiny_config):
    """An unbuilt sublayer makes Keras's JAX predict_on_batch re-run the model
    eagerly on every call to build it."""
    model = _model(tiny_config, num_classes=3, preprocessor=ViTImagePreprocessor(30))
    assert [layer.name for layer in model._flatten_layers() if not layer.built] == []


def test_compile_defaults(tiny_config):
    model = _model(tiny_config, num_classes=3)
    model.compile()
    assert isinstance(model.optimizer, keras.optimizers.AdamW)
    assert model.loss.from_logits


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"num_classes": -1}, ValueError, "num_classes"),
        ({"pooling": "max"}, ValueError, "pooling must be one of"),
        ({"representation_size": 0}, ValueError, "representation_size"),
        ({"head_dropout_rate": 2.0}, ValueError, "head_dropout_rate"),
    ],
)
def test_bad_arguments(tiny_config, kwargs, error, match):
    with pytest.raises(error, match=match):
        _model(tiny_config, **kwargs)


def test_backbone_type_is_checked():
    with pytest.raises(TypeError, match="backbone must be a keras_vit.ViTBackbone"):
        ViT(keras.Sequential())


def test_bad_input_shape(tiny_config):
    model = _model(tiny_config, num_classes=3)
    with pytest.raises(ValueError, match="must have 3 channels"):
        model(np.zeros((1, 30, 30, 4), "float32"))
    with pytest.raises(ValueError, match="must be 30x30 pixels"):
        model.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0)
