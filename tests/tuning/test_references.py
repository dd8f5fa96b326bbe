"""keras_vit.tuning against references on the same timm ViT and weights:
VPT against a torch forward written from the paper, LoRA against PEFT, layer
decay against timm's parameter groups with torch's AdamW."""

import keras
import numpy as np
import pytest

from keras_vit import tuning
from keras_vit.conversion import load_timm_state_dict
from keras_vit.conversion import vit_config_from_timm
from layer_checks import to_np
from reference_models import images
from reference_models import keras_model
from reference_models import max_abs_diff
from reference_models import randomize

timm = pytest.importorskip("timm")
torch = pytest.importorskip("torch")

TOLERANCE = 1e-4
# Odd sizes: width 30 with 3 heads, MLP 37, a 9 x 11 grid of 3-pixel patches.
SIZE, PATCH, WIDTH, HEADS, DEPTH, CLASSES = (27, 33), 3, 30, 3, 3, 5


def _timm_vit(seed=0):
    reference = timm.models.vision_transformer.VisionTransformer(
        img_size=SIZE, patch_size=PATCH, embed_dim=WIDTH, depth=DEPTH, num_heads=HEADS,
        mlp_ratio=37 / WIDTH, num_classes=CLASSES,
    )
    return randomize(reference, seed=seed)


def _keras(reference):
    state = reference.state_dict()
    model = keras_model(vit_config_from_timm(state, num_heads=HEADS, image_size=SIZE))
    load_timm_state_dict(model, state)
    return model


@pytest.fixture(scope="module")
def reference():
    return _timm_vit()


def _vpt_forward(reference, x, prompts, deep):
    """VPT on timm's blocks, as the paper describes it: prompts after the
    position embedding, between the class token and the patches, without
    position embedding; deep prompts replace the previous block's prompt
    outputs; the head reads the class token."""
    count = prompts[0].shape[0]
    tokens = reference._pos_embed(reference.patch_embed(x))  # class token + position embedding
    tokens = reference.norm_pre(tokens)
    batch = tokens.shape[0]
    for i, block in enumerate(reference.blocks):
        if i == 0 or deep:
            p = prompts[i][None].expand(batch, -1, -1)
            rest = tokens[:, 1:] if i == 0 else tokens[:, 1 + count:]
            tokens = torch.cat([tokens[:, :1], p, rest], dim=1)
        tokens = block(tokens)
    tokens = reference.norm(torch.cat([tokens[:, :1], tokens[:, 1 + count:]], dim=1))
    return reference.head(tokens[:, 0]), tokens


@pytest.mark.parametrize("deep", [False, True], ids=["shallow", "deep"])
def test_vpt_equals_the_papers_forward_on_timm(reference, deep):
    model = tuning.prepare(_keras(reference), "vpt", num_prompts=4, deep=deep)
    rng = np.random.default_rng(1)
    prompts = []
    for i in range(DEPTH if deep else 1):
        value = rng.normal(size=(4, WIDTH)).astype("float32")
        model.backbone.get_layer(f"prompts_{i}").prompts.assign(value)
        prompts.append(torch.from_numpy(value))
    x, x_torch = images((2, *SIZE, 3))
    with torch.no_grad():
        logits, tokens = _vpt_forward(reference, x_torch, prompts, deep)
    assert max_abs_diff(model(x), logits) <= TOLERANCE
    assert max_abs_diff(model.backbone(x), tokens) <= TOLERANCE
    # the prompts change the output: the check above is not vacuous
    with torch.no_grad():
        assert max_abs_diff(model(x), reference(x_torch)) > 1e-2


def test_vpt_initialisation_bound(reference):
    model = tuning.prepare(_keras(reference), "vpt", num_prompts=50, deep=True)
    limit = (6.0 / (3 * PATCH * PATCH + WIDTH)) ** 0.5
    values = np.concatenate([to_np(model.backbone.get_layer(f"prompts_{i}").prompts) for i in range(DEPTH)])
    assert np.abs(values).max() <= limit
    assert np.abs(values).max() > 0.9 * limit  # uniform over the whole range


