from keras_vit.losses.dense_losses import ScaleInvariantLogLoss
from keras_vit.losses.dense_losses import ScaleShiftInvariantLoss
from keras_vit.losses.dense_losses import SegmentationCrossEntropy
from keras_vit.losses.dense_losses import gradient_matching
from keras_vit.losses.dense_losses import scale_and_shift
from keras_vit.losses.dense_losses import ssi_term_metrics
from keras_vit.losses.dense_losses import ssi_terms
from keras_vit.losses.detr_set_loss import hungarian_matching_cost
from keras_vit.losses.detr_set_loss import set_loss_terms

__all__ = [
    "ScaleInvariantLogLoss",
    "ScaleShiftInvariantLoss",
    "SegmentationCrossEntropy",
    "gradient_matching",
    "hungarian_matching_cost",
    "scale_and_shift",
    "set_loss_terms",
    "ssi_term_metrics",
    "ssi_terms",
]
