import keras
from keras import ops

from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate


@keras.saving.register_keras_serializable(package="keras_vit")
class DETRAttention(keras.layers.Layer):
    """Multi-head attention with DETR's position handling.

    Position embeddings are added to the queries and the keys, never to the
    values: `q = Wq (query + query_position)`, `k = Wk (source + key_position)`,
    `v = Wv source`. Padded source positions (`key_mask` False) get no attention.

    Args:
        hidden_dim: int, D.
        num_heads: int, H; must divide D.
        attention_dropout_rate: float in [0, 1).

    Call arguments:
        query: `(B, N, D)`.
        source: `(B, M, D)`; None for self-attention (the query itself).
        query_position: optional `(B, N, D)` or `(N, D)`.
        key_position: optional `(B, M, D)`.
        key_mask: optional `(B, M)` bool, True for real positions.
        training: bool.

    Returns:
        `(B, N, D)`.
    """

    def __init__(self, hidden_dim, num_heads, attention_dropout_rate=0.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"num_heads must divide hidden_dim. Received: num_heads={num_heads}, hidden_dim={hidden_dim}"
            )
        self.attention_dropout_rate = check_rate("attention_dropout_rate", attention_dropout_rate)
        self.head_dim = self.hidden_dim // self.num_heads
        policy = self.dtype_policy
        self.query_dense = keras.layers.Dense(self.hidden_dim, dtype=policy, name="query")
        self.key_dense = keras.layers.Dense(self.hidden_dim, dtype=policy, name="key")
        self.value_dense = keras.layers.Dense(self.hidden_dim, dtype=policy, name="value")
        self.output_dense = keras.layers.Dense(self.hidden_dim, dtype=policy, name="output")
        self.dropout = keras.layers.Dropout(self.attention_dropout_rate, dtype=policy)

    def build(self, query_shape, source_shape=None):
        shape = (None, None, self.hidden_dim)
        for layer in (self.query_dense, self.key_dense, self.value_dense, self.output_dense):
            layer.build(shape)

    def _heads(self, x):
        # (B, N, D) -> (B, N, H, dh)
        shape = ops.shape(x)
        return ops.reshape(x, (shape[0], shape[1], self.num_heads, self.head_dim))

    def call(self, query, source=None, query_position=None, key_position=None, key_mask=None, training=None):
        source = query if source is None else source
        query_input = query if query_position is None else query + query_position
        key_input = source if key_position is None else source + key_position
        q = self._heads(self.query_dense(query_input))
        k = self._heads(self.key_dense(key_input))
        v = self._heads(self.value_dense(source))
        # (B, N, H, dh) x (B, M, H, dh) -> (B, H, N, M)
        logits = ops.einsum("bnhd,bmhd->bhnm", q, k) / float(self.head_dim) ** 0.5
        logits = ops.cast(logits, "float32")
        if key_mask is not None:
            # (B, M) -> (B, 1, 1, M); a large negative rather than -inf keeps
            # the softmax finite.
            logits = ops.where(ops.cast(key_mask, "bool")[:, None, None, :], logits, -1e9)
        weights = ops.cast(ops.softmax(logits, axis=-1), q.dtype)
        weights = self.dropout(weights, training=training)
        # (B, H, N, M) x (B, M, H, dh) -> (B, N, H, dh) -> (B, N, D)
        out = ops.einsum("bhnm,bmhd->bnhd", weights, v)
        shape = ops.shape(out)
        return self.output_dense(ops.reshape(out, (shape[0], shape[1], self.hidden_dim)))

    def compute_output_shape(self, query_shape, *args, **kwargs):
        return query_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "attention_dropout_rate": self.attention_dropout_rate,
            }
        )
        return config
