"""The shared base of keras_vit backbones: presets and preset directories."""

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
