from keras_vit.layers.class_token import ClassToken
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.image_preprocessor import ViTImagePreprocessor
from keras_vit.layers.layer_scale import LayerScale
from keras_vit.layers.multi_head_self_attention import MultiHeadSelfAttention
from keras_vit.layers.patch_embedding import PatchEmbedding
from keras_vit.layers.position_embedding import PositionEmbedding
from keras_vit.layers.token_pooling import TokenPooling
from keras_vit.layers.transformer_encoder_block import TransformerEncoderBlock

__all__ = [
    "ClassToken",
    "DropPath",
    "LayerScale",
    "MultiHeadSelfAttention",
    "PatchEmbedding",
    "PositionEmbedding",
    "TokenPooling",
    "TransformerEncoderBlock",
    "ViTImagePreprocessor",
]
