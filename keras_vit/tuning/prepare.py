"""`prepare(model, method, **options)`: one entry for every fine-tuning
protocol of the ViT and VPT papers, on every task.

A method is a set of weights to train; everything else is frozen (each
variable's `trainable` flag, which every backend's training step honours:
frozen weights get no gradient). Methods that add weights (adapters, LoRA,
prompts) add them before the flags are set:

| method | trains | adds |
|---|---|---|
| `"full"` | every weight (DETR: but the ResNet stem and layer1, as the original) | |
| `"linear"` | the head | |
| `"partial"` (`k=`) | the last k encoder blocks, the final norm, the head | |
| `"bias"` | every bias and norm bias (BitFit), the head | |
| `"adapter"` (`reduction=8`) | the adapters, the head | a bottleneck adapter after every block's MLP |
| `"lora"` (`rank=`, `alpha=`, `targets=`) | the LoRA factors, the head | Keras' `enable_lora` on the target Dense layers |
| `"vpt"` (`num_prompts=`, `deep=`, `prompt_dropout=`) | the prompts, the head | VPT-shallow or VPT-deep prompt tokens |

"The head" is every weight outside the backbone: a classifier's head, the
DPT neck and heads, Segmenter's decoder, DETR's transformer and prediction
heads (its backbone is the ResNet). Methods combine as a list:
`["lora", "bias"]`, `["vpt", "partial"]`; `"full"` stands alone.
"""

import numbers

import keras

METHODS = ("full", "linear", "partial", "bias", "adapter", "lora", "vpt")

# The options each method reads, with their defaults.
_OPTIONS = {
    "partial": {"k": None},
    "adapter": {"reduction": 8},
    "lora": {"rank": 4, "alpha": None, "targets": None},
    "vpt": {"num_prompts": 10, "deep": False, "prompt_dropout": 0.0},
}
_COMMON = {"train_head": True, "head_initializer": None, "train_stem": False}


def _check_methods(method):
    methods = [method] if isinstance(method, str) else list(method) if isinstance(method, (list, tuple)) else None
    if not methods or not all(isinstance(m, str) for m in methods):
        raise TypeError(
            f"method must be one of {list(METHODS)} or a list of them, e.g. ['lora', 'bias']. Received: method={method!r}"
        )
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"Unknown fine-tuning method(s) {unknown}. Choose from {list(METHODS)}.")
    if len(set(methods)) != len(methods):
        raise ValueError(f"method lists a method twice. Received: method={method!r}")
    if "full" in methods and len(methods) > 1:
        raise ValueError(f"'full' trains every weight and combines with nothing. Received: method={method!r}")
    return methods


def _check_options(methods, options):
    allowed = dict(_COMMON)
    for m in methods:
        allowed.update(_OPTIONS.get(m, {}))
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        owners = {name: m for m, opts in _OPTIONS.items() for name in opts}
        hints = [f"{u} (an option of {owners[u]!r})" if u in owners else u for u in unknown]
        raise ValueError(
            f"Unknown option(s) for method {methods}: {', '.join(hints)}. Options of these methods: {sorted(allowed)}."
        )
    resolved = {**allowed, **options}

    def positive(name):
        value = resolved[name]
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive int. Received: {name}={value!r}")
        resolved[name] = int(value)

    if "partial" in methods:
        if resolved["k"] is None:
            raise ValueError("method 'partial' needs k=, the number of last encoder blocks to train (e.g. k=1).")
        positive("k")
    if "adapter" in methods:
        positive("reduction")
    if "lora" in methods:
        positive("rank")
        if resolved["alpha"] is not None and (
            isinstance(resolved["alpha"], bool) or not isinstance(resolved["alpha"], numbers.Real) or resolved["alpha"] <= 0
        ):
            raise ValueError(f"alpha must be a positive number or None (= rank). Received: alpha={resolved['alpha']!r}")
        targets = resolved["targets"]
        if targets is not None:
            targets = (targets,) if isinstance(targets, str) else tuple(targets)
            if not targets or not all(isinstance(t, str) for t in targets):
                raise ValueError(f"targets must be Dense layer names such as ('qkv',). Received: targets={resolved['targets']!r}")
            resolved["targets"] = targets
    if "vpt" in methods:
        positive("num_prompts")
        resolved["deep"] = bool(resolved["deep"])
        from keras_vit.utils.validation import check_rate

        resolved["prompt_dropout"] = check_rate("prompt_dropout", resolved["prompt_dropout"])
    return resolved