def test_lora_equals_peft(reference):
    peft = pytest.importorskip("peft")
    rank, alpha = 3, 5.0
    model = _keras(reference)
    before = to_np(model(images((2, *SIZE, 3))[0]))
    model = tuning.prepare(model, "lora", rank=rank, alpha=alpha)
    x, x_torch = images((2, *SIZE, 3))
    # LoRA starts as the identity (B = 0)
    np.testing.assert_allclose(to_np(model(x)), before, atol=1e-6)

    config = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=["qkv"], lora_dropout=0.0)
    wrapped = peft.get_peft_model(_timm_vit(), config)
    generator = torch.Generator().manual_seed(3)
    for i, block in enumerate(wrapped.base_model.model.blocks):
        qkv = block.attn.qkv
        with torch.no_grad():
            qkv.lora_A["default"].weight.copy_(torch.randn(qkv.lora_A["default"].weight.shape, generator=generator))
            qkv.lora_B["default"].weight.copy_(torch.randn(qkv.lora_B["default"].weight.shape, generator=generator) * 0.1)
        layer = model.backbone.get_layer(f"block_{i}").attention.qkv
        # PEFT: A (r, in), B (out, r); Keras: lora_kernel_a (in, r), lora_kernel_b (r, out)
        layer.lora_kernel_a.assign(qkv.lora_A["default"].weight.detach().numpy().T)
        layer.lora_kernel_b.assign(qkv.lora_B["default"].weight.detach().numpy().T)
    wrapped.eval()
    with torch.no_grad():
        expected = wrapped(x_torch)
    assert max_abs_diff(model(x), expected) <= TOLERANCE
    assert max_abs_diff(model(x), before) > 1e-2
    # the same trainable count as PEFT (LoRA factors) plus the head
    peft_lora = sum(p.numel() for n, p in wrapped.named_parameters() if "lora_" in n)
    assert tuning.trainable_parameters(model) == peft_lora + WIDTH * CLASSES + CLASSES


def test_layer_decay_equals_timm_param_groups_with_torch_adamw(reference):
    from timm.optim._param_groups import param_groups_layer_decay

    decay, lr, weight_decay, steps = 0.6, 1e-2, 0.05, 3
    torch_model = _timm_vit(seed=4)
    model = _keras(torch_model)
    groups = param_groups_layer_decay(
        torch_model, weight_decay=weight_decay, no_weight_decay_list=torch_model.no_weight_decay(), layer_decay=decay
    )
    for group in groups:  # what timm's schedulers do with lr_scale
        group["lr"] = lr * group["lr_scale"]
    torch_optimizer = torch.optim.AdamW(groups, lr=lr, eps=1e-7)
    optimizer = tuning.layer_decay(
        keras.optimizers.AdamW(learning_rate=lr, weight_decay=weight_decay, epsilon=1e-7), model, decay
    )
    scratch = _keras(torch_model)  # the gradients in keras_vit's layout
    generator = torch.Generator().manual_seed(5)
    for _ in range(steps):
        # Bounded away from zero: Keras' Adam adds epsilon after the bias
        # correction, torch before it, which only matters for gradients
        # near epsilon (there the two differ by up to lr).
        grads = {}
        for name, param in torch_model.named_parameters():
            value = torch.randn(param.shape, generator=generator)
            grads[name] = torch.sign(value) * (0.02 + value.abs() * 0.1)
        for name, param in torch_model.named_parameters():
            param.grad = grads[name].clone()
        torch_optimizer.step()
        load_timm_state_dict(scratch, grads)
        optimizer.apply([keras.ops.copy(g.value) for g in scratch.weights], model.trainable_variables)
    expected = _keras(torch_model)
    worst = max(max_abs_diff(a, b) for a, b in zip(model.weights, expected.weights))
    assert worst <= 1e-5
    # Without the decay the weights differ: the test can fail.
    plain = _keras(_timm_vit(seed=4))
    assert max(max_abs_diff(a, b) for a, b in zip(plain.weights, expected.weights)) > 1e-3


def test_layer_ids_are_timms(reference):
    model = _keras(reference)
    ids = tuning.layer_ids(model)
    assert ids["patch_embedding/projection/kernel"] == 0
    assert ids["class_token/token"] == 0 and ids["position_embedding/embedding"] == 0
    assert ids["block_0/attention/qkv/kernel"] == 1
    assert ids[f"block_{DEPTH - 1}/fc2/bias"] == DEPTH
    assert ids["encoder_norm/gamma"] == DEPTH  # as the last block
    assert ids["head/kernel"] == DEPTH + 1


def _swin_layer(timm_name):
    """The keras_vit Swin layer a timm Swin parameter lives in."""
    parts = timm_name.split(".")
    if parts[0] == "patch_embed":
        return "patch_embedding" if parts[1] == "proj" else "patch_norm"
    if parts[0] == "layers":
        stage = int(parts[1]) + 1
        return f"stage_{stage}_merging" if parts[2] == "downsample" else f"stage_{stage}_block_{parts[3]}"
    return {"norm": "final_norm", "head": "head"}[parts[0]]


