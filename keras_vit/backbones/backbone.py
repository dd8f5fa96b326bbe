"""The shared base of keras_vit backbones: presets and preset directories."""

import keras

from keras_vit.presets.registry import ClassPresets


class Backbone:
    """Mixed into every backbone (`class ViTBackbone(Backbone, keras.Model)`).

    - `from_preset(preset)`: the backbone part of a task preset (a name such
      as `"vit_b16"` or `"detr_r50"`, a task's preset directory, a checkpoint)
      or a directory written by `backbone.save_to_preset`;
    - `save_to_preset(directory)`: the backbone alone, in the preset format;
    - `presets`: `{name: description}` of the built-in presets it comes from.
    """

    presets = ClassPresets()
    # True for backbones built for one input size (their positions are
    # resized once, at build): built at the size a caller needs.
    fixed_input_size = False

    @classmethod
    def from_preset(cls, preset, load_weights=True, **kwargs):
        """The backbone of a preset; `kwargs` are the task family's
        `from_preset` arguments that concern the backbone (e.g. `image_size`)."""
        from keras_vit.presets.loader import load_backbone

        return load_backbone(cls, preset, load_weights=load_weights, **kwargs)

    def save_to_preset(self, directory, metadata=None):
        """Writes this backbone alone as a preset directory."""
        from keras_vit.presets.preset_directory import write_preset

        return write_preset(self, directory, metadata=metadata)

    def export(self, filepath, format="tf_saved_model", verbose=None, image_size=None, batch_size=None, verify=True):
        """Writes the backbone for serving, as `Task.export` does a task
        (SavedModel or ONNX, atomically, checked outside Keras), with its own
        inputs (preprocessed images) and outputs (ViTDet: P2...P6).
        `image_size`: `(H, W)` for a backbone built for any size."""
        from keras_vit.export import export_task

        return export_task(
            self, filepath, format=format, image_size=image_size, batch_size=batch_size, verify=verify,
            verbose=verbose,
        )


PYRAMID_LEVELS = ("P2", "P3", "P4", "P5")


class FeaturePyramid:
    """The multi-scale backbone contract (keras-hub's `FeaturePyramidBackbone`
    convention), mixed into backbones with stages:

    - `pyramid_outputs`: `{"P2": tensor, ..., "P5": tensor}`, the symbolic
      outputs of the four stages, P2 to P5 at strides 4, 8, 16 and 32 (a
      dilated stage keeps its predecessor's stride; its level keeps its
      name). `keras.Model(backbone.inputs, backbone.pyramid_outputs)` maps
      images to the four maps;
    - `pyramid_feature_names`: `{level: feature name}` (e.g. `"P5":
      "stage_4"`), names of `feature_extractor`;
    - `pyramid_extractor(levels)`: that model for some levels.

    A class sets `self._feature_tensors = {name: tensor}` and `self._pyramid =
    {level: feature name}` after building; the mixin gives it `feature_names`
    and `feature_extractor(names)` too.
    """

    @property
    def feature_names(self):
        """Names of the published features, in network order."""
        return list(self._feature_tensors)

    def feature_extractor(self, names=None):
        """A model mapping images to `{name: feature map}` (see `feature_names`)."""
        from keras_vit.utils.validation import check_feature_names

        names = self.feature_names if names is None else check_feature_names(names, self.feature_names)
        return keras.Model(self.inputs[0], {n: self._feature_tensors[n] for n in names}, name=f"{self.name}_features")

    @property
    def pyramid_feature_names(self):
        return dict(self._pyramid)

    @property
    def pyramid_outputs(self):
        return {level: self._feature_tensors[name] for level, name in self._pyramid.items()}

    def pyramid_extractor(self, levels=None):
        """A model mapping images to `{level: feature map}` for `levels`
        (names among `"P2"`...`"P5"`; all by default)."""
        levels = list(self._pyramid) if levels is None else check_pyramid_levels(levels, self._pyramid)
        return keras.Model(
            self.inputs[0], {level: self._feature_tensors[self._pyramid[level]] for level in levels},
            name=f"{self.name}_pyramid",
        )


def block_layout_map(device_mesh, model_parallel_dim_name, data_parallel_dim_name, block=r".*stage_\d+_block_\d+"):
    """The Megatron-style `keras.distribution.LayoutMap` of the hierarchical
    backbones (blocks named `stage_S_block_B` with `attention/qkv`,
    `attention/proj`, `fc1`, `fc2`): `qkv`/`fc1` split by output columns and
    `proj`/`fc2` by input rows over the model axis, the patch embedding by
    output channels, everything else replicated. `block`: the blocks' path
    pattern (ViTDet's are `block_N`)."""
    from keras_vit.utils.validation import check_mesh_axes

    check_mesh_axes(device_mesh, model_parallel_dim_name, data_parallel_dim_name)
    model = model_parallel_dim_name
    layout_map = keras.distribution.LayoutMap(device_mesh)
    layout_map[r"(.*/)?patch_embedding/kernel"] = (None, None, None, model)
    layout_map[block + r"/attention/qkv/kernel"] = (None, model)
    layout_map[block + r"/attention/qkv/bias"] = (model,)
    layout_map[block + r"/attention/proj/kernel"] = (model, None)
    layout_map[block + r"/fc1/kernel"] = (None, model)
    layout_map[block + r"/fc1/bias"] = (model,)
    layout_map[block + r"/fc2/kernel"] = (model, None)
    return layout_map


def check_pyramid_levels(levels, available):
    """`levels` (a level or a list) as a list, or a ValueError listing the available ones."""
    if isinstance(levels, str):
        levels = [levels]
    for level in levels:
        if level not in available:
            raise ValueError(
                f"Unknown pyramid level {level!r}: this backbone publishes {list(available)} "
                "(P2...P5 at strides 4...32)."
            )
    return list(levels)
