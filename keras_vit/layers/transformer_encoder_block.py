import keras

from keras_vit.backend.gelu import gelu
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.layer_scale import LayerScale
from keras_vit.layers.multi_head_self_attention import MultiHeadSelfAttention
from keras_vit.tuning.adapters import BottleneckAdapter
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate


@keras.saving.register_keras_serializable(package="keras_vit")
class TransformerEncoderBlock(keras.layers.Layer):
    """Pre-LayerNorm transformer encoder block of ViT.

    ```
    x = x + drop_path(ls1(dropout(attention(norm1(x)))))
    x = x + drop_path(ls2(dropout(fc2(dropout(gelu(fc1(norm2(x))))))))
    ```

    Args:
        hidden_dim: int, D.
        num_heads: int, H; must divide D.
        mlp_dim: int, width of the MLP hidden layer.
        dropout_rate: float in [0, 1), dropout after attention and in the MLP.
        attention_dropout_rate: float in [0, 1), dropout on attention probabilities.
        drop_path_rate: float in [0, 1), stochastic depth of both branches.
        layer_scale_init: None (no LayerScale) or the initial scale, e.g. 1e-5.
        layer_norm_epsilon: float. 1e-6 for the original ViT and timm, 1e-12 for
            transformers' ViTConfig (Keras's own default, 1e-3, matches neither).
        gelu_approximate: bool. True: tanh GELU (original JAX ViT); False: exact
            erf GELU (timm, transformers).
        qkv_bias: bool, bias on the query/key/value projection.
        adapter_reduction: None, or an int r: a `BottleneckAdapter` of width
            D / r after the MLP (the fine-tuning method `"adapter"` of
            `keras_vit.tuning.prepare` sets it); it starts as the identity.

    Call arguments:
        tokens: `(B, N, D)`.
        training: bool.
        return_attention_scores: bool; if True also return `(B, H, N, N)`.

    Returns:
        `(B, N, D)`, or a tuple with the attention probabilities.

    Example:
    >>> block = TransformerEncoderBlock(hidden_dim=32, num_heads=4, mlp_dim=37)
    >>> tuple(block(keras.ops.zeros((2, 101, 32))).shape)
    (2, 101, 32)
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        mlp_dim,
        dropout_rate=0.0,
        attention_dropout_rate=0.0,
        drop_path_rate=0.0,
        layer_scale_init=None,
        layer_norm_epsilon=1e-6,
        gelu_approximate=False,
        qkv_bias=True,
        adapter_reduction=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.mlp_dim = check_positive_int("mlp_dim", mlp_dim)
        self.dropout_rate = check_rate("dropout_rate", dropout_rate)
        self.attention_dropout_rate = check_rate(
            "attention_dropout_rate", attention_dropout_rate
        )
        self.drop_path_rate = check_rate("drop_path_rate", drop_path_rate)
        if layer_scale_init is not None and (
            isinstance(layer_scale_init, bool)
            or not isinstance(layer_scale_init, (int, float))
            or layer_scale_init <= 0
        ):
            raise ValueError(
                "layer_scale_init must be None or a positive float such as 1e-5. "
                f"Received: layer_scale_init={layer_scale_init!r}"
            )
        self.layer_scale_init = layer_scale_init
        if not isinstance(layer_norm_epsilon, (int, float)) or layer_norm_epsilon <= 0:
            raise ValueError(
                "layer_norm_epsilon must be a positive float (1e-6 for ViT/timm, "
                f"1e-12 for transformers). Received: layer_norm_epsilon="
                f"{layer_norm_epsilon!r}"
            )
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        self.gelu_approximate = bool(gelu_approximate)
        self.qkv_bias = bool(qkv_bias)
        self.adapter_reduction = (
            None if adapter_reduction is None else check_positive_int("adapter_reduction", adapter_reduction)
        )
        self.seed = seed

        policy = self.dtype_policy
        self.norm1 = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="norm1"
        )
        self.attention = MultiHeadSelfAttention(
            self.hidden_dim,
            self.num_heads,
            qkv_bias=self.qkv_bias,
            attention_dropout_rate=self.attention_dropout_rate,
            seed=seed,
            dtype=policy,
            name="attention",
        )
        self.norm2 = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="norm2"
        )
        self.fc1 = keras.layers.Dense(self.mlp_dim, dtype=policy, name="fc1")
        self.fc2 = keras.layers.Dense(self.hidden_dim, dtype=policy, name="fc2")
        self.dropout = keras.layers.Dropout(self.dropout_rate, seed=seed, dtype=policy)
        self.drop_path = DropPath(self.drop_path_rate, seed=seed, dtype=policy)
        if layer_scale_init is None:
            self.layer_scale1 = self.layer_scale2 = None
        else:
            self.layer_scale1 = LayerScale(layer_scale_init, dtype=policy, name="ls1")
            self.layer_scale2 = LayerScale(layer_scale_init, dtype=policy, name="ls2")
        self.adapter = None
        if self.adapter_reduction is not None:
            self.adapter = BottleneckAdapter(self.hidden_dim, self.adapter_reduction, dtype=policy, name="adapter")

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.hidden_dim:
            raise ValueError(
                f"TransformerEncoderBlock expects tokens of width hidden_dim="
                f"{self.hidden_dim}. Received: input_shape={input_shape}"
            )
        self.norm1.build(input_shape)
        self.attention.build(input_shape)
        self.norm2.build(input_shape)
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.mlp_dim,))
        for layer_scale in (self.layer_scale1, self.layer_scale2):
            if layer_scale is not None:
                layer_scale.build(input_shape)
        if self.adapter is not None:
            self.adapter.build(input_shape)

    def _scale(self, layer_scale, x):
        return x if layer_scale is None else layer_scale(x)

    def call(self, tokens, training=None, return_attention_scores=False):
        y = self.attention(
            self.norm1(tokens),
            training=training,
            return_attention_scores=return_attention_scores,
        )
        scores = None
        if return_attention_scores:
            y, scores = y
        y = self.dropout(y, training=training)
        x = tokens + self.drop_path(self._scale(self.layer_scale1, y), training=training)

        y = self.fc1(self.norm2(x))
        y = gelu(y, approximate=self.gelu_approximate)  # exportable to ONNX from every backend
        y = self.dropout(y, training=training)
        y = self.dropout(self.fc2(y), training=training)
        if self.adapter is not None:
            y = self.adapter(y)
        x = x + self.drop_path(self._scale(self.layer_scale2, y), training=training)
        if return_attention_scores:
            return x, scores
        return x

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "dropout_rate": self.dropout_rate,
                "attention_dropout_rate": self.attention_dropout_rate,
                "drop_path_rate": self.drop_path_rate,
                "layer_scale_init": self.layer_scale_init,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "gelu_approximate": self.gelu_approximate,
                "qkv_bias": self.qkv_bias,
                "adapter_reduction": self.adapter_reduction,
                "seed": self.seed,
            }
        )
        return config