def test_swin_layer_decay_groups_are_timms():
    """Per layer: timm's lr_scale (its Swin group_matcher: a merging shares
    the id of its stage's first block, the final norm the last block's) and
    the count of weights without weight decay (rank <= 1 and the relative
    position tables)."""
    from timm.optim._param_groups import param_groups_layer_decay

    from keras_vit import Swin
    from keras_vit.conversion.swin import swin_config_from_state_dict
    from keras_vit import SwinBackbone

    decay = 0.7
    reference = randomize(timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, img_size=(48, 48), embed_dim=10, depths=(2, 3, 1),
        num_heads=(1, 5, 5), window_size=3, num_classes=7,
    ))
    config = swin_config_from_state_dict({k: v.numpy() for k, v in reference.state_dict().items()}, image_size=48)
    model = Swin(SwinBackbone(**config["backbone"]), num_classes=7)
    groups = param_groups_layer_decay(
        reference, weight_decay=0.05, no_weight_decay_list=reference.no_weight_decay(), layer_decay=decay
    )
    expected_scale, expected_no_decay = {}, {}
    names = {id(p): n for n, p in reference.named_parameters()}
    for group in groups:
        for param in group["params"]:
            layer = _swin_layer(names[id(param)])
            expected_scale.setdefault(layer, set()).add(round(group["lr_scale"], 9))
            expected_no_decay[layer] = expected_no_decay.get(layer, 0) + (group["weight_decay"] == 0.0)
    ids = tuning.layer_ids(model)
    top = max(ids.values())
    from keras_vit.tuning.layer_decay import no_weight_decay

    skipped = {id(v) for v in no_weight_decay(model)}
    by_layer_scale, by_layer_no_decay = {}, {}
    for layer in model.backbone.layers[1:] + [model.get_layer("head")]:
        if not layer.weights:
            continue
        by_layer_scale[layer.name] = {round(decay ** (top - ids[v.path]), 9) for v in layer.weights}
        by_layer_no_decay[layer.name] = sum(id(v) in skipped for v in layer.weights)
    assert by_layer_scale == expected_scale
    # timm's fused qkv bias is one tensor, as keras_vit's: the counts agree.
    assert by_layer_no_decay == expected_no_decay


def test_mvit_layer_decay_groups_are_timms():
    """MViTv2: timm's group_matcher gives one id per stage, the final norm
    the last stage's; the relative positions get no weight decay."""
    from timm.models.mvitv2 import MultiScaleVit
    from timm.models.mvitv2 import MultiScaleVitCfg
    from timm.optim._param_groups import param_groups_layer_decay

    from keras_vit import MViT
    from keras_vit import MViTBackbone
    from keras_vit.tuning.layer_decay import no_weight_decay

    decay = 0.6
    reference = MultiScaleVit(MultiScaleVitCfg(depths=(1, 2, 1), embed_dim=6, num_heads=1), img_size=(32, 32), num_classes=4)
    model = MViT(MViTBackbone(image_shape=(32, 32, 3), hidden_dim=6, depths=(1, 2, 1), num_heads=1), num_classes=4)
    groups = param_groups_layer_decay(
        reference, weight_decay=0.05, no_weight_decay_list=reference.no_weight_decay(), layer_decay=decay
    )
    names = {id(p): n for n, p in reference.named_parameters()}

    def layer_of(name):
        parts = name.split(".")
        if parts[0] == "stages":
            return f"stage_{int(parts[1]) + 1}_block_{parts[3]}"
        return {"patch_embed": "patch_embedding", "norm": "final_norm", "head": "head"}[parts[0]]

    expected_scale, expected_no_decay = {}, {}
    for group in groups:
        for param in group["params"]:
            layer = layer_of(names[id(param)])
            expected_scale.setdefault(layer, set()).add(round(group["lr_scale"], 9))
            expected_no_decay[layer] = expected_no_decay.get(layer, 0) + (group["weight_decay"] == 0.0)
    ids = tuning.layer_ids(model)
    skipped = {id(v) for v in no_weight_decay(model)}
    top = 4  # three stages, the head after them
    scale, no_decay = {}, {}
    for layer in model.backbone.layers[1:] + [model.get_layer("head")]:
        if layer.weights:
            scale[layer.name] = {round(decay ** (top - ids[v.path]), 9) for v in layer.weights}
            no_decay[layer.name] = sum(id(v) in skipped for v in layer.weights)
    assert scale == expected_scale
    assert no_decay == expected_no_decay