class _Anatomy:
    """Where a task keeps its encoder blocks, final norm and head.

    `blocks`: the encoder's blocks in order (ViT: `block_i`; DETR: its
    transformer's encoder then decoder layers); `final_norm`: the layers
    right after them; `vit`: the `ViTBackbone`, if the task has one;
    `head_variables`: every weight outside the backbone."""

    def __init__(self, model):
        from keras_vit.backbones.vit_backbone import ViTBackbone

        backbone = getattr(model, "backbone", None)
        if not isinstance(backbone, keras.layers.Layer):
            raise TypeError(
                "model must be a keras_vit task with a backbone (ViT, DETR, DPT*, Segmenter). "
                f"Received: {type(model).__name__}"
            )
        self.model = model
        self.vit = backbone if isinstance(backbone, ViTBackbone) else None
        backbone_ids = {id(v) for v in backbone.weights}
        self.head_variables = [v for v in model.weights if id(v) not in backbone_ids]
        self.stem = []
        if self.vit is not None:
            self.blocks = [backbone.get_layer(f"block_{i}") for i in range(backbone.num_layers)]
            self.final_norm = [backbone.get_layer("encoder_norm")]
            self.default_targets = ("qkv",)
        elif callable(getattr(backbone, "blocks", None)) and not hasattr(model, "decoder"):
            # Hierarchical backbones (Swin): their blocks in network order and the final norm.
            self.blocks = backbone.blocks()
            self.final_norm = [backbone.get_layer("final_norm")]
            self.default_targets = ("qkv",)
        elif hasattr(model, "encoder") and hasattr(model, "decoder"):  # DETR
            self.blocks = list(model.encoder) + list(model.decoder)
            self.final_norm = [model.decoder_norm]
            self.default_targets = ("query", "value")
            # The original trains the ResNet from layer2 on: the stem and
            # layer1 stay frozen (facebookresearch/detr models/backbone.py).
            self.stem = [
                v for layer in backbone.layers if layer.name in ("conv1", "bn1") or layer.name.startswith("layer1_")
                for v in layer.weights
            ]
        else:
            raise TypeError(f"{type(model).__name__} has no encoder blocks that keras_vit.tuning knows.")


def _variables_of(layers):
    return [v for layer in layers for v in layer.weights]


def _rebuilt_with(model, backbone_changes):
    """The same task with its ViT backbone's config changed (prompts,
    adapters), and every weight of `model` copied over by path."""
    from keras_vit.presets.registry import transfer_by_path

    config = model.get_config()
    config["backbone"]["config"].update(backbone_changes)
    rebuilt = type(model).from_config(config)
    copied = transfer_by_path(model, rebuilt)
    if copied != len(model.weights):
        raise RuntimeError(
            f"Only {copied} of {len(model.weights)} weights carried over to the prepared {type(model).__name__}; "
            "this is a keras_vit bug, please report it."
        )
    return rebuilt


