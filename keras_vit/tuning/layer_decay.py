"""Layer-wise learning-rate decay (BEiT, MAE fine-tuning) for any Keras
optimizer, and the ViT paper's fine-tuning optimizer.

Keras optimizers have one learning rate for all variables and no parameter
groups, so this is written here: the optimizer's class is subclassed once
(keeping each backend's own update kernels: torch's multi-tensor Adam,
TensorFlow's distributed update) and its update runs once per group of
variables that share a scale, with the learning rate times that scale. The
learning rate is scaled, not the gradient (they differ under Adam), and so is
the decoupled weight decay, as torch's AdamW does per parameter group.
"""

import keras

_CLASSES = {}


def layer_ids(model):
    """`{variable path: layer id}` with timm's ids for a depth-L ViT encoder
    (`timm.optim._param_groups.param_groups_layer_decay`): the patch
    embedding (and a hybrid's CNN), position embedding, class token and
    VPT-shallow prompts 0; block i (with its adapter and the deep prompts
    before it) i + 1; the final norm L, as the last block; everything
    outside the encoder (the head) L + 1."""
    from keras_vit.backbones.mvit_backbone import MViTBackbone
    from keras_vit.backbones.swin_backbone import SwinBackbone
    from keras_vit.backbones.vit_backbone import ViTBackbone

    backbone = getattr(model, "backbone", None)
    if isinstance(backbone, SwinBackbone):
        return _swin_layer_ids(model, backbone)
    if isinstance(backbone, MViTBackbone):
        return _mvit_layer_ids(model, backbone)
    if not isinstance(backbone, ViTBackbone):
        raise TypeError(
            "layer_decay needs a task on a ViT encoder (ViT, DPT*, Segmenter) or a Swin. "
            f"Received: {type(model).__name__} with backbone {type(backbone).__name__}"
        )
    depth = backbone.num_layers
    ids = {v.path: depth + 1 for v in model.weights}
    for layer in backbone.layers:
        name = layer.name
        if name.startswith("block_"):
            layer_id = int(name.split("_")[1]) + 1
        elif name.startswith("prompts_"):
            layer_id = int(name.split("_")[1]) + 1 if int(name.split("_")[1]) > 0 else 0
        elif name == "encoder_norm":
            layer_id = depth
        else:
            layer_id = 0
        for variable in layer.weights:
            ids[variable.path] = layer_id
    return ids


def _swin_layer_ids(model, backbone):
    """timm's ids for a Swin (its `group_matcher`): the patch embedding 0;
    block j of stage s `1 +` its index over all blocks, the merging that
    starts a stage with that stage's first block; the final norm with the
    last block; the head after them."""
    total = sum(backbone.depths)
    ids = {v.path: total + 1 for v in model.weights}
    first = {}
    index = 0
    for stage, depth in enumerate(backbone.depths, start=1):
        first[stage] = index + 1
        for block in range(depth):
            index += 1
            for variable in backbone.get_layer(f"stage_{stage}_block_{block}").weights:
                ids[variable.path] = index
        if stage > 1:
            for variable in backbone.get_layer(f"stage_{stage}_merging").weights:
                ids[variable.path] = first[stage]
    for name, layer_id in (("patch_embedding", 0), ("patch_norm", 0), ("final_norm", total)):
        for variable in backbone.get_layer(name).weights:
            ids[variable.path] = layer_id
    return ids


def _mvit_layer_ids(model, backbone):
    """timm's ids for an MViTv2 (its `group_matcher` groups whole stages):
    the patch embedding 0, stage s s, the final norm with the last stage,
    the head after them."""
    stages = len(backbone.depths)
    ids = {v.path: stages + 1 for v in model.weights}
    for variable in backbone.get_layer("patch_embedding").weights:
        ids[variable.path] = 0
    for stage, depth in enumerate(backbone.depths, start=1):
        for block in range(depth):
            for variable in backbone.get_layer(f"stage_{stage}_block_{block}").weights:
                ids[variable.path] = stage
    for variable in backbone.get_layer("final_norm").weights:
        ids[variable.path] = stages
    return ids


