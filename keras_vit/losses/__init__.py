from keras_vit.losses.detr_set_loss import hungarian_matching_cost
from keras_vit.losses.detr_set_loss import set_loss_terms

__all__ = ["hungarian_matching_cost", "set_loss_terms"]
