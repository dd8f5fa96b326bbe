from keras_vit.layers.bottleneck_block import BottleneckBlock
from keras_vit.layers.class_token import ClassToken
from keras_vit.layers.detr_attention import DETRAttention
from keras_vit.layers.detr_transformer_layers import DETRDecoderLayer
from keras_vit.layers.detr_transformer_layers import DETREncoderLayer
from keras_vit.layers.dpt_depth_head import DPTDepthHead
from keras_vit.layers.dpt_fusion import DPTFusionBlock
from keras_vit.layers.dpt_fusion import DPTResidualConvUnit
from keras_vit.layers.dpt_reassemble import DPTReassemble
from keras_vit.layers.dpt_segmentation_head import DPTSegmentationHead
from keras_vit.layers.drop_path import DropPath
from keras_vit.layers.image_preprocessor import ViTImagePreprocessor
from keras_vit.layers.layer_scale import LayerScale
from keras_vit.layers.multi_head_self_attention import MultiHeadSelfAttention
from keras_vit.layers.mvit_block import MViTAttention
from keras_vit.layers.mvit_block import MViTBlock
from keras_vit.layers.patch_embedding import PatchEmbedding
from keras_vit.layers.position_embedding import PositionEmbedding
from keras_vit.layers.resnet_stem import ResNetStem
from keras_vit.layers.segmenter_linear_decoder import SegmenterLinearDecoder
from keras_vit.layers.segmenter_mask_transformer import SegmenterMaskTransformer
from keras_vit.layers.sine_position_encoding import SinePositionEncoding
from keras_vit.layers.std_conv2d import StdConv2D
from keras_vit.layers.swin_block import SwinPatchMerging
from keras_vit.layers.swin_block import SwinTransformerBlock
from keras_vit.layers.swin_block import SwinWindowAttention
from keras_vit.layers.token_pooling import TokenPooling
from keras_vit.layers.transformer_encoder_block import TransformerEncoderBlock
from keras_vit.layers.vitdet_block import ConvTranspose2x2
from keras_vit.layers.vitdet_block import LastLevelMaxPool
from keras_vit.layers.vitdet_block import SimpleFeaturePyramidLevel
from keras_vit.layers.vitdet_block import ViTDetAttention
from keras_vit.layers.vitdet_block import ViTDetBlock
from keras_vit.layers.vitdet_block import ViTDetPositionEmbedding
from keras_vit.layers.vitdet_block import ViTDetResidualBlock

__all__ = [
    "BottleneckBlock",
    "ClassToken",
    "ConvTranspose2x2",
    "DETRAttention",
    "DETRDecoderLayer",
    "DETREncoderLayer",
    "DPTDepthHead",
    "DPTFusionBlock",
    "DPTReassemble",
    "DPTResidualConvUnit",
    "DPTSegmentationHead",
    "DropPath",
    "LastLevelMaxPool",
    "LayerScale",
    "MViTAttention",
    "MViTBlock",
    "MultiHeadSelfAttention",
    "PatchEmbedding",
    "PositionEmbedding",
    "ResNetStem",
    "SegmenterLinearDecoder",
    "SegmenterMaskTransformer",
    "SimpleFeaturePyramidLevel",
    "SinePositionEncoding",
    "StdConv2D",
    "SwinPatchMerging",
    "SwinTransformerBlock",
    "SwinWindowAttention",
    "TokenPooling",
    "TransformerEncoderBlock",
    "ViTDetAttention",
    "ViTDetBlock",
    "ViTDetPositionEmbedding",
    "ViTDetResidualBlock",
    "ViTImagePreprocessor",
]
