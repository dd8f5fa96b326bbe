"""Plots that look inside a ViT (the ViT paper's Figure 7 and attention maps) and detection plots.

Each function computing numbers returns numpy arrays; each `plot_*` returns a
`matplotlib.figure.Figure`.
"""

from keras_vit.visualization.attention import attention_rollout
from keras_vit.visualization.attention import class_token_attention
from keras_vit.visualization.attention import plot_attention_maps
from keras_vit.visualization.attention_distance import mean_attention_distance
from keras_vit.visualization.attention_distance import patch_distances
from keras_vit.visualization.attention_distance import plot_mean_attention_distance
from keras_vit.visualization.detections import plot_detections
from keras_vit.visualization.embedding_filters import patch_embedding_components
from keras_vit.visualization.embedding_filters import plot_patch_embedding_components
from keras_vit.visualization.position_similarity import plot_position_embedding_similarity
from keras_vit.visualization.position_similarity import position_embedding_similarity

__all__ = [
    "attention_rollout",
    "class_token_attention",
    "mean_attention_distance",
    "patch_distances",
    "patch_embedding_components",
    "plot_attention_maps",
    "plot_detections",
    "plot_mean_attention_distance",
    "plot_patch_embedding_components",
    "plot_position_embedding_similarity",
    "position_embedding_similarity",
]
