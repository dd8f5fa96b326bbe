"""What each preset is known to score, and its size: the `keras-vit presets` table.

`PARAMETERS` are `model.count_params()` of each preset's keras_vit model
(tested in tests/presets/test_published.py; for ViT also equal to timm's
counts in test_vit_presets.py). Keras counts every weight, so DETR's count
includes its ResNet's frozen batch-norm statistics (about 0.1M), which
torch's `parameters()` leaves out (DETR's 41.5M). `PUBLISHED` quotes the score of the released
weights, with where it comes from; keras_vit has not re-measured them (the
datasets cannot be downloaded here).

- ViT, DeiT and the hybrids: ImageNet-1k validation top-1 of the same timm
  weights at the preset's resolution, from timm's `results/results-imagenet.csv`
  (commit aa4b585). ViT-H/14 (orig_in21k) has no ImageNet-1k head, so no score.
  The pre-training presets (`*_in21k`, `vit_b16_mae`) quote what their
  authors report after fine-tuning on ImageNet-1k (the google-research
  vision_transformer README; the MAE paper).
- DETR: COCO val2017 box AP from the DETR repository's README.
- DPT: the DPT repository's `EVALUATION.md` (KITTI, NYUv2) and the paper's
  ADE20K table (DPT-Hybrid 49.02 mIoU; DPT-Large 47.63). The MiDaS 3.0
  relative-depth models have no single score (zero-shot tables per dataset).
- Segmenter: ADE20K validation mIoU, single scale, from the Segmenter
  repository's README.
- Swin: ImageNet-1k validation top-1 from the Swin-Transformer repository's
  MODELHUB.md (at the preset's resolution).
- MViTv2: ImageNet-1k validation top-1 at 224 from the facebookresearch/mvit
  README.
- ViTDet: COCO val2017 box AP of detectron2's Mask R-CNN (and Cascade Mask
  R-CNN) on the backbone, from detectron2's projects/ViTDet README: the
  backbone's weights come from those detectors, whose heads keras_vit does
  not have (DETR on the backbone is what keras_vit trains). The counts are
  the backbone with its pyramid: transformers' `VitDetBackbone` (the plain
  ViT, B 85,889,024) plus the pyramid.
"""

PARAMETERS = {
    "detr_r101": 60_675_360,
    "detr_r101_dc5": 60_675_360,
    "detr_r50": 41_631_008,
    "detr_r50_dc5": 41_631_008,
    "dpt_hybrid": 122_377_985,
    "dpt_hybrid_kitti": 122_377_985,
    "dpt_hybrid_nyu": 122_377_985,
    "dpt_large": 343_030_465,
    "dpt_hybrid_ade": 123_565_932,
    "dpt_large_ade": 344_301_356,
    "seg_base_8_linear": 88_466_838,
    "seg_base_mask": 102_497_580,
    "seg_large_mask": 333_234_476,
    "seg_small_mask": 26_033_964,
    "seg_tiny_mask": 6_713_388,
    "deit_b16": 86_567_656,
    "deit_s16": 22_050_664,
    "deit_ti16": 5_717_416,
    "r26_vit_s32": 36_431_912,
    "r50_vit_b16": 98_950_952,
    "r_vit_ti16": 6_337_704,
    "vit_b16": 86_567_656,
    "vit_b32": 88_224_232,
    "vit_b8": 86_576_872,
    "vit_h14": 632_045_800,
    "vit_l16": 304_326_632,
    "vit_l32": 306_632_680,
    "vit_s16": 22_050_664,
    "vit_s32": 22_878_952,
    "vit_ti16": 5_717_416,
    "vit_ti16_in21k": 9_740_115,
    "vit_s16_in21k": 30_075_219,
    "vit_b16_in21k": 102_595_923,
    "vit_l16_in21k": 325_690_707,
    "vit_b16_orig_in21k": 85_798_656,
    "vit_b16_mae": 85_798_656,
    "swin_t": 28_288_354,
    "swin_s": 49_606_258,
    "swin_b": 87_768_224,
    "swin_b_384": 87_903_584,
    "swin_l": 196_532_476,
    "mvitv2_t": 24_173_320,
    "mvitv2_s": 34_870_216,
    "mvitv2_b": 51_472_744,
    "mvitv2_l": 217_992_952,
    "vitdet_b": 91_449_024,
    "vitdet_l": 311_237_888,
    "vitdet_h": 641_756_992,
}

