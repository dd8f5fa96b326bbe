import keras
from keras import ops

POOLING_MODES = ("token", "gap")


@keras.saving.register_keras_serializable(package="keras_vit")
class TokenPooling(keras.layers.Layer):
    """Pools a token sequence to one vector per image.

    Args:
        mode: `"token"` takes the first (class) token; `"gap"` averages the
            patch tokens, skipping the `num_prefix_tokens` first ones (the
            original ViT's `classifier="gap"`: mean of the normalised tokens).
        num_prefix_tokens: int, tokens before the patch grid.

    Call arguments:
        tokens: `(B, N, D)`.

    Returns:
        `(B, D)`.
    """

    def __init__(self, mode="token", num_prefix_tokens=1, **kwargs):
        super().__init__(**kwargs)
        if mode not in POOLING_MODES:
            raise ValueError(
                f"pooling must be one of {POOLING_MODES}. Received: pooling={mode!r}"
            )
        if mode == "token" and num_prefix_tokens < 1:
            raise ValueError(
                "pooling='token' needs a class token. Received: pooling='token' with "
                "use_class_token=False; use pooling='gap' or add the class token."
            )
        self.mode = mode
        self.num_prefix_tokens = int(num_prefix_tokens)

    def call(self, tokens):
        if self.mode == "token":
            return tokens[:, 0]
        return ops.mean(tokens[:, self.num_prefix_tokens :], axis=1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "num_prefix_tokens": self.num_prefix_tokens})
        return config
