"""Plots that look inside a ViT (the ViT paper's Figure 7 and attention maps), detection plots,
and dense predictions (colourised depth, class-mask overlays).

Each function computing numbers returns numpy arrays; each `plot_*` returns a
`matplotlib.figure.Figure`.
"""

from keras_vit.visualization.attention import attention_rollout
from keras_vit.visualization.attention import class_token_attention
from keras_vit.visualization.attention import plot_attention_maps
from keras_vit.visualization.attention_distance import mean_attention_distance
from keras_vit.visualization.attention_distance import patch_distances
from keras_vit.visualization.attention_distance import plot_mean_attention_distance
from keras_vit.visualization.dense import class_colours
from keras_vit.visualization.dense import colorize_depth
from keras_vit.visualization.dense import overlay_mask
from keras_vit.visualization.dense import plot_depth
from keras_vit.visualization.dense import plot_segmentation
from keras_vit.visualization.detections import plot_detections
from keras_vit.visualization.embedding_filters import patch_embedding_components
from keras_vit.visualization.embedding_filters import plot_patch_embedding_components
from keras_vit.visualization.position_similarity import plot_position_embedding_similarity
from keras_vit.visualization.position_similarity import position_embedding_similarity
from keras_vit.visualization.swin_windows import plot_shifted_windows

__all__ = [
    "attention_rollout",
    "class_colours",
    "class_token_attention",
    "colorize_depth",
    "mean_attention_distance",
    "overlay_mask",
    "patch_distances",
    "patch_embedding_components",
    "plot_attention_maps",
    "plot_depth",
    "plot_detections",
    "plot_mean_attention_distance",
    "plot_patch_embedding_components",
    "plot_position_embedding_similarity",
    "plot_shifted_windows",
    "plot_segmentation",
    "position_embedding_similarity",
]