def prepare(model, method, **options):
    """Makes `model` ready to fine-tune with `method`: exactly that method's
    weights trainable, every other weight frozen.

    Prepare a model built by a constructor or `from_preset`, then compile it.
    Methods that add weights (`"adapter"`, `"vpt"`) rebuild the task with
    them, so use the returned model; the added weights start so that the
    prepared model's outputs equal the unprepared model's (adapters and LoRA
    start as the identity; prompts change the outputs, as in the paper).
    Prompts and adapters are weights of the model: they save with
    `save_to_preset`, load, export and distribute like every other weight.
    LoRA factors are merged into their kernels when the model is saved (Keras'
    `Dense` behaviour), so a saved preset is a plain model; `save_delta`
    keeps the factors alone.

    Args:
        model: a keras_vit task (`ViT`, `DETR`, `DPTDepthEstimator`,
            `DPTImageSegmenter`, `Segmenter`).
        method: one of `"full"`, `"linear"`, `"partial"`, `"bias"`,
            `"adapter"`, `"lora"`, `"vpt"`, or a list of them (see the
            module docstring for what each trains).
        **options: the chosen methods' options:
            `k` (partial: how many last blocks);
            `reduction` (adapter: bottleneck D / reduction, default 8);
            `rank` (lora, default 4), `alpha` (lora, default `rank`: the
            update is scaled by alpha / rank, as PEFT and Keras do),
            `targets` (lora: names of the Dense layers to adapt; default
            `("qkv",)` for ViT encoders, where the query, key and value
            projections are one fused Dense as in timm (PEFT's
            `target_modules=["qkv"]` on a timm ViT), and
            `("query", "value")` for DETR's attention);
            `num_prompts` (vpt, default 10), `deep` (vpt: False =
            VPT-shallow, True = VPT-deep), `prompt_dropout` (vpt, 0.0);
            `train_head` (every method: train the head too, default True);
            `train_stem` (DETR: also train the ResNet's stem and layer1,
            which DETR's original fine-tuning keeps frozen; default False);
            `head_initializer` (None keeps the head's weights; an
            initializer, e.g. `"zeros"` as the ViT paper, re-initialises the
            head's kernel and zeroes its bias: classifiers only).

    Returns:
        The prepared model (a new object when weights were added).

    Example:
    >>> import keras_vit
    >>> backbone = keras_vit.ViTBackbone(image_shape=(30, 30, 3), patch_size=3,
    ...     hidden_dim=32, num_layers=2, num_heads=4, mlp_dim=37)
    >>> model = prepare(keras_vit.ViT(backbone, num_classes=5), "vpt", num_prompts=4, deep=True)
    >>> trainable_parameters(model)  # L * P * D + D * K + K
    421
    """
    methods = _check_methods(method)
    options = _check_options(methods, options)
    anatomy = _Anatomy(model)
    tunable = getattr(model, "_keras_vit_tunable", None)
    if tunable is None:
        tunable = {id(v) for v in model.trainable_weights}

    changes = {}
    if "vpt" in methods or "adapter" in methods:
        if anatomy.vit is None:
            raise ValueError(
                f"Methods 'vpt' and 'adapter' need a ViT encoder; {type(model).__name__}'s backbone is "
                f"{type(model.backbone).__name__}. Use 'lora', 'bias', 'partial', 'linear' or 'full'."
            )
        if "vpt" in methods:
            if anatomy.vit.num_prompts:
                raise ValueError("This model has prompts already (prepared with 'vpt' before). Prepare the original model.")
            changes.update(
                num_prompts=options["num_prompts"], deep_prompts=options["deep"], prompt_dropout=options["prompt_dropout"]
            )
        if "adapter" in methods:
            if anatomy.vit.adapter_reduction is not None:
                raise ValueError("This model has adapters already (prepared with 'adapter' before). Prepare the original model.")
            changes["adapter_reduction"] = options["reduction"]
    if changes:
        # The tunable set carries over by path: weights frozen before stay frozen.
        frozen_paths = {v.path for v in model.weights if id(v) not in tunable}
        model = _rebuilt_with(model, changes)
        anatomy = _Anatomy(model)
        tunable = {id(v) for v in model.weights if v.path not in frozen_paths and v.trainable}

    trained = []
    if options["train_head"]:
        trained += anatomy.head_variables
    if "full" in methods:
        trained += model.weights
    if "linear" in methods and not options["train_head"]:
        raise ValueError("method 'linear' trains the head only: train_head=False leaves nothing to train.")
    if "partial" in methods:
        k = options["k"]
        if k > len(anatomy.blocks):
            raise ValueError(f"k={k} is larger than the encoder's {len(anatomy.blocks)} blocks. Pick k <= {len(anatomy.blocks)}.")
        trained += _variables_of(anatomy.blocks[-k:] + anatomy.final_norm)
        if anatomy.vit is not None and anatomy.vit.deep_prompts:
            trained += [anatomy.vit.get_layer(f"prompts_{i}").prompts for i in range(len(anatomy.blocks) - k, len(anatomy.blocks))]
    if "bias" in methods:
        trained += [v for v in model.weights if v.name in ("bias", "beta")]
    if "adapter" in methods:
        trained += _variables_of([b.adapter for b in anatomy.blocks])
    if "vpt" in methods:
        trained += [v for v in model.weights if v.name == "prompts"]
    if "lora" in methods:
        trained += _enable_lora(anatomy, options)

    lora_ids = {id(v) for v in model.weights if v.name.startswith("lora_kernel")}
    trained_ids = {id(v) for v in trained}
    if not options["train_stem"]:
        trained_ids -= {id(v) for v in anatomy.stem}
    for variable in model.weights:
        allowed = id(variable) in tunable or id(variable) in lora_ids
        variable.trainable = allowed and id(variable) in trained_ids
    # What prepare may train on a later call: not what was frozen by design
    # (BatchNorm statistics, DETR's frozen BatchNorm).
    object.__setattr__(model, "_keras_vit_tunable", tunable | lora_ids)
    object.__setattr__(model, "_keras_vit_tuning", {"method": methods, "options": _recorded(methods, options)})

    if options["head_initializer"] is not None:
        _reinitialize_head(model, options["head_initializer"])
    return model


