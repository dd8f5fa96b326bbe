import keras

from keras_vit.layers.detr_attention import DETRAttention
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate


class _PostNormLayer(keras.layers.Layer):
    """Shared arguments and the feed-forward half of DETR's post-norm layers."""

    def __init__(
        self,
        hidden_dim,
        num_heads,
        ffn_dim,
        dropout_rate=0.1,
        attention_dropout_rate=0.0,
        activation="relu",
        layer_norm_epsilon=1e-5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.ffn_dim = check_positive_int("ffn_dim", ffn_dim)
        self.dropout_rate = check_rate("dropout_rate", dropout_rate)
        self.attention_dropout_rate = check_rate("attention_dropout_rate", attention_dropout_rate)
        self.activation = activation
        self.layer_norm_epsilon = float(layer_norm_epsilon)
        policy = self.dtype_policy
        self.fc1 = keras.layers.Dense(self.ffn_dim, activation=activation, dtype=policy, name="fc1")
        self.fc2 = keras.layers.Dense(self.hidden_dim, dtype=policy, name="fc2")
        self.final_norm = self._norm("final_norm")
        self.dropout = keras.layers.Dropout(self.dropout_rate, dtype=policy)

    def _norm(self, name):
        # torch's LayerNorm default epsilon, 1e-5 (Keras's own default is 1e-3).
        return keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, dtype=self.dtype_policy, name=name
        )

    def _attention(self, name):
        return DETRAttention(
            self.hidden_dim, self.num_heads, self.attention_dropout_rate, dtype=self.dtype_policy, name=name
        )

    def _feed_forward(self, x, training):
        y = self.dropout(self.fc1(x), training=training)
        y = self.dropout(self.fc2(y), training=training)
        return self.final_norm(x + y)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "ffn_dim": self.ffn_dim,
                "dropout_rate": self.dropout_rate,
                "attention_dropout_rate": self.attention_dropout_rate,
                "activation": self.activation,
                "layer_norm_epsilon": self.layer_norm_epsilon,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class DETREncoderLayer(_PostNormLayer):
    """DETR encoder layer (post-norm): positions added to queries and keys.

    ```
    x = norm1(x + dropout(attention(q=k=x+pos, v=x)))
    x = norm2(x + dropout(fc2(dropout(relu(fc1(x))))))
    ```

    Args:
        hidden_dim, num_heads, ffn_dim: D, H and the feed-forward width.
        dropout_rate, attention_dropout_rate: floats in [0, 1).
        activation: feed-forward activation (DETR: ReLU).
        layer_norm_epsilon: float, 1e-5 as torch.

    Call arguments:
        tokens: `(B, M, D)` flattened feature map.
        position: `(B, M, D)` sine position encoding.
        mask: optional `(B, M)` bool, True for real (unpadded) positions.
        training: bool.

    Returns:
        `(B, M, D)`.
    """

    def __init__(self, hidden_dim, num_heads, ffn_dim, **kwargs):
        super().__init__(hidden_dim, num_heads, ffn_dim, **kwargs)
        self.self_attention = self._attention("self_attention")
        self.self_attention_norm = self._norm("self_attention_norm")

    def build(self, tokens_shape, *args, **kwargs):
        shape = (None, None, self.hidden_dim)
        self.self_attention.build(shape)
        for layer in (self.self_attention_norm, self.fc1, self.final_norm):
            layer.build(shape)
        self.fc2.build((None, None, self.ffn_dim))

    def call(self, tokens, position=None, mask=None, training=None):
        y = self.self_attention(
            tokens, tokens, query_position=position, key_position=position, key_mask=mask, training=training
        )
        x = self.self_attention_norm(tokens + self.dropout(y, training=training))
        return self._feed_forward(x, training)


@keras.saving.register_keras_serializable(package="keras_vit")
class DETRDecoderLayer(_PostNormLayer):
    """DETR decoder layer (post-norm).

    ```
    x = norm1(x + dropout(self_attention(q=k=x+query_pos, v=x)))
    x = norm2(x + dropout(cross_attention(q=x+query_pos, k=memory+pos, v=memory)))
    x = norm3(x + dropout(ffn(x)))
    ```

    Args: as `DETREncoderLayer`.

    Call arguments:
        queries: `(B, Q, D)` decoder state (zeros before the first layer).
        memory: `(B, M, D)` encoder output.
        query_position: `(B, Q, D)` learned object-query embeddings.
        memory_position: `(B, M, D)` sine position encoding.
        memory_mask: optional `(B, M)` bool, True for real positions.
        training: bool.

    Returns:
        `(B, Q, D)`.
    """

    def __init__(self, hidden_dim, num_heads, ffn_dim, **kwargs):
        super().__init__(hidden_dim, num_heads, ffn_dim, **kwargs)
        self.self_attention = self._attention("self_attention")
        self.self_attention_norm = self._norm("self_attention_norm")
        self.cross_attention = self._attention("cross_attention")
        self.cross_attention_norm = self._norm("cross_attention_norm")

    def build(self, queries_shape, *args, **kwargs):
        shape = (None, None, self.hidden_dim)
        self.self_attention.build(shape)
        self.cross_attention.build(shape)
        for layer in (self.self_attention_norm, self.cross_attention_norm, self.fc1, self.final_norm):
            layer.build(shape)
        self.fc2.build((None, None, self.ffn_dim))

    def call(
        self, queries, memory, query_position=None, memory_position=None, memory_mask=None, training=None
    ):
        y = self.self_attention(
            queries, queries, query_position=query_position, key_position=query_position, training=training
        )
        x = self.self_attention_norm(queries + self.dropout(y, training=training))
        y = self.cross_attention(
            x, memory, query_position=query_position, key_position=memory_position,
            key_mask=memory_mask, training=training,
        )
        x = self.cross_attention_norm(x + self.dropout(y, training=training))
        return self._feed_forward(x, training)
