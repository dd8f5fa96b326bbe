import keras
from keras import ops

from keras_vit.layers.segmenter_linear_decoder import check_grid_tokens
from keras_vit.layers.transformer_encoder_block import TransformerEncoderBlock
from keras_vit.utils.validation import check_pair
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate


@keras.saving.register_keras_serializable(package="keras_vit")
class SegmenterMaskTransformer(keras.layers.Layer):
    """Segmenter's mask transformer decoder (Strudel et al., 2021, section 3.2).

    ```
    x = concat(proj_dec(patches), class_embeddings)      # (B, N + K, D)
    x = decoder_norm(blocks(x))                           # pre-LN transformer blocks
    p = l2_normalise(x[:, :N] @ proj_patch)               # (B, N, D)
    c = l2_normalise(x[:, N:] @ proj_classes)             # (B, K, D)
    masks = mask_norm(p @ c^T)                            # LayerNorm over the K classes
    ```

    Args:
        num_classes: int, K.
        grid_size: `(h, w)`, the patch grid.
        hidden_dim: int, D (the official models: the encoder's width); None
            takes the input width.
        num_layers: int, transformer blocks (official: 2).
        num_heads: int; None gives D / 64 (official).
        mlp_dim: int; None gives 4 D.
        dropout_rate: float, dropout in the blocks, also on the attention
            probabilities (official: 0.1).
        drop_path_rate: float, stochastic depth, linearly increasing over the
            blocks (official: 0.0).
        layer_norm_epsilon: float (official: torch's default, 1e-5).

    Call arguments:
        tokens: `(B, h * w, D_encoder)` patch tokens (prefix tokens removed).
        training: bool.

    Returns:
        `(B, h, w, K)` patch-level mask logits.

    >>> decoder = SegmenterMaskTransformer(num_classes=5, grid_size=(3, 4), num_heads=2)
    >>> tuple(decoder(keras.ops.zeros((2, 12, 8))).shape)
    (2, 3, 4, 5)
    """

    def __init__(
        self,
        num_classes,
        grid_size,
        hidden_dim=None,
        num_layers=2,
        num_heads=None,
        mlp_dim=None,
        dropout_rate=0.1,
        drop_path_rate=0.0,
        layer_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.grid_size = tuple(check_pair("grid_size", grid_size))
        self.hidden_dim = None if hidden_dim is None else check_positive_int("hidden_dim", hidden_dim)
        self.num_layers = check_positive_int("num_layers", num_layers)
        self.num_heads = None if num_heads is None else check_positive_int("num_heads", num_heads)
        self.mlp_dim = None if mlp_dim is None else check_positive_int("mlp_dim", mlp_dim)
        self.dropout_rate = check_rate("dropout_rate", dropout_rate)
        self.drop_path_rate = check_rate("drop_path_rate", drop_path_rate)
        self.layer_norm_epsilon = float(layer_norm_epsilon)

    def build(self, input_shape):
        policy = self.dtype_policy
        width = self.hidden_dim or input_shape[-1]
        heads = self.num_heads or max(width // 64, 1)
        if width % heads:
            raise ValueError(
                f"num_heads={heads} must divide the decoder width {width}. Pass num_heads (default: width / 64)."
            )
        self.width, self.heads = width, heads
        self.proj_dec = keras.layers.Dense(width, dtype=policy, name="proj_dec")
        self.proj_dec.build(input_shape)
        self.class_embeddings = self.add_weight(
            shape=(1, self.num_classes, width), initializer=keras.initializers.TruncatedNormal(stddev=0.02),
            name="class_embeddings",
        )
        self.blocks = []
        for i in range(self.num_layers):
            block = TransformerEncoderBlock(
                width, heads, self.mlp_dim or 4 * width, dropout_rate=self.dropout_rate,
                attention_dropout_rate=self.dropout_rate,
                drop_path_rate=self.drop_path_rate * i / max(self.num_layers - 1, 1),
                layer_norm_epsilon=self.layer_norm_epsilon, dtype=policy, name=f"block_{i}",
            )
            block.build((None, None, width))
            self.blocks.append(block)
        self.decoder_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="decoder_norm"
        )
        self.decoder_norm.build((None, None, width))
        scale = keras.initializers.RandomNormal(stddev=width**-0.5)
        self.proj_patch = self.add_weight(shape=(width, width), initializer=scale, name="proj_patch")
        self.proj_classes = self.add_weight(shape=(width, width), initializer=scale, name="proj_classes")
        self.mask_norm = keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=policy, name="mask_norm"
        )
        self.mask_norm.build((None, None, self.num_classes))
        self.built = True

    def call(self, tokens, training=None):
        check_grid_tokens(tokens, self.grid_size)
        x = self.proj_dec(tokens)
        classes = ops.broadcast_to(
            ops.cast(self.class_embeddings, x.dtype), (ops.shape(x)[0], self.num_classes, self.width)
        )
        x = ops.concatenate([x, classes], axis=1)
        for block in self.blocks:
            x = block(x, training=training)
        x = self.decoder_norm(x)
        patches = ops.matmul(x[:, : -self.num_classes], ops.cast(self.proj_patch, x.dtype))
        classes = ops.matmul(x[:, -self.num_classes:], ops.cast(self.proj_classes, x.dtype))
        # L2 normalisation without an epsilon, as the official code does.
        patches = patches / ops.norm(patches, axis=-1, keepdims=True)
        classes = classes / ops.norm(classes, axis=-1, keepdims=True)
        masks = self.mask_norm(ops.matmul(patches, ops.transpose(classes, (0, 2, 1))))
        return ops.reshape(masks, (-1, *self.grid_size, self.num_classes))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self.grid_size, self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_classes": self.num_classes,
                "grid_size": list(self.grid_size),
                "hidden_dim": self.hidden_dim,
                "num_layers": self.num_layers,
                "num_heads": self.num_heads,
                "mlp_dim": self.mlp_dim,
                "dropout_rate": self.dropout_rate,
                "drop_path_rate": self.drop_path_rate,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config
