"""Fine-tuning: every protocol of the ViT and VPT papers behind one call.

    model = keras_vit.ViT.from_preset("vit_b16", num_classes=10)
    model = keras_vit.tuning.prepare(model, "vpt", num_prompts=10, deep=True)
    keras_vit.tuning.summary(model)          # trainable / total parameters
    model.compile(optimizer=keras_vit.tuning.layer_decay(keras.optimizers.AdamW(1e-3), model, 0.75))

See `prepare` for the methods, `layer_decay` for layer-wise learning-rate
decay, `vit_finetuning_optimizer` for the ViT paper's optimiser and
`save_delta` / `load_delta` for files holding only the tuned weights.
"""

from keras_vit.tuning.adapters import BottleneckAdapter
from keras_vit.tuning.delta import load_delta
from keras_vit.tuning.delta import save_delta
from keras_vit.tuning.layer_decay import detr_finetuning_optimizer
from keras_vit.tuning.layer_decay import layer_decay
from keras_vit.tuning.layer_decay import layer_ids
from keras_vit.tuning.layer_decay import scaled_learning_rates
from keras_vit.tuning.layer_decay import vit_finetuning_optimizer
from keras_vit.tuning.prepare import METHODS
from keras_vit.tuning.prepare import prepare
from keras_vit.tuning.prepare import summary
from keras_vit.tuning.prepare import trainable_parameters
from keras_vit.tuning.prompts import PromptTokenRemoval
from keras_vit.tuning.prompts import VisualPrompts

__all__ = [
    "METHODS",
    "BottleneckAdapter",
    "PromptTokenRemoval",
    "VisualPrompts",
    "detr_finetuning_optimizer",
    "layer_decay",
    "layer_ids",
    "load_delta",
    "prepare",
    "save_delta",
    "scaled_learning_rates",
    "summary",
    "trainable_parameters",
    "vit_finetuning_optimizer",
]
