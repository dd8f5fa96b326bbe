"""The ViTDet family: its preset table and its registration with the shared loader.

A preset is a `ViTDetBackbone` (plain ViT + simple feature pyramid) at
1024 x 1024, the paper's configurations (detectron2
`projects/ViTDet/configs/COCO/mask_rcnn_vitdet_{b,l,h}_*.py`):

- `source="detectron2"` (default): the backbone of detectron2's released
  COCO Mask R-CNN checkpoints (`.pkl`, read without unpickling code), the
  pyramid included; from `$KERAS_VIT_DETECTRON2_ENDPOINT` (default
  `https://dl.fbaipublicfiles.com/detectron2`);
- `source="mae"`: the ImageNet-1k MAE initialisation the paper starts from,
  through timm's `vit_*_patch*_224.mae` (the plain ViT; the pyramid and the
  relative tables freshly initialised, the tables at zero as detectron2
  does). ViT-H's MAE patches are 14 x 14: its kernel is resized to 16 x 16
  and its 16 x 16 position grid to 14 x 14 (bicubic), as the paper's
  `mae_pretrain_vit_huge_p14to16` file does.

The published numbers are those of detectron2's detectors on this backbone
(Mask R-CNN and Cascade Mask R-CNN), heads keras_vit does not offer; see
docs/models/vitdet.md.
"""

import copy
import os

from keras_vit.presets.pooled_classifiers import lazy
from keras_vit.presets.registry import PresetFamily
from keras_vit.presets.registry import register_family

SOURCES = ("detectron2", "mae")
_DETECTRON2 = "https://dl.fbaipublicfiles.com/detectron2"


def _preset(hidden_dim, num_layers, num_heads, drop_path_rate, description, detectron2, mae, box_ap):
    return {
        "description": description,
        "backbone": {
            "image_shape": (1024, 1024, 3),
            "patch_size": 16,
            "hidden_dim": hidden_dim,
            "num_layers": num_layers,
            "num_heads": num_heads,
            "window_size": 14,
            "rel_pos_grid": (64, 64),
            "drop_path_rate": drop_path_rate,
        },
        "detectron2": detectron2,
        "mae": mae,
        # COCO box AP of detectron2's detectors on it (projects/ViTDet/README.md).
        "box_ap": box_ap,
    }


VITDET_PRESETS = {
    "vitdet_b": _preset(
        768, 12, 12, 0.1, "ViTDet ViT-B (global blocks 2, 5, 8, 11) + simple feature pyramid, COCO (Mask R-CNN), 1024.",
        "ViTDet/COCO/mask_rcnn_vitdet_b/f325346929/model_final_61ccd1.pkl", "timm/vit_base_patch16_224.mae",
        {"mask_rcnn": 51.6, "cascade_mask_rcnn": 54.0},
    ),
    "vitdet_l": _preset(
        1024, 24, 16, 0.4, "ViTDet ViT-L (global blocks 5, 11, 17, 23) + simple feature pyramid, COCO (Mask R-CNN), 1024.",
        "ViTDet/COCO/mask_rcnn_vitdet_l/f325599698/model_final_6146ed.pkl", "timm/vit_large_patch16_224.mae",
        {"mask_rcnn": 55.5, "cascade_mask_rcnn": 57.6},
    ),
    "vitdet_h": _preset(
        1280, 32, 16, 0.5, "ViTDet ViT-H (global blocks 7, 15, 23, 31) + simple feature pyramid, COCO (Mask R-CNN), 1024.",
        "ViTDet/COCO/mask_rcnn_vitdet_h/f329145471/model_final_7224f1.pkl", "timm/vit_huge_patch14_224.mae",
        {"mask_rcnn": 56.7, "cascade_mask_rcnn": 58.7},
    ),
}


def table_config(name):
    from keras_vit.backbones.vitdet_backbone import default_global_blocks

    config = dict(VITDET_PRESETS[name]["backbone"])
    config["global_attention_blocks"] = default_global_blocks(config["num_layers"])
    return config


def build_from_config(config):
    from keras_vit.backbones.vitdet_backbone import ViTDetBackbone

    return ViTDetBackbone.from_config(copy.deepcopy(config))


def _fetch(name, source):
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.conversion.vitdet import load_vitdet_state_dict
    from keras_vit.conversion.vitdet import resample_patch_kernel
    from keras_vit.conversion.vitdet import resample_positions
    from keras_vit.presets.download import download
    from keras_vit.presets.download import hf_file_url

    entry = VITDET_PRESETS[name]
    model = build_from_config(table_config(name))
    if source == "detectron2":
        url = f"{os.environ.get('KERAS_VIT_DETECTRON2_ENDPOINT', _DETECTRON2).rstrip('/')}/{entry['detectron2']}"
        path = download(url, filename=f"{name}_" + os.path.basename(entry["detectron2"]))
        load_vitdet_state_dict(model, read_checkpoint(path))
        return model, {"source": url}
    url = hf_file_url(entry["mae"], "model.safetensors")
    path = download(url, filename=entry["mae"].replace("/", "--") + ".safetensors")
    arrays = dict(read_checkpoint(path))
    arrays["patch_embed.proj.weight"] = resample_patch_kernel(arrays["patch_embed.proj.weight"], model.patch_size)
    arrays["pos_embed"] = resample_positions(arrays["pos_embed"], model.pretrain_image_size // model.patch_size)
    load_vitdet_state_dict(model, arrays)
    return model, {"source": url}


def override(config, kwargs):
    """`image_size=(H, W)` (or an int) and `dtype`, `drop_path_rate`: the
    weights fit every input size (positions and tables are resized), so all
    apply before the weights load."""
    from keras_vit.utils.validation import check_pair

    kwargs = dict(kwargs)
    target = copy.deepcopy(config)
    size = kwargs.pop("image_size", None)
    if size is not None:
        size = check_pair("image_size", size)
        target["image_shape"] = (size[0], size[1], target["image_shape"][-1])
    for key in ("dtype", "drop_path_rate"):
        if key in kwargs:
            target[key] = kwargs.pop(key)
    if kwargs:
        raise ValueError(
            f"Unknown argument(s) {sorted(kwargs)} for ViTDetBackbone.from_preset. Arguments: image_size, dtype, "
            "drop_path_rate (build a ViTDetBackbone(...) for other sizes)."
        )
    return target, target


def transfer_weights(source, target):
    raise ValueError("ViTDet presets load at any size directly; nothing to transfer.")


def _read_checkpoint(arrays, path, hf_config, options):
    from keras_vit.conversion.vitdet import detect_vitdet_layout
    from keras_vit.conversion.vitdet import vitdet_config_from_state_dict

    if detect_vitdet_layout(arrays) is None:
        return None
    if hf_config is not None and hf_config.get("model_type") not in (None, "vitdet"):
        return None
    try:
        return vitdet_config_from_state_dict(arrays, hf_config=hf_config)
    except KeyError as error:
        raise ValueError(
            f"This ViTDet checkpoint is incomplete: {error.args[0] if error.args else error} Download it again "
            "(a partial download?), or load it with the library that wrote it."
        ) from None


VITDET_FAMILY = register_family(
    PresetFamily(
        name="vitdet",
        task="keras_vit>ViTDetBackbone",
        backbone="keras_vit>ViTDetBackbone",
        presets=VITDET_PRESETS,
        table_config=table_config,
        fetch=_fetch,
        build=build_from_config,
        override=override,
        transfer=transfer_weights,
        read_checkpoint=_read_checkpoint,
        load_checkpoint=lazy("keras_vit.conversion.vitdet", "load_vitdet_state_dict"),
        sources=SOURCES,
    )
)
