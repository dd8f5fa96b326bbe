"""The DPT families (depth estimation and semantic segmentation): the six
original releases and the registration with the shared loader.

A preset is fetched once from the original `.pt` release (default; file names
carry the first 8 hex digits of their sha256, which is checked) or, for the
three releases transformers ported, from the hub (`source="transformers"`),
converted in memory (every tensor placed and shape-checked) and cached as a
preset directory.

The two sources differ in one number: transformers' configs use LayerNorm
epsilon 1e-12, the original timm backbones 1e-6. Each preset keeps its own
source's value, so each equals its source.

The ADE20K releases hold 24 x 24 position embeddings (their timm backbones
were built at 384) and run at 480: the embeddings are resized as both sources
do it on the fly (bilinear, align_corners=False) when the preset is built.

Sources: `$KERAS_VIT_DPT_ENDPOINT` (default
`https://github.com/isl-org/DPT/releases/download/1_0`) and the Hugging Face hub.
"""

import copy
import os

import keras

from keras_vit.presets.registry import PresetFamily
from keras_vit.presets.registry import image_preprocessor_config
from keras_vit.presets.registry import register_family
from keras_vit.presets.registry import serialized
from keras_vit.presets.registry import sized_override
from keras_vit.presets.registry import transfer_resizing_positions

_LARGE = {
    "patch_size": (16, 16), "hidden_dim": 1024, "num_layers": 24, "num_heads": 16, "mlp_dim": 4096,
}
_HYBRID = {
    "patch_size": (1, 1), "hidden_dim": 768, "num_layers": 12, "num_heads": 12, "mlp_dim": 3072,
    "hybrid_layers": (3, 4, 9),
}
# The taps of the releases (0-based blocks; ResNet stages by keras_vit's
# names: the original code's hooks) and their reassembled widths.
DPT_TAPS = {
    "large": ("block_5", "block_11", "block_17", "block_23"),
    "base": ("block_2", "block_5", "block_8", "block_11"),
    "hybrid": ("stage_0", "stage_1", "block_8", "block_11"),
}
DPT_NECK_WIDTHS = {
    "large": (256, 512, 1024, 1024),
    "base": (96, 192, 384, 768),
    "hybrid": (256, 512, 768, 768),
}
_NECK = {
    "large": {"taps": list(DPT_TAPS["large"]), "neck_widths": list(DPT_NECK_WIDTHS["large"]),
              "reassemble_factors": [4, 2, 1, 0.5], "fusion_width": 256},
    # The ResNet stages go to the neck as they are: their factors are unused.
    "hybrid": {"taps": list(DPT_TAPS["hybrid"]), "neck_widths": list(DPT_NECK_WIDTHS["hybrid"]),
               "reassemble_factors": [1, 1, 1, 0.5], "fusion_width": 256},
}
_RELEASE = "https://github.com/isl-org/DPT/releases/download/1_0"


def _entry(description, kind, task, size, original, transformers=None, **head):
    return {
        "description": description, "kind": kind, "task": task, "image_size": size,
        "original": original, "transformers": transformers, "head": head,
    }