def _recorded(methods, options):
    """The options that the chosen methods read (JSON-serializable)."""
    names = set(_COMMON) - {"head_initializer"}
    for m in methods:
        names |= set(_OPTIONS.get(m, {}))
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in options.items() if k in names}


def _enable_lora(anatomy, options):
    targets = options["targets"] or anatomy.default_targets
    found = {}
    for block in anatomy.blocks:
        for layer in block._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)):
                found.setdefault(layer.name, []).append(layer)
    missing = [t for t in targets if t not in found]
    if missing:
        raise ValueError(f"LoRA targets {missing} are not Dense layers of the encoder. Available: {sorted(found)}.")
    added = []
    for name in targets:
        for layer in found[name]:
            if layer.lora_enabled:
                raise ValueError(f"LoRA is already enabled on {layer.path}. Prepare the original model.")
            layer.enable_lora(options["rank"], lora_alpha=options["alpha"])
            added += [layer.lora_kernel_a, layer.lora_kernel_b]
    return added


def _reinitialize_head(model, initializer):
    try:
        head = model.get_layer("head")
    except ValueError:
        head = None
    if not isinstance(head, keras.layers.Dense):
        raise ValueError(f"head_initializer applies to classifiers with a Dense head; {type(model).__name__} has none.")
    initializer = keras.initializers.get(initializer)
    head.kernel.assign(initializer(tuple(head.kernel.shape), dtype=head.kernel.dtype))
    if head.use_bias:
        head.bias.assign(keras.ops.zeros(tuple(head.bias.shape), dtype=head.bias.dtype))


def trainable_parameters(model):
    """The number of scalars `model` trains (its trainable weights' sizes)."""
    return int(sum(int(keras.ops.size(v)) for v in model.trainable_weights))


def summary(model, print_fn=print):
    """Prints and returns the trainable and total parameter counts and the
    trainable fraction (the column the VPT paper reports).

    Returns:
        `{"method": [...] or None, "trainable": int, "total": int,
        "fraction": float}`; `total` counts every weight of the model
        (the pretrained ones, the added prompts, adapters or LoRA factors,
        and non-trainable statistics).
    """
    total = int(sum(int(keras.ops.size(v)) for v in model.weights))
    trainable = trainable_parameters(model)
    tuning = getattr(model, "_keras_vit_tuning", None)
    result = {
        "method": None if tuning is None else list(tuning["method"]),
        "options": None if tuning is None else dict(tuning["options"]),
        "trainable": trainable,
        "total": total,
        "fraction": trainable / total if total else 0.0,
    }
    if print_fn is not None:
        label = "+".join(result["method"]) if result["method"] else "untuned"
        print_fn(
            f"{type(model).__name__} ({label}): {trainable:,} trainable of {total:,} parameters "
            f"({100 * result['fraction']:.3f}%)"
        )
    return result
