import keras
from keras import ops

from keras_vit.utils.validation import check_rate


@keras.saving.register_keras_serializable(package="keras_vit")
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops a whole residual branch per sample in training.

    Kept samples are scaled by `1 / (1 - rate)` so the expectation is unchanged;
    at inference the layer is the identity.

    Args:
        rate: float in [0, 1), the probability of dropping the branch.
        seed: optional int for the random generator.

    Call arguments:
        inputs: `(B, ...)`.
        training: bool.

    Returns:
        same shape as `inputs`.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.rate = check_rate("rate", rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=None):
        if not training or self.rate == 0.0:
            return inputs
        keep = 1.0 - self.rate
        # One draw per sample, broadcast over the remaining axes.
        shape = (ops.shape(inputs)[0],) + (1,) * (len(inputs.shape) - 1)
        noise = keras.random.uniform(shape, seed=self.seed_generator, dtype=inputs.dtype)
        mask = ops.floor(keep + noise)
        return inputs / keep * mask

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({"rate": self.rate, "seed": self.seed})
        return config