def head_layer_id(backbone):
    """The head's layer id (L + 1 for L encoder groups), whether or not the model has a head."""
    if hasattr(backbone, "window_size"):  # Swin: one id per block
        return sum(backbone.depths) + 1
    if hasattr(backbone, "kv_stride"):  # MViTv2: one id per stage
        return len(backbone.depths) + 1
    return backbone.num_layers + 1


def no_weight_decay(model):
    """The variables timm's `param_groups_layer_decay` gives weight decay 0:
    every weight of rank <= 1 (biases, norms, LayerScale), the ViT's
    position embedding and class token, Swin's relative position tables."""
    skip = []
    backbone = getattr(model, "backbone", None)
    named = set()
    for name in ("position_embedding", "class_token"):
        try:
            named |= {id(v) for v in backbone.get_layer(name).weights}
        except (ValueError, AttributeError):
            pass
    for variable in model.weights:
        # Swin's relative position bias tables (timm's no_weight_decay_keywords), MViTv2's relative positions.
        if len(variable.shape) <= 1 or id(variable) in named or variable.name in (
            "relative_position_bias_table", "rel_pos_h", "rel_pos_w"
        ):
            skip.append(variable)
    return skip


def layer_decay(optimizer, model, decay, weight_decay_exclusions=True):
    """A copy of `optimizer` that gives each weight of `model` the learning
    rate `lr * decay ** (L + 1 - layer_id)` (see `layer_ids`), as timm's
    `create_optimizer_v2(..., layer_decay=decay)`.

    Args:
        optimizer: a Keras optimizer (not yet built), e.g. `AdamW`; its
            learning rate may be a schedule.
        model: the keras_vit task it will train (ViT, DPT*, Segmenter, Swin).
        decay: float in (0, 1]; 1 changes nothing.
        weight_decay_exclusions: bool; exclude biases, norms, the position
            embedding and the class token from weight decay, as timm does.

    Returns:
        A new optimizer of a subclass of `optimizer`'s class, with the same
        config. Pass it to `compile`.

    Example:
    >>> import keras_vit
    >>> model = keras_vit.ViT(keras_vit.ViTBackbone(image_shape=(30, 30, 3), patch_size=3,
    ...     hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=37), num_classes=5)
    >>> optimizer = layer_decay(keras.optimizers.AdamW(1e-3), model, decay=0.75)
    >>> round(optimizer.lr_scale(model.backbone.get_layer("patch_embedding").weights[0]), 4)  # 0.75 ** 3
    0.4219
    """
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay <= 1:
        raise ValueError(f"decay must be a float in (0, 1], e.g. 0.75. Received: decay={decay!r}")
    ids = layer_ids(model)
    top = head_layer_id(model.backbone)
    wrapped = scaled_learning_rates(optimizer, {path: float(decay) ** (top - i) for path, i in ids.items()})
    if weight_decay_exclusions and getattr(wrapped, "weight_decay", None):
        wrapped.exclude_from_weight_decay(var_list=no_weight_decay(model))
    return wrapped


def scaled_learning_rates(optimizer, scales):
    """A copy of `optimizer` that gives each variable the learning rate
    `lr * scales[variable.path]` (1 for paths not listed), its decoupled
    weight decay included: parameter groups for Keras.

    Args:
        optimizer: a Keras optimizer, not yet built.
        scales: `{variable.path: float}`.

    Returns:
        A new optimizer of a subclass of `optimizer`'s class, same config.
    """
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(f"optimizer must be a keras.optimizers.Optimizer. Received: {type(optimizer).__name__}")
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        raise TypeError("Pass the inner optimizer; compile() wraps it in a LossScaleOptimizer when needed.")
    if optimizer.built:
        raise ValueError("optimizer is already built. Pass a fresh optimizer (before compile or fit).")
    base = type(optimizer)
    if issubclass(base, _LayerDecayMixin):
        raise ValueError("optimizer already scales its learning rates; pass the plain optimizer.")
    cls = _CLASSES.get(base)
    if cls is None:
        cls = type(f"Scaled{base.__name__}", (_LayerDecayMixin, base), {})
        _CLASSES[base] = cls
    wrapped = cls.from_config(optimizer.get_config())
    wrapped._keras_vit_scales = {str(path): float(scale) for path, scale in scales.items()}
    wrapped._keras_vit_scale = 1.0
    return wrapped


