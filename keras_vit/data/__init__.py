from keras_vit.data.digits import load_digits
from keras_vit.data.epoch_batches import EpochBatches
from keras_vit.data.shapes import SHAPE_CLASSES
from keras_vit.data.shapes import make_shapes

__all__ = ["SHAPE_CLASSES", "EpochBatches", "load_digits", "make_shapes"]