_TIMM = "timm results-imagenet.csv"
_SWIN = "Swin-Transformer MODELHUB.md"
_MVIT = "facebookresearch/mvit README"
_VITDET = "detectron2 projects/ViTDet README (heads keras_vit does not offer)"
_AUGREG = "vision_transformer README (AugReg i21k -> ImageNet at 384)"
PUBLISHED = {
    "vit_ti16": ("ImageNet top-1 75.45", _TIMM),
    "vit_s16": ("ImageNet top-1 81.40", _TIMM),
    "vit_s32": ("ImageNet top-1 76.01", _TIMM),
    "vit_b8": ("ImageNet top-1 86.25", _TIMM),
    "vit_b16": ("ImageNet top-1 85.11", _TIMM),
    "vit_b32": ("ImageNet top-1 80.73", _TIMM),
    "vit_l16": ("ImageNet top-1 85.86", _TIMM),
    "vit_l32": ("ImageNet top-1 81.51", _TIMM),
    "vit_h14": ("", "no ImageNet-1k head in the release"),
    "vit_ti16_in21k": ("ImageNet top-1 78.22 fine-tuned at 384", _AUGREG),
    "vit_s16_in21k": ("ImageNet top-1 83.73 fine-tuned at 384", _AUGREG),
    "vit_b16_in21k": ("ImageNet top-1 85.49 fine-tuned at 384", _AUGREG),
    "vit_l16_in21k": ("ImageNet top-1 85.59 fine-tuned at 384", _AUGREG),
    "vit_b16_orig_in21k": ("ImageNet top-1 84.53 fine-tuned at 384", "vision_transformer README (ViT-B/16, i21k)"),
    "vit_b16_mae": ("ImageNet top-1 83.6 fine-tuned", "MAE paper (He et al., CVPR 2022), ViT-B"),
    "deit_ti16": ("ImageNet top-1 72.19", _TIMM),
    "deit_s16": ("ImageNet top-1 79.86", _TIMM),
    "deit_b16": ("ImageNet top-1 81.98", _TIMM),
    "r50_vit_b16": ("ImageNet top-1 84.99", _TIMM),
    "r26_vit_s32": ("ImageNet top-1 81.86", _TIMM),
    "r_vit_ti16": ("ImageNet top-1 71.80", _TIMM),
    "detr_r50": ("COCO box AP 42.0", "DETR README"),
    "detr_r50_dc5": ("COCO box AP 43.3", "DETR README"),
    "detr_r101": ("COCO box AP 43.5", "DETR README"),
    "detr_r101_dc5": ("COCO box AP 44.9", "DETR README"),
    "dpt_hybrid": ("", "MiDaS 3.0 relative depth: zero-shot tables per dataset"),
    "dpt_large": ("", "MiDaS 3.0 relative depth: zero-shot tables per dataset"),
    "dpt_hybrid_kitti": ("KITTI AbsRel 0.062, delta1 0.959", "DPT EVALUATION.md"),
    "dpt_hybrid_nyu": ("NYUv2 AbsRel 0.109, delta1 0.904", "DPT EVALUATION.md"),
    "dpt_hybrid_ade": ("ADE20K mIoU 49.02", "DPT paper"),
    "dpt_large_ade": ("ADE20K mIoU 47.63", "DPT paper"),
    "seg_tiny_mask": ("ADE20K mIoU 38.1", "Segmenter README"),
    "seg_small_mask": ("ADE20K mIoU 45.3", "Segmenter README"),
    "seg_base_mask": ("ADE20K mIoU 48.5", "Segmenter README"),
    "seg_base_8_linear": ("ADE20K mIoU 49.5", "Segmenter README"),
    "seg_large_mask": ("ADE20K mIoU 51.8", "Segmenter README"),
    "swin_t": ("ImageNet top-1 81.2", _SWIN),
    "swin_s": ("ImageNet top-1 83.2", _SWIN),
    "swin_b": ("ImageNet top-1 83.5", _SWIN),
    "swin_b_384": ("ImageNet top-1 86.4 (ImageNet-22k pre-trained)", _SWIN),
    "swin_l": ("ImageNet top-1 86.3 (ImageNet-22k pre-trained)", _SWIN),
    "mvitv2_t": ("ImageNet top-1 82.3", _MVIT),
    "mvitv2_s": ("ImageNet top-1 83.6", _MVIT),
    "mvitv2_b": ("ImageNet top-1 84.4", _MVIT),
    "mvitv2_l": ("ImageNet top-1 85.3", _MVIT),
    "vitdet_b": ("COCO box AP 51.6 (Mask R-CNN head; Cascade 54.0)", _VITDET),
    "vitdet_l": ("COCO box AP 55.5 (Mask R-CNN head; Cascade 57.6)", _VITDET),
    "vitdet_h": ("COCO box AP 56.7 (Mask R-CNN head; Cascade 58.7)", _VITDET),
}


def parameters_text(count):
    """`86.6M`: a count in millions, one decimal."""
    return f"{count / 1e6:.1f}M"
