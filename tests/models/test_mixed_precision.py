"""Every task trains in mixed precision: `mixed_float16` (Keras wraps the
optimizer in a LossScaleOptimizer, whose dynamic scale starts at 2**15 and
halves on each overflowing step, so the first steps may be skipped) and
`mixed_bfloat16`. Weights stay float32, DETR's outputs are float32 for its
matching (its loss terms: tests/models/test_detr.py), and 20 steps on one
batch give finite losses and lower the batch's loss."""

import keras
import numpy as np
import pytest

from keras_vit import DETR
from keras_vit import DPTDepthEstimator
from keras_vit import DPTImageSegmenter
from keras_vit import ResNetBackbone
from keras_vit import Segmenter
from keras_vit import ViT
from keras_vit import ViTBackbone
from keras_vit.data.shapes import make_shapes

STEPS = 20


def _vit_backbone(policy, size=16):
    return ViTBackbone(
        image_shape=(size, size, 3), patch_size=4, hidden_dim=16, num_layers=2, num_heads=2, mlp_dim=32, dtype=policy,
    )


def _dense_arrangement():
    return dict(taps=["block_0", "block_1", "block_2", "block_3"], neck_widths=(8, 8, 16, 16), fusion_width=8)


def _case(task, policy, rng):
    images = rng.uniform(0, 255, size=(4, 16, 16, 3)).astype("float32")
    if task == "vit":
        return ViT(_vit_backbone(policy), num_classes=3, dtype=policy), images, rng.integers(0, 3, size=(4,))
    if task == "swin":
        from keras_vit import Swin
        from keras_vit import SwinBackbone

        backbone = SwinBackbone(image_shape=(16, 16, 3), hidden_dim=8, depths=(2, 1), num_heads=(2, 2), window_size=2, dtype=policy)
        return Swin(backbone, num_classes=3, dtype=policy), images, rng.integers(0, 3, size=(4,))
    if task == "detr":
        shapes, targets = make_shapes(4, 32, max_objects=2, seed=1)
        backbone = ResNetBackbone((1, 1, 1, 1), stem_filters=8, stage_filters=(8, 8, 16, 16), dtype=policy)
        model = DETR(
            backbone, num_classes=3, num_queries=4, hidden_dim=16, num_heads=2, encoder_layers=1, decoder_layers=1,
            ffn_dim=16, dropout_rate=0.0, bounding_box_format="xyxy", dtype=policy,
        )
        return model, shapes.astype("float32"), {"labels": targets["labels"], "boxes": targets["boxes"]}
    backbone = ViTBackbone(
        image_shape=(16, 16, 3), patch_size=4, hidden_dim=16, num_layers=4, num_heads=2, mlp_dim=32, dtype=policy,
    )
    if task == "dpt_depth":
        model = DPTDepthEstimator(backbone, **_dense_arrangement(), dtype=policy)
        # A positive output, so that the final ReLU is not dead from the
        # first steps (it is, at random init, in a model this small, in
        # float32 too); not constant, which the scale-and-shift-invariant
        # loss cannot align.
        head = model.get_layer("depth_head").conv3
        head.kernel.assign(rng.normal(0, 0.05, size=head.kernel.shape).astype("float32"))
        head.bias.assign(np.full((1,), 0.5, "float32"))
        size = tuple(model(images[:1]).shape[1:3])
        return model, images, rng.uniform(0.5, 3.0, size=(4, *size)).astype("float32")
    if task == "dpt_segmentation":
        model = DPTImageSegmenter(backbone, num_classes=3, **_dense_arrangement(), dropout_rate=0.0, dtype=policy)
    else:
        model = Segmenter(backbone, num_classes=3, decoder_heads=1, dtype=policy)
    outputs = model(images[:1])
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs
    return model, images, rng.integers(0, 3, size=(4, *logits.shape[1:3])).astype("int32")


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("task", ["vit", "swin", "detr", "dpt_depth", "dpt_segmentation", "segmenter"])
def test_every_task_trains_in_mixed_precision(task, policy):
    if policy == "mixed_bfloat16" and task != "segmenter":
        pytest.skip("mixed_bfloat16: tests/models/test_vit.py, test_detr.py, test_dpt.py")
    if policy == "mixed_float16" and keras.backend.backend() == "jax":
        import jax

        if jax.devices()[0].platform == "cpu":
            pytest.skip("XLA:CPU has no float16 matmul (dot_general precision F16_F16_F32 is not supported on CPU)")
    rng = np.random.default_rng(0)
    model, x, y = _case(task, policy, rng)
    assert all(v.dtype == "float32" for v in model.weights)
    outputs = model(x[:2])
    # DETR's logits and boxes feed the matching in float32; the other heads
    # give the compute dtype, as keras-hub's do (Keras losses cast to float32).
    expected = "float32" if task == "detr" else policy.split("_")[1]
    for value in keras.tree.flatten(outputs):
        assert keras.backend.standardize_dtype(value.dtype) == expected
    model.compile(optimizer=keras.optimizers.Adam(3e-4))  # each task's default loss
    if policy == "mixed_float16":
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    before = float(model.test_on_batch(x, y, return_dict=True)["loss"])
    losses = [float(model.train_on_batch(x, y, return_dict=True)["loss"]) for _ in range(STEPS)]
    assert np.all(np.isfinite(losses)), losses
    # The batch's loss without dropout (training losses are noisy under it).
    after = float(model.test_on_batch(x, y, return_dict=True)["loss"])
    assert after < before, (before, after, losses)
