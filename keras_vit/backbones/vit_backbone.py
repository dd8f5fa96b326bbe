import keras

from keras_vit.backbones.backbone import Backbone
from keras_vit.layers.bottleneck_block import BottleneckBlock
from keras_vit.layers.class_token import ClassToken
from keras_vit.layers.patch_embedding import PatchEmbedding
from keras_vit.layers.position_embedding import PositionEmbedding
from keras_vit.layers.resnet_stem import ResNetStem
from keras_vit.layers.transformer_encoder_block import TransformerEncoderBlock
from keras_vit.tuning.prompts import PromptTokenRemoval
from keras_vit.tuning.prompts import VisualPrompts
from keras_vit.utils.serialization import with_dtype_policy
from keras_vit.utils.validation import check_feature_names
from keras_vit.utils.validation import check_image_batch
from keras_vit.utils.validation import check_image_shape
from keras_vit.utils.validation import check_model_kwargs
from keras_vit.utils.validation import check_non_negative_int
from keras_vit.utils.validation import check_pair
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate
from keras_vit.utils.validation import check_mesh_axes


@keras.saving.register_keras_serializable(package="keras_vit")
class ViTBackbone(Backbone, keras.Model):
    """Vision Transformer encoder (Dosovitskiy et al., 2021) as a functional model.

    images -> patch embedding -> [class token] -> + position embedding -> dropout
    -> `num_layers` pre-LayerNorm blocks -> final LayerNorm.

    Any image shape whose height and width are multiples of the patch size
    works, square or not. Features are published by name for dense heads:
    `"block_{i}"` is the token sequence after block `i` (before the final norm),
    `"encoder_norm"` the normalised output; hybrid models add the CNN feature
    maps `"stem"` (stride 4) and `"stage_{s}"` (`(B, H', W', C)`).

    With `hybrid_layers` the patches are cut from a ResNet feature map instead
    of the image (the paper's R50+ViT hybrid): a BiT stem (weight-standardised
    7x7 conv, GroupNorm, max-pool; stride 4), then one stage of bottleneck
    blocks per entry (256 * 2^s output channels, stride 2 from the second stage
    on), then the patch embedding on that map. `(3, 4, 9)` is R50+ViT-B/16's
    stride-16 layout (with `patch_size=1`); `()` keeps the stem alone. `feature_extractor(names)` returns a
    model that outputs them; `attention_maps(images)` also returns every
    block's attention probabilities.

    Args:
        image_shape: `(H, W, C)`, channels last.
        patch_size: int or `(ph, pw)`.
        hidden_dim: int, D.
        num_layers: int, number of blocks L.
        num_heads: int, H; must divide D.
        mlp_dim: int, MLP hidden width.
        dropout_rate: float in [0, 1), after the embeddings and in each block.
        attention_dropout_rate: float in [0, 1).
        drop_path_rate: float in [0, 1), stochastic depth of the last block; it
            grows linearly from 0 over the blocks, as in timm and DeiT.
        layer_scale_init: None or the initial LayerScale value.
        layer_norm_epsilon: float, 1e-6 (original ViT, timm) or 1e-12 (HF).
        gelu_approximate: bool, tanh GELU (original JAX ViT) instead of exact.
        qkv_bias: bool.
        use_class_token: bool; without it pool with `"gap"`.
        hybrid_layers: None for a plain ViT, or the number of bottleneck blocks
            per ResNet stage, e.g. `(3, 4, 9)`.
        num_prompts: int >= 0, Visual Prompt Tuning's P prompt tokens (Jia
            et al., 2022), placed after the position embedding between the
            class token and the patches and removed after the last block, so
            the output and every published feature keep the layout without
            prompts. 0: none. Set by `keras_vit.tuning.prepare(model, "vpt")`.
        deep_prompts: bool, VPT-deep: every block after the first gets its
            own prompts, replacing the previous block's prompt outputs.
        prompt_dropout: float in [0, 1), dropout on the prompts in training.
        adapter_reduction: None, or r: a bottleneck adapter of width D / r
            after every block's MLP (`keras_vit.tuning.prepare(model, "adapter")`).
        dtype: dtype policy, e.g. `"mixed_bfloat16"`.

    Call arguments:
        images: `(B, H, W, C)` preprocessed images.

    Returns:
        `(B, P + h*w, D)` normalised tokens, P = 1 with a class token.

    Example:
    >>> backbone = ViTBackbone(image_shape=(30, 30, 3), patch_size=3,
    ...     hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=37)
    >>> tuple(backbone(keras.ops.zeros((2, 30, 30, 3))).shape)  # 100 patches + class
    (2, 101, 32)
    """

    def __init__(
        self,
        image_shape=(224, 224, 3),
        patch_size=16,
        hidden_dim=768,
        num_layers=12,
        num_heads=12,
        mlp_dim=3072,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        layer_scale_init=None,
        layer_norm_epsilon=1e-6,
        gelu_approximate=False,
        qkv_bias=True,
        use_class_token=True,
        hybrid_layers=None,
        num_prompts=0,
        deep_prompts=False,
        prompt_dropout=0.0,
        adapter_reduction=None,
        dtype=None,
        **kwargs,
    ):
        check_model_kwargs("ViTBackbone", kwargs)
        patch_size = check_pair("patch_size", patch_size)
        stem_stride = 1
        if hybrid_layers is not None:
            if not isinstance(hybrid_layers, (tuple, list)):
                raise TypeError(
                    "hybrid_layers must be None or a tuple of block counts such as "
                    f"(3, 4, 9). Received: hybrid_layers={hybrid_layers!r}"
                )
            hybrid_layers = tuple(check_positive_int("hybrid_layers", n) for n in hybrid_layers)
            stem_stride = 4 * 2 ** max(len(hybrid_layers) - 1, 0)
        image_shape = check_image_shape(image_shape, patch_size, stem_stride)
        hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        num_layers = check_positive_int("num_layers", num_layers)
        num_heads = check_positive_int("num_heads", num_heads)
        mlp_dim = check_positive_int("mlp_dim", mlp_dim)
        dropout_rate = check_rate("dropout_rate", dropout_rate)
        attention_dropout_rate = check_rate("attention_dropout_rate", attention_dropout_rate)
        drop_path_rate = check_rate("drop_path_rate", drop_path_rate)
        num_prompts = check_non_negative_int("num_prompts", num_prompts)
        prompt_dropout = check_rate("prompt_dropout", prompt_dropout)
        if deep_prompts and not num_prompts:
            raise ValueError(
                "deep_prompts=True needs prompts: set num_prompts > 0. "
                f"Received: num_prompts={num_prompts}, deep_prompts={deep_prompts!r}"
            )
        grid_size = (
            image_shape[0] // (patch_size[0] * stem_stride),
            image_shape[1] // (patch_size[1] * stem_stride),
        )
        num_prefix_tokens = 1 if use_class_token else 0

        # === Layers ===
        cnn_layers = []  # (layer, name of the feature it ends, or None)
        if hybrid_layers is not None:
            cnn_layers.append((ResNetStem(dtype=dtype, name="stem"), "stem"))
            for stage, depth in enumerate(hybrid_layers):
                for index in range(depth):
                    block = BottleneckBlock(
                        256 * 2**stage,
                        strides=2 if stage > 0 and index == 0 else 1,
                        project=index == 0,
                        dtype=dtype,
                        name=f"stage_{stage}_block_{index}",
                    )
                    cnn_layers.append((block, f"stage_{stage}" if index == depth - 1 else None))
        patch_embedding = PatchEmbedding(
            hidden_dim, patch_size, dtype=dtype, name="patch_embedding"
        )
        class_token = ClassToken(dtype=dtype, name="class_token") if use_class_token else None
        position_embedding = PositionEmbedding(
            grid_size, num_prefix_tokens, dtype=dtype, name="position_embedding"
        )
        embedding_dropout = keras.layers.Dropout(
            dropout_rate, dtype=dtype, name="embedding_dropout"
        )
        blocks = [
            TransformerEncoderBlock(
                hidden_dim,
                num_heads,
                mlp_dim,
                dropout_rate=dropout_rate,
                attention_dropout_rate=attention_dropout_rate,
                drop_path_rate=drop_path_rate * i / max(num_layers - 1, 1),
                layer_scale_init=layer_scale_init,
                layer_norm_epsilon=layer_norm_epsilon,
                gelu_approximate=gelu_approximate,
                qkv_bias=qkv_bias,
                adapter_reduction=adapter_reduction,
                dtype=dtype,
                name=f"block_{i}",
            )
            for i in range(num_layers)
        ]
        encoder_norm = keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, dtype=dtype, name="encoder_norm"
        )
        # prompts[i]: the prompt layer before block i (VPT-shallow: block 0 only).
        prompts, prompt_removal = {}, None
        if num_prompts:
            for i in range(num_layers if deep_prompts else 1):
                prompts[i] = VisualPrompts(
                    num_prompts, num_prefix_tokens, (patch_size[0] * stem_stride, patch_size[1] * stem_stride),
                    replace=i > 0, dropout_rate=prompt_dropout, dtype=dtype, name=f"prompts_{i}",
                )
            prompt_removal = PromptTokenRemoval(num_prompts, num_prefix_tokens, dtype=dtype, name="prompt_removal")

        # === Functional model ===
        inputs = keras.Input(shape=image_shape, name="images")
        features = {}
        x = inputs
        for layer, feature in cnn_layers:
            x = layer(x)
            if feature is not None:
                features[feature] = x
        x = patch_embedding(x)
        if class_token is not None:
            x = class_token(x)
        x = embedding_dropout(position_embedding(x))
        for i, block in enumerate(blocks):
            if i in prompts:
                x = prompts[i](x)
            x = block(x)
            features[block.name] = x if prompt_removal is None else prompt_removal(x)
        x = encoder_norm(features[blocks[-1].name])
        features["encoder_norm"] = x
        super().__init__(inputs=inputs, outputs=x, dtype=dtype, **kwargs)

        # === Config ===
        self.image_shape = image_shape
        self.patch_size = patch_size
        self.hidden_dim = hidden_dim
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.dropout_rate = dropout_rate
        self.attention_dropout_rate = attention_dropout_rate
        self.drop_path_rate = drop_path_rate
        self.layer_scale_init = layer_scale_init
        self.layer_norm_epsilon = layer_norm_epsilon
        self.gelu_approximate = gelu_approximate
        self.qkv_bias = qkv_bias
        self.use_class_token = use_class_token
        self.hybrid_layers = hybrid_layers
        self.num_prompts = num_prompts
        self.deep_prompts = bool(deep_prompts)
        self.prompt_dropout = prompt_dropout
        self.adapter_reduction = adapter_reduction
        self.stem_stride = stem_stride
        self._embedding_layers = [layer.name for layer, _ in cnn_layers] + ["patch_embedding"]
        self.grid_size = grid_size
        self.num_prefix_tokens = num_prefix_tokens
        self._feature_tensors = features

    @property
    def feature_names(self):
        """Names of the published features, in network order."""
        return list(self._feature_tensors)

    def __call__(self, inputs, *args, **kwargs):
        check_image_batch(inputs, self.image_shape, name="images")
        return super().__call__(inputs, *args, **kwargs)

    def feature_extractor(self, names=None):
        """A model mapping images to a dict of the named features.

        Args:
            names: feature names (see `feature_names`); all of them by default.

        Returns:
            `keras.Model` whose output is `{name: (B, P + h*w, D)}`; it shares
            this backbone's weights.
        """
        names = self.feature_names if names is None else check_feature_names(names, self.feature_names)
        outputs = {name: self._feature_tensors[name] for name in names}
        return keras.Model(self.inputs[0], outputs, name=f"{self.name}_features")

    def attention_maps(self, images, training=False):
        """Runs the backbone and returns every block's attention probabilities.

        It shares this backbone's weights and runs the explicit attention path
        (the fused kernel does not expose probabilities).

        Args:
            images: `(B, H, W, C)` preprocessed images.
            training: bool.

        Returns:
            dict with `"tokens"`: `(B, N, D)` normalised tokens and
            `"attention"`: `{"block_{i}": (B, H, N, N)}`, rows summing to one.
        """
        check_image_batch(images, self.image_shape, name="images")
        x = images
        for name in self._embedding_layers:
            x = self.get_layer(name)(x)
        if self.use_class_token:
            x = self.get_layer("class_token")(x)
        x = self.get_layer("position_embedding")(x)
        x = self.get_layer("embedding_dropout")(x, training=training)
        attention = {}
        for i in range(self.num_layers):
            if self.num_prompts and (i == 0 or self.deep_prompts):
                x = self.get_layer(f"prompts_{i}")(x, training=training)
            x, attention[f"block_{i}"] = self.get_layer(f"block_{i}")(
                x, training=training, return_attention_scores=True
            )
        if self.num_prompts:
            x = self.get_layer("prompt_removal")(x)
        return {"tokens": self.get_layer("encoder_norm")(x), "attention": attention}

    @staticmethod
    def get_layout_map(device_mesh, model_parallel_dim_name="model", data_parallel_dim_name="batch"):
        """A `keras.distribution.LayoutMap` for `keras.distribution.ModelParallel`
        (JAX): Megatron-style sharding of every transformer block over the
        `model_parallel_dim_name` axis of `device_mesh`: the fused qkv and the
        first MLP kernels split by output columns, the attention output and
        second MLP kernels by input rows (so each pair needs one reduction),
        the patch projection by output channels; everything else replicated.
        Data goes over `data_parallel_dim_name` (pass it to `ModelParallel` as
        `batch_dim_name`). The patterns (matched whole, as `LayoutMap` does)
        find these weights wherever a ViT sits (DPT and Segmenter encoders
        included). Sharded sizes (3 x
        hidden_dim, mlp_dim, hidden_dim) must be divisible by the model axis.

            mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), keras.distribution.list_devices())
            layout_map = keras_vit.ViTBackbone.get_layout_map(mesh)
            keras.distribution.set_distribution(keras.distribution.ModelParallel(layout_map=layout_map, batch_dim_name="batch"))
            model = keras_vit.ViT.from_preset("vit_b16")  # built sharded
        """
        check_mesh_axes(device_mesh, model_parallel_dim_name, data_parallel_dim_name)
        model = model_parallel_dim_name
        layout_map = keras.distribution.LayoutMap(device_mesh)
        layout_map[r"(.*/)?patch_embedding/projection/kernel"] = (None, None, None, model)
        layout_map[r".*/attention/qkv/kernel"] = (None, model)
        layout_map[r".*/attention/qkv/bias"] = (model,)
        layout_map[r".*/attention/proj/kernel"] = (model, None)
        layout_map[r".*/fc1/kernel"] = (None, model)
        layout_map[r".*/fc1/bias"] = (model,)
        layout_map[r".*/fc2/kernel"] = (model, None)
        return layout_map

    def get_config(self):
        config = {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            "image_shape": self.image_shape,
            "patch_size": self.patch_size,
            "hidden_dim": self.hidden_dim,
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "mlp_dim": self.mlp_dim,
            "dropout_rate": self.dropout_rate,
            "attention_dropout_rate": self.attention_dropout_rate,
            "drop_path_rate": self.drop_path_rate,
            "layer_scale_init": self.layer_scale_init,
            "layer_norm_epsilon": self.layer_norm_epsilon,
            "gelu_approximate": self.gelu_approximate,
            "qkv_bias": self.qkv_bias,
            "use_class_token": self.use_class_token,
            "hybrid_layers": self.hybrid_layers,
        }
        # Written only when set, so presets saved before fine-tuning existed
        # and those of untuned models keep their config.json.
        if self.num_prompts:
            config.update(
                num_prompts=self.num_prompts, deep_prompts=self.deep_prompts, prompt_dropout=self.prompt_dropout
            )
        if self.adapter_reduction is not None:
            config["adapter_reduction"] = self.adapter_reduction
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**with_dtype_policy(config))

    @classmethod
    def from_preset(cls, preset, image_size=None, load_weights=True, **overrides):
        """The backbone of a ViT preset (name, preset directory or checkpoint),
        or a directory written by `backbone.save_to_preset`.

        Args:
            preset: a name from `ViTBackbone.presets`, a directory or a checkpoint.
            image_size: int or `(H, W)`; the position embeddings are resized
                when it differs from the preset's.
            load_weights: bool, load the preset's weights.
            **overrides: backbone arguments to change (e.g. `drop_path_rate`).

        Example:
        >>> backbone = ViTBackbone.from_preset("vit_ti16", load_weights=False)
        >>> backbone.hidden_dim
        192
        """
        if image_size is not None:
            overrides["image_size"] = image_size
        return super().from_preset(preset, load_weights=load_weights, **overrides)