class _LayerDecayMixin:
    """Runs the optimizer's update (and its decoupled weight decay) once per
    group of variables that share a learning-rate scale."""

    def lr_scale(self, variable):
        return self._keras_vit_scales.get(variable.path, 1.0)

    def _groups(self, *lists):
        groups = {}
        for items in zip(*lists):
            groups.setdefault(self.lr_scale(items[-1]), []).append(items)
        return groups

    def _get_current_learning_rate(self):
        # Scaled only while one group's weight decay runs (below); the
        # update's learning rate is scaled explicitly.
        learning_rate = super()._get_current_learning_rate()
        scale = getattr(self, "_keras_vit_scale", 1.0)
        return learning_rate if scale == 1.0 else learning_rate * scale

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        for scale, items in self._groups(grads, trainable_variables).items():
            group_grads, group_variables = (list(x) for x in zip(*items))
            super()._backend_update_step(group_grads, group_variables, learning_rate * scale)

    def _apply_weight_decay(self, variables):
        if self.weight_decay is None:
            return
        for scale, items in self._groups(variables).items():
            group = [item[0] for item in items if self._use_weight_decay(item[0])]
            if not group:
                # torch's multi-tensor weight decay refuses an empty list (a
                # group of biases and norms only, all excluded).
                continue
            self._keras_vit_scale = scale
            try:
                super()._apply_weight_decay(group)
            finally:
                self._keras_vit_scale = 1.0

    def get_config(self):
        return {**super().get_config(), "layer_scales": dict(self._keras_vit_scales)}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        scales = config.pop("layer_scales", {})
        optimizer = super().from_config(config, custom_objects=custom_objects)
        optimizer._keras_vit_scales = dict(scales)
        optimizer._keras_vit_scale = 1.0
        return optimizer


def vit_finetuning_optimizer(total_steps, learning_rate=0.01, warmup_steps=None):
    """The ViT paper's fine-tuning optimiser: SGD with momentum 0.9, no
    weight decay, gradient clipping at global norm 1, and a cosine decay of
    the learning rate after a linear warm-up (Keras' `CosineDecay`).

    Args:
        total_steps: int, the training steps of the whole run.
        learning_rate: the peak learning rate (the paper sweeps 0.001 to
            0.03).
        warmup_steps: int; default 5% of `total_steps` (at least 1).
    """
    from keras_vit.utils.validation import check_positive_int

    total_steps = check_positive_int("total_steps", total_steps)
    if warmup_steps is None:
        warmup_steps = max(1, total_steps // 20)
    if isinstance(warmup_steps, bool) or not isinstance(warmup_steps, int) or not 0 <= warmup_steps < total_steps:
        raise ValueError(
            f"warmup_steps must be an int in [0, total_steps={total_steps}). Received: warmup_steps={warmup_steps!r}"
        )
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup_steps else learning_rate,
        decay_steps=total_steps - warmup_steps,
        warmup_target=learning_rate if warmup_steps else None,
        warmup_steps=warmup_steps,
    )
    return keras.optimizers.SGD(learning_rate=schedule, momentum=0.9, global_clipnorm=1.0)


def detr_finetuning_optimizer(model, learning_rate=1e-4, backbone_learning_rate=1e-5, weight_decay=1e-4, clipnorm=0.1):
    """DETR's fine-tuning optimiser (facebookresearch/detr `main.py`): AdamW
    with weight decay 1e-4, gradient clipping at global norm 0.1, learning
    rate 1e-4 for the transformer and heads and 1e-5 for the ResNet backbone.

    Args:
        model: the `keras_vit.DETR` it will train (its backbone's weights get
            `backbone_learning_rate`).
        learning_rate: float or a schedule; the backbone's follows it at the
            ratio `backbone_learning_rate / learning_rate`.
    """
    base = learning_rate if isinstance(learning_rate, (int, float)) else learning_rate.get_config().get(
        "initial_learning_rate", None
    )
    if not base:
        raise ValueError("learning_rate must be a positive float or a schedule with an initial_learning_rate.")
    ratio = float(backbone_learning_rate) / float(base)
    optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay, global_clipnorm=clipnorm)
    return scaled_learning_rates(optimizer, {v.path: ratio for v in model.backbone.weights})
