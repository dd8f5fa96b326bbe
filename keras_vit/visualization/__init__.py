from keras_vit.visualization.attention import class_token_attention
from keras_vit.visualization.attention import plot_attention_maps

__all__ = ["class_token_attention", "plot_attention_maps"]