DPT_PRESETS = {
    "dpt_large": _entry(
        "DPT-Large (ViT-L/16, 384): MiDaS 3.0 relative inverse depth, trained on MIX-6.",
        "large", "depth", 384, "dpt_large-midas-2f21e586.pt", "Intel/dpt-large",
    ),
    "dpt_hybrid": _entry(
        "DPT-Hybrid (R50+ViT-B/16, 384): MiDaS 3.0 relative inverse depth, trained on MIX-6.",
        "hybrid", "depth", 384, "dpt_hybrid-midas-501f0c75.pt", "Intel/dpt-hybrid-midas",
    ),
    "dpt_hybrid_kitti": _entry(
        "DPT-Hybrid fine-tuned on KITTI: metric depth in metres (AbsRel 0.062, delta1 0.959; evaluated at 352x1216).",
        "hybrid", "depth", 384, "dpt_hybrid_kitti-cb926ef4.pt", depth_scale=6.016e-5, depth_shift=0.00579,
    ),
    "dpt_hybrid_nyu": _entry(
        "DPT-Hybrid fine-tuned on NYUv2: metric depth in metres (AbsRel 0.110, delta1 0.904; evaluated at 480x640).",
        "hybrid", "depth", 384, "dpt_hybrid_nyu-2ce69ec7.pt", depth_scale=3.05e-4, depth_shift=0.1378,
    ),
    "dpt_large_ade": _entry(
        "DPT-Large on ADE20K, 150 classes, 480 (47.63 mIoU).",
        "large", "segmentation", 480, "dpt_large-ade20k-b12dca68.pt", "Intel/dpt-large-ade",
    ),
    "dpt_hybrid_ade": _entry(
        "DPT-Hybrid on ADE20K, 150 classes, 480 (49.02 mIoU).",
        "hybrid", "segmentation", 480, "dpt_hybrid-ade20k-53898607.pt",
    ),
}
SOURCES = ("original", "transformers")
DEPTH_TASK, SEGMENTATION_TASK = "keras_vit>DPTDepthEstimator", "keras_vit>DPTImageSegmenter"


def dpt_endpoint():
    return os.environ.get("KERAS_VIT_DPT_ENDPOINT", _RELEASE).rstrip("/")


def preprocessor_config(size):
    """DPT's normalisation (both releases and tasks): pixels/255, mean = std = 0.5."""
    return image_preprocessor_config(size)


def table_config(name, size=None, layer_norm_epsilon=1e-6):
    """The task config of a table preset (no weights); `size` defaults to the
    release's working resolution."""
    entry = DPT_PRESETS[name]
    size = entry["image_size"] if size is None else size
    backbone = {
        **(_LARGE if entry["kind"] == "large" else _HYBRID),
        "image_shape": (size, size, 3), "layer_norm_epsilon": layer_norm_epsilon, "gelu_approximate": False,
    }
    config = {
        "backbone": serialized("keras_vit>ViTBackbone", backbone), **copy.deepcopy(_NECK[entry["kind"]]),
        "readout": "project", "preprocessor": preprocessor_config(size),
    }
    if entry["task"] == "segmentation":
        config.update(num_classes=150, use_batch_norm=True, auxiliary_head=True, dropout_rate=0.1)
    else:
        config.update(use_batch_norm=False, add_projection=False)
        config["depth_scale"] = entry["head"].get("depth_scale")
        config["depth_shift"] = entry["head"].get("depth_shift")
    return config


def _registered(name):
    return DEPTH_TASK if DPT_PRESETS[name]["task"] == "depth" else SEGMENTATION_TASK


def build(config, registered):
    from keras_vit.models import dpt  # noqa: F401  (registers the classes)

    return keras.saving.get_registered_object(registered).from_config(copy.deepcopy(config))


def _fetch(name, source):
    """Downloads and converts a table preset; returns `(model, metadata)`."""
    from keras_vit.conversion.checkpoint import read_checkpoint
    from keras_vit.conversion.dpt import load_original_dpt
    from keras_vit.conversion.dpt import load_transformers_dpt
    from keras_vit.presets.download import download
    from keras_vit.presets.download import name_hash_prefix
    from keras_vit.presets.download import hf_file_url

    entry = DPT_PRESETS[name]
    registered = _registered(name)
    if source == "original":
        filename = entry["original"]
        url = f"{dpt_endpoint()}/{filename}"
        path = download(url, filename=filename, sha256=name_hash_prefix(filename))
        epsilon, loader = 1e-6, load_original_dpt
    else:
        if entry["transformers"] is None:
            ported = sorted(n for n, e in DPT_PRESETS.items() if e["transformers"])
            raise ValueError(
                f"transformers has no port of {name!r}; its presets with source='transformers' are {ported}. "
                "Use source='original'."
            )
        from keras_vit.presets.loader import _read_hf

        url = hf_file_url(entry["transformers"], "model.safetensors")
        path, hf_config = _read_hf("hf://" + entry["transformers"])
        epsilon, loader = float(hf_config.get("layer_norm_eps", 1e-12)), load_transformers_dpt
    arrays = read_checkpoint(path)
    # The weights' own grid (24 x 24 in every release), then the working size.
    key = "pretrained.model.pos_embed" if source == "original" else "dpt.embeddings.position_embeddings"
    table = _LARGE if entry["kind"] == "large" else _HYBRID
    stride = table["patch_size"][0] * (16 if "hybrid_layers" in table else 1)
    native_size = stride * int(round((arrays[key].shape[1] - 1) ** 0.5))
    native = build(table_config(name, size=native_size, layer_norm_epsilon=epsilon), registered)
    loader(native, arrays)
    if entry["image_size"] == native_size:
        return native, {"source": url}
    model = build(table_config(name, layer_norm_epsilon=epsilon), registered)
    transfer(native, model)
    return model, {"source": url}


