"""The preset table's sizes and scores (`keras-vit presets`): every preset
has a parameter count and a published score (or the reason it has none), and
each count equals `count_params()` of the model the preset builds. The
counts do not depend on the backend: checked in the torch tier, where
building full-size models is quickest."""

import gc

import keras
import pytest

from keras_vit.models.task import Task
from keras_vit.presets import registry
from keras_vit.presets.published import PARAMETERS
from keras_vit.presets.published import PUBLISHED

ALL = sorted(name for family in registry.families() for name in registry.list_presets(family))
# The slow tier: over 200M parameters, and presets whose architecture is
# another's with other weights (dilation and metric heads add no weight).
LARGE = {
    "vit_h14", "vit_l16", "vit_l32", "dpt_large", "dpt_large_ade", "seg_large_mask",
    "detr_r101", "detr_r50_dc5", "detr_r101_dc5", "dpt_hybrid_kitti", "dpt_hybrid_nyu",
    "vit_l16_in21k", "vit_b16_in21k", "vit_b16_orig_in21k",
}
# Counted without building them (35 s for ViTDet-H at 1024): the table's count
# is transformers' VitDetBackbone plus the pyramid's formula, and the Keras
# build of the same layers equals that at ViTDet-B (tests/presets/test_vitdet_presets.py).
COUNTED_FROM_THE_REFERENCE = {"vitdet_l", "vitdet_h"}


def test_every_preset_has_a_size_and_a_score():
    assert sorted(PARAMETERS) == ALL
    assert sorted(PUBLISHED) == ALL
    for name, (score, source) in PUBLISHED.items():
        assert source, name  # where the score comes from, or why there is none
        assert score == "" or any(c.isdigit() for c in score), name


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in ALL if n not in COUNTED_FROM_THE_REFERENCE])
@pytest.mark.one_backend("torch", "counts do not depend on the backend")
def test_parameter_count_is_the_built_models(name, memory_heavy):
    family = registry.family_of_preset(name)
    # A backbone family (ViTDet) builds its backbone; the others their task.
    cls = keras.saving.get_registered_object(family.task) if family.task == family.backbone else Task
    model = cls.from_preset(name, load_weights=False)
    assert model.count_params() == PARAMETERS[name]
    del model
    gc.collect()
