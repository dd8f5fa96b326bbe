"""Visual Prompt Tuning's prompt tokens (Jia et al., ECCV 2022), as layers.

Implemented from the paper (the reference code is CC-BY-NC): P learnable
prompt tokens of width D sit after the position embedding, between the
prefix (class) token and the patch tokens, with no position embedding of
their own. VPT-shallow inserts them once, before the first block; VPT-deep
gives every block its own prompts, each replacing what the previous block
made of the prompts. The classifier reads the class token only, so the
prompt tokens are removed again after the last block
(`PromptTokenRemoval`): every head and tap downstream sees the token layout
it sees without prompts.
"""

import keras
from keras import ops

from keras_vit.utils.validation import check_pair
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate


def prompt_init_limit(patch_size, hidden_dim):
    """The bound of the paper's uniform prompt initialisation,
    sqrt(6 / (3 * ph * pw + D)) (Xavier uniform over the patch projection's
    fan-in 3 * ph * pw and fan-out D)."""
    patch_h, patch_w = check_pair("patch_size", patch_size)
    return (6.0 / (3 * patch_h * patch_w + hidden_dim)) ** 0.5


def _check_prefix(num_prefix_tokens):
    if isinstance(num_prefix_tokens, bool) or not isinstance(num_prefix_tokens, int) or num_prefix_tokens < 0:
        raise ValueError(
            f"num_prefix_tokens must be an int >= 0 (1 with a class token). Received: num_prefix_tokens={num_prefix_tokens!r}"
        )
    return num_prefix_tokens


@keras.saving.register_keras_serializable(package="keras_vit")
class VisualPrompts(keras.layers.Layer):
    """Inserts (or, for VPT-deep, replaces) P learnable prompt tokens after
    the prefix tokens.

    Args:
        num_prompts: int, P.
        num_prefix_tokens: int, tokens before the patches (1: the class token).
        patch_size: int or `(ph, pw)`; sets the initialisation bound
            sqrt(6 / (3 * ph * pw + D)) with D the token width.
        replace: bool. False inserts: `(B, n + N, D) -> (B, n + P + N, D)`.
            True (VPT-deep, blocks after the first) overwrites the P tokens
            that follow the prefix: the shape is unchanged.
        dropout_rate: float in [0, 1), dropout on the prompts in training
            (the paper's prompt dropout).
        seed: int, dropout seed.

    Call arguments:
        tokens: `(B, n + N, D)` (insert) or `(B, n + P + N, D)` (replace).
        training: bool.

    Returns:
        `(B, n + P + N, D)`: prefix tokens, prompts, patch tokens.

    Example:
    >>> layer = VisualPrompts(num_prompts=5, num_prefix_tokens=1, patch_size=3)
    >>> tuple(layer(keras.ops.zeros((2, 101, 32))).shape)  # class + 5 prompts + 100 patches
    (2, 106, 32)
    """

    def __init__(self, num_prompts, num_prefix_tokens=1, patch_size=16, replace=False, dropout_rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_prompts = check_positive_int("num_prompts", num_prompts)
        self.num_prefix_tokens = _check_prefix(num_prefix_tokens)
        self.patch_size = check_pair("patch_size", patch_size)
        self.replace = bool(replace)
        self.dropout_rate = check_rate("dropout_rate", dropout_rate)
        self.seed = seed
        self.dropout = keras.layers.Dropout(self.dropout_rate, seed=seed, dtype=self.dtype_policy)

    def build(self, input_shape):
        width = input_shape[-1]
        limit = prompt_init_limit(self.patch_size, width)
        self.prompts = self.add_weight(
            shape=(self.num_prompts, width),
            initializer=keras.initializers.RandomUniform(-limit, limit, seed=self.seed),
            name="prompts",
        )

    def call(self, tokens, training=None):
        n, p = self.num_prefix_tokens, self.num_prompts
        prompts = ops.cast(self.prompts, tokens.dtype)
        # (P, D) -> (B, P, D)
        prompts = ops.broadcast_to(prompts[None], (ops.shape(tokens)[0], p, ops.shape(tokens)[2]))
        prompts = self.dropout(prompts, training=training)
        rest = tokens[:, n + p:] if self.replace else tokens[:, n:]
        return ops.concatenate([tokens[:, :n], prompts, rest], axis=1)

    def compute_output_shape(self, input_shape):
        batch, tokens, width = input_shape
        if tokens is not None and not self.replace:
            tokens = tokens + self.num_prompts
        return (batch, tokens, width)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_prompts": self.num_prompts,
                "num_prefix_tokens": self.num_prefix_tokens,
                "patch_size": self.patch_size,
                "replace": self.replace,
                "dropout_rate": self.dropout_rate,
                "seed": self.seed,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_vit")
class PromptTokenRemoval(keras.layers.Layer):
    """Removes the P prompt tokens that follow the prefix tokens:
    `(B, n + P + N, D) -> (B, n + N, D)`.

    Args:
        num_prompts: int, P.
        num_prefix_tokens: int, n.

    Example:
    >>> tuple(PromptTokenRemoval(5, 1)(keras.ops.zeros((2, 106, 32))).shape)
    (2, 101, 32)
    """

    def __init__(self, num_prompts, num_prefix_tokens=1, **kwargs):
        super().__init__(**kwargs)
        self.num_prompts = check_positive_int("num_prompts", num_prompts)
        self.num_prefix_tokens = _check_prefix(num_prefix_tokens)

    def call(self, tokens):
        n = self.num_prefix_tokens
        return ops.concatenate([tokens[:, :n], tokens[:, n + self.num_prompts:]], axis=1)

    def compute_output_shape(self, input_shape):
        batch, tokens, width = input_shape
        return (batch, None if tokens is None else tokens - self.num_prompts, width)

    def get_config(self):
        config = super().get_config()
        config.update({"num_prompts": self.num_prompts, "num_prefix_tokens": self.num_prefix_tokens})
        return config