# Weights to another resolution or head (position embeddings resized as DPT does).
transfer = transfer_resizing_positions


def _import_models():
    from keras_vit.models import dpt  # noqa: F401  (registers the classes)


def _read_checkpoint(task):
    def read(arrays, path, hf_config, kwargs):
        from keras_vit.conversion.dpt import ORIGINAL_METRIC_DEPTH
        from keras_vit.conversion.dpt import dpt_format
        from keras_vit.conversion.dpt import original_dpt_config
        from keras_vit.conversion.dpt import transformers_dpt_config

        num_heads = kwargs.pop("num_heads", None)
        found = dpt_format(arrays)
        if found is None:
            return None
        if found == "original":
            base = os.path.basename(str(path)).lower()
            metric = next((v for k, v in ORIGINAL_METRIC_DEPTH.items() if f"_{k}" in base), None)
            registered, config = original_dpt_config(arrays, metric, num_heads=num_heads)
        else:
            if hf_config is None:
                raise ValueError(
                    f"{path} is a transformers DPT checkpoint without its config.json beside it; transformers' "
                    "configs hold what the tensors do not (taps, epsilon, heads). Put config.json next to it "
                    "or load hf://org/name."
                )
            registered, config = transformers_dpt_config(hf_config)
            if num_heads is not None and num_heads != config["backbone"]["config"]["num_heads"]:
                raise ValueError(
                    f"num_heads={num_heads} contradicts the checkpoint's config.json "
                    f"(num_attention_heads={config['backbone']['config']['num_heads']}); leave it out."
                )
        if registered != task:
            return None
        size = config["backbone"]["config"]["image_shape"][:2]
        config["preprocessor"] = preprocessor_config(size)
        return config

    return read


def _load_checkpoint(model, arrays):
    from keras_vit.conversion.dpt import dpt_format
    from keras_vit.conversion.dpt import load_original_dpt
    from keras_vit.conversion.dpt import load_transformers_dpt

    (load_original_dpt if dpt_format(arrays) == "original" else load_transformers_dpt)(model, arrays)


def _family(name, registered, retargets):
    presets = {n: e for n, e in DPT_PRESETS.items() if _registered(n) == registered}
    return register_family(
        PresetFamily(
            name=name,
            task=registered,
            backbone="keras_vit>ViTBackbone",
            presets=presets,
            table_config=table_config,
            fetch=_fetch,
            build=lambda config: build(config, registered),
            override=sized_override(registered, retargets, _import_models),
            transfer=transfer,
            read_checkpoint=_read_checkpoint(registered),
            load_checkpoint=_load_checkpoint,
            sources=SOURCES,
            checkpoint_options=("num_heads",),
        )
    )


DPT_DEPTH_FAMILY = _family("dpt_depth", DEPTH_TASK, ())
DPT_SEGMENTATION_FAMILY = _family("dpt_segmentation", SEGMENTATION_TASK, ("num_classes",))
