from keras_vit.data.digits import load_digits
from keras_vit.data.epoch_batches import EpochBatches
from keras_vit.data.scenes import SCENE_CLASSES
from keras_vit.data.scenes import make_scenes
from keras_vit.data.shapes import SHAPE_CLASSES
from keras_vit.data.shapes import make_shapes

__all__ = ["SCENE_CLASSES", "SHAPE_CLASSES", "EpochBatches", "load_digits", "make_scenes", "make_shapes"]
