import keras
from keras import ops

from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate


@keras.saving.register_keras_serializable(package="keras_vit")
class MultiHeadSelfAttention(keras.layers.Layer):
    """Multi-head self-attention with one fused query/key/value projection.

    The default path calls `keras.ops.dot_product_attention`, so each backend
    uses its fused kernel (`jax.nn.dot_product_attention`, torch's
    `scaled_dot_product_attention`). When attention probabilities are asked for,
    or attention dropout is active in training, an explicit softmax path runs
    instead; both give the same output (tested).

    Weight layout: `qkv` kernel `(D, 3D)` whose columns are all query heads, then
    all key heads, then all value heads, each head's `dh = D / H` columns
    contiguous (timm's layout); `proj` kernel `(D, D)`.

    Args:
        hidden_dim: int, D.
        num_heads: int, H; must divide D.
        qkv_bias: bool, bias on the query/key/value projection.
        attention_dropout_rate: float in [0, 1), dropout on the probabilities.
        kernel_initializer, bias_initializer: for both projections.

    Call arguments:
        tokens: `(B, N, D)`.
        training: bool.
        return_attention_scores: bool; if True also return the probabilities.

    Returns:
        `(B, N, D)`, or `((B, N, D), (B, H, N, N))` with attention scores.
    """

    def __init__(
        self,
        hidden_dim,
        num_heads,
        qkv_bias=True,
        attention_dropout_rate=0.0,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        if self.hidden_dim % self.num_heads:
            raise ValueError(
                f"num_heads must divide hidden_dim. Received: num_heads={num_heads}, "
                f"hidden_dim={hidden_dim}. Pick num_heads among the divisors of "
                f"{hidden_dim}."
            )
        self.head_dim = self.hidden_dim // self.num_heads
        self.qkv_bias = bool(qkv_bias)
        self.attention_dropout_rate = check_rate(
            "attention_dropout_rate", attention_dropout_rate
        )
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.seed = seed
        self.qkv = keras.layers.Dense(
            3 * self.hidden_dim,
            use_bias=self.qkv_bias,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy,
            name="qkv",
        )
        self.proj = keras.layers.Dense(
            self.hidden_dim,
            kernel_initializer=self.kernel_initializer,
            bias_initializer=self.bias_initializer,
            dtype=self.dtype_policy,
            name="proj",
        )
        self.attention_dropout = keras.layers.Dropout(
            self.attention_dropout_rate, seed=seed, dtype=self.dtype_policy
        )

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] != self.hidden_dim:
            raise ValueError(
                f"MultiHeadSelfAttention expects tokens of width hidden_dim="
                f"{self.hidden_dim}. Received: input_shape={input_shape}"
            )
        self.qkv.build(input_shape)
        self.proj.build(input_shape)

    def call(self, tokens, training=None, return_attention_scores=False):
        batch, num_tokens = ops.shape(tokens)[0], ops.shape(tokens)[1]
        qkv = self.qkv(tokens)
        # (B, N, 3D) -> (B, N, 3, H, dh)
        qkv = ops.reshape(qkv, (batch, num_tokens, 3, self.num_heads, self.head_dim))
        # each (B, N, H, dh). Unstacking rather than indexing `qkv[:, :, i]`
        # three times: without XLA, TensorFlow's gradient of a strided slice
        # scatters into a zero tensor of the whole (B, N, 3, H, dh) once per
        # slice; the gradient of unstack is one stack. ViT-Ti training step,
        # 2 CPU cores: TensorFlow 12.2 -> 15.1 images/s, torch 12.4 -> 13.6,
        # JAX unchanged (docs/benchmarks.md).
        query, key, value = ops.unstack(qkv, 3, axis=2)
        scale = 1.0 / float(self.head_dim) ** 0.5
        use_dropout = bool(training) and self.attention_dropout_rate > 0.0
        scores = None
        if return_attention_scores or use_dropout:
            # (B, N, H, dh) x (B, M, H, dh) -> (B, H, N, M)
            logits = ops.einsum("bnhd,bmhd->bhnm", query * scale, key)
            # Softmax in float32 so mixed precision does not lose the small
            # probabilities that attention maps are read for.
            scores = ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), query.dtype)
            weights = self.attention_dropout(scores, training=training)
            # (B, H, N, M) x (B, M, H, dh) -> (B, N, H, dh)
            out = ops.einsum("bhnm,bmhd->bnhd", weights, value)
        else:
            out = ops.dot_product_attention(query, key, value, scale=scale)
        # (B, N, H, dh) -> (B, N, D)
        out = ops.reshape(out, (batch, num_tokens, self.hidden_dim))
        out = self.proj(out)
        if return_attention_scores:
            return out, scores
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads,
                "qkv_bias": self.qkv_bias,
                "attention_dropout_rate": self.attention_dropout_rate,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "seed": self.seed,
            }
        )
        return config
