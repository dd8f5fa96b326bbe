import keras

from keras_vit.backend.torch_conv import conv2d


@keras.saving.register_keras_serializable(package="keras_vit")
class Conv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D`, without Keras 3.15's two layout copies of every
    input on torch (`keras_vit/backend/torch_conv.py` says why and when).

    Same arguments, weights, names and outputs as `keras.layers.Conv2D`:
    every convolution in keras_vit is one of these.
    """

    def convolution_op(self, inputs, kernel):
        return conv2d(inputs, kernel, list(self.strides), self.padding, self.dilation_rate, self.data_format)
