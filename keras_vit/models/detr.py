import keras
from keras import ops

from keras_vit.distribution import replica_count
from keras_vit.distribution import replica_sum
from keras_vit.backbones.resnet_backbone import ResNetBackbone
from keras_vit.layers.conv2d import Conv2D
from keras_vit.layers.detr_transformer_layers import DETRDecoderLayer
from keras_vit.layers.detr_transformer_layers import DETREncoderLayer
from keras_vit.layers.image_preprocessor import IMAGENET_MEAN
from keras_vit.layers.image_preprocessor import IMAGENET_STD
from keras_vit.layers.sine_position_encoding import SinePositionEncoding
from keras_vit.models.task import Task
from keras_vit.losses.detr_set_loss import check_targets
from keras_vit.losses.detr_set_loss import hungarian_matching_cost
from keras_vit.losses.detr_set_loss import sanitize_targets
from keras_vit.losses.detr_set_loss import set_loss_terms
from keras_vit.ops.box_ops import check_box_format
from keras_vit.ops.box_ops import convert_format
from keras_vit.ops.linear_assignment import MATCHING_METHODS
from keras_vit.ops.linear_assignment import linear_sum_assignment
from keras_vit.utils.serialization import model_config_with_backbone
from keras_vit.utils.serialization import with_dtype_policy
from keras_vit.utils.validation import check_positive_int
from keras_vit.utils.validation import check_rate

LOSS_TERMS = ("loss_ce", "loss_bbox", "loss_giou")


def _unpack_inputs(inputs):
    """images or {"images", "pixel_mask"} -> (images, mask (B, H, W) bool)."""
    if isinstance(inputs, dict):
        unknown = set(inputs) - {"images", "pixel_mask"}
        if "images" not in inputs or unknown:
            raise ValueError(
                'DETR inputs must be an image batch or a dict with "images" and optionally "pixel_mask". '
                f"Received keys: {sorted(inputs)}"
            )
        images, mask = inputs["images"], inputs.get("pixel_mask")
    else:
        images, mask = inputs, None
    if len(images.shape) != 4:
        raise ValueError(f"images must have shape (batch, height, width, channels). Received: {images.shape}")
    if mask is None:
        shape = ops.shape(images)
        mask = ops.ones((shape[0], shape[1], shape[2]), "bool")
    return images, ops.cast(mask, "bool")


def image_sizes_from_mask(pixel_mask):
    """`(B, H, W)` valid-pixel mask -> `(B, 2)` float (height, width) of each unpadded image."""
    mask = ops.cast(pixel_mask, "float32")
    height = ops.max(ops.sum(mask, axis=1), axis=1)
    width = ops.max(ops.sum(mask, axis=2), axis=1)
    return ops.stack([height, width], axis=-1)


def _nearest_indices(out_size, in_size):
    # torch's interpolate(mode="nearest"): source index floor(i * in / out).
    # Sizes are tensors when TensorFlow traces a batch of unknown height and
    # width (int32 / int32 is float64 there): the ratio is made float32 first.
    ratio = ops.cast(in_size, "float32") / ops.cast(out_size, "float32")
    return ops.cast(ops.floor(ops.arange(out_size, dtype="float32") * ratio), "int32")


def _feature_model(backbone, level):
    """The model mapping images to the map DETR reads (see `DETR`'s `feature_level`)."""
    if not isinstance(backbone, keras.Model):
        raise TypeError(f"backbone must be a keras.Model (e.g. ResNetBackbone). Received: {backbone!r}")
    pyramid = getattr(backbone, "pyramid_feature_names", None)
    if pyramid is None:
        if level != "P5":
            raise ValueError(
                f"feature_level={level!r} needs a backbone with pyramid_outputs (ResNetBackbone, SwinBackbone); "
                f"{type(backbone).__name__} has one output: leave feature_level='P5'."
            )
        return backbone
    from keras_vit.backbones.backbone import check_pyramid_levels

    check_pyramid_levels(level, pyramid)
    if backbone.pyramid_outputs[level] is backbone.output:
        return backbone
    model = keras.Model(backbone.inputs[0], backbone.pyramid_outputs[level], name=f"{backbone.name}_{level}")
    # The layers after the level (a Swin's final LayerNorm) get no gradient:
    # frozen, so that optimizers do not warn about them or decay them.
    used = {id(layer) for layer in model.layers}
    for layer in backbone.layers:
        if id(layer) not in used and layer.weights:
            layer.trainable = False
    return model


def _replica_mean(value):
    """The mean of `value` over the data-parallel replicas (keras_vit.distribution)."""
    return replica_sum(value) / replica_count()


@keras.saving.register_keras_serializable(package="keras_vit")
class DETR(Task, keras.Model):
    """DETR (Carion et al., 2020): a CNN, a transformer and set prediction.

    The backbone gives one feature map: the `feature_level` of a multi-scale
    backbone's `pyramid_outputs` (`"P5"` by default: ResNet's last stage at
    stride 32, 16 for DC5, or a Swin's), or the output of any other Keras
    model mapping images to a map; a 1x1 conv
    projects it to `hidden_dim`; the flattened map runs through a post-norm
    transformer encoder with a mask-aware 2-D sine position encoding added to
    queries and keys at every layer; `num_queries` learned object queries run
    through the decoder (a shared LayerNorm on every layer's output), and
    every decoder layer's output goes through the same class head (a linear
    layer to `num_classes + 1` logits, the last meaning "no object") and box
    head (a 3-layer MLP with a sigmoid).

    Images are given in [0, 255]; the model rescales them, normalises them
    with the ImageNet mean and std and zeroes the padding (as transformers'
    image processor pads after normalising).

    Call arguments:
        inputs: `(B, H, W, 3)` images, or a dict with `"images"` and
            `"pixel_mask"` `(B, H, W)` (1 on real pixels, 0 on padding) for a
            batch of images of different sizes padded to one shape.
        training: bool.

    Returns:
        A dict. `"logits"`: `(B, num_queries, num_classes + 1)` class logits
        of the last decoder layer (the last index is "no object").
        `"boxes"`: `(B, num_queries, 4)` boxes in `rel_center_xywh` (centre
        x, centre y, width, height as fractions of each image's unpadded
        size), in [0, 1]. `"aux_logits"`, `"aux_boxes"`: `(B,
        decoder_layers - 1, num_queries, ...)`, the same for the earlier
        decoder layers (the auxiliary losses).

    Training: `model.compile(optimizer)` with no loss and `model.fit(x, y)`
    where `y` is a dict with `"boxes"` `(B, T, 4)` in `bounding_box_format`
    and `"labels"` `(B, T)` int, padded with label -1 (or given a `"mask"`
    `(B, T)`, True for real objects). `compute_loss` matches queries to
    targets (Hungarian, costs class 1, L1 5, GIoU 2) and returns DETR's set
    loss; its terms are reported as metrics.

    Args:
        backbone: a backbone with `pyramid_outputs` (`ResNetBackbone`,
            `SwinBackbone`), or any Keras model mapping images to one
            feature map.
        feature_level: `"P2"`...`"P5"`, the pyramid level the transformer
            reads (`"P5"`); a backbone without `pyramid_outputs` takes only
            `"P5"`, meaning its output.
        num_classes: int, object classes (91 for COCO ids).
        num_queries: int, object queries.
        hidden_dim, num_heads, encoder_layers, decoder_layers, ffn_dim: the
            transformer's sizes (DETR: 256, 8, 6, 6, 2048).
        dropout_rate: float (0.1).
        bounding_box_format: the targets' box format (`"xyxy"` pixels by
            default; any Keras format name, `rel_` for relative).
        class_cost, box_cost, giou_cost: matching costs (1, 5, 2).
        class_loss_weight, box_loss_weight, giou_loss_weight: loss weights
            (1, 5, 2).
        no_object_weight: the "no object" class weight (0.1).
        auxiliary_loss: bool, add the loss of every earlier decoder layer.
        matching: `"host"` (scipy through a callback) or `"ops"` (in-graph).
        dtype: dtype policy; the loss always runs in float32.
    """

    def __init__(
        self,
        backbone,
        num_classes=91,
        num_queries=100,
        hidden_dim=256,
        num_heads=8,
        encoder_layers=6,
        decoder_layers=6,
        ffn_dim=2048,
        dropout_rate=0.1,
        bounding_box_format="xyxy",
        class_cost=1.0,
        box_cost=5.0,
        giou_cost=2.0,
        class_loss_weight=1.0,
        box_loss_weight=5.0,
        giou_loss_weight=2.0,
        no_object_weight=0.1,
        auxiliary_loss=True,
        matching="host",
        feature_level="P5",
        dtype=None,
        **kwargs,
    ):
        super().__init__(dtype=dtype, **kwargs)
        self.backbone = backbone
        self.feature_level = feature_level
        # The map the transformer reads: the backbone itself when the level
        # is its output, else a model sharing its layers up to that level,
        # kept out of Keras' tracking (its variables are the backbone's).
        self.__dict__["_feature_model"] = _feature_model(backbone, feature_level)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.num_queries = check_positive_int("num_queries", num_queries)
        self.hidden_dim = check_positive_int("hidden_dim", hidden_dim)
        self.num_heads = check_positive_int("num_heads", num_heads)
        self.encoder_layers = check_positive_int("encoder_layers", encoder_layers)
        self.decoder_layers = check_positive_int("decoder_layers", decoder_layers)
        self.ffn_dim = check_positive_int("ffn_dim", ffn_dim)
        self.dropout_rate = check_rate("dropout_rate", dropout_rate)
        check_box_format("bounding_box_format", bounding_box_format)
        self.bounding_box_format = bounding_box_format
        self.class_cost, self.box_cost, self.giou_cost = float(class_cost), float(box_cost), float(giou_cost)
        self.class_loss_weight = float(class_loss_weight)
        self.box_loss_weight = float(box_loss_weight)
        self.giou_loss_weight = float(giou_loss_weight)
        self.no_object_weight = float(no_object_weight)
        if not self.no_object_weight >= 0.0:  # also rejects NaN
            raise ValueError(
                f"no_object_weight must be a non-negative float (DETR: 0.1). Received: no_object_weight={no_object_weight!r}"
            )
        self.auxiliary_loss = bool(auxiliary_loss)
        if matching not in MATCHING_METHODS:
            raise ValueError(f"matching must be one of {MATCHING_METHODS}. Received: matching={matching!r}")
        self.matching = matching
        from keras_vit.backend.host_callback import callback_compiles

        # The training step checks its targets and predictions through a host
        # callback (and matches through one with matching="host"): this lets
        # jit_compile="auto" skip XLA where such a callback cannot run in it.
        self.supports_jit = callback_compiles()

        policy = self.dtype_policy
        self.input_projection = Conv2D(self.hidden_dim, 1, dtype=policy, name="input_projection")
        self.position_encoding = SinePositionEncoding(self.hidden_dim // 2, dtype=policy, name="position_encoding")
        layer_args = dict(dropout_rate=self.dropout_rate, dtype=policy)
        self.encoder = [
            DETREncoderLayer(hidden_dim, num_heads, ffn_dim, name=f"encoder_layer_{i}", **layer_args)
            for i in range(self.encoder_layers)
        ]
        self.decoder = [
            DETRDecoderLayer(hidden_dim, num_heads, ffn_dim, name=f"decoder_layer_{i}", **layer_args)
            for i in range(self.decoder_layers)
        ]
        self.decoder_norm = keras.layers.LayerNormalization(epsilon=1e-5, dtype=policy, name="decoder_norm")
        self.class_head = keras.layers.Dense(self.num_classes + 1, dtype=policy, name="class_head")
        self.box_head = [
            keras.layers.Dense(self.hidden_dim, activation="relu", dtype=policy, name="box_head_0"),
            keras.layers.Dense(self.hidden_dim, activation="relu", dtype=policy, name="box_head_1"),
            keras.layers.Dense(4, dtype=policy, name="box_head_2"),
        ]
        self._trackers = {
            name: keras.metrics.Mean(name=name) for name in LOSS_TERMS + ("cardinality_error", "aux_loss")
        }

    def build(self, input_shape):
        # nn.Embedding's N(0, 1) initialisation, as DETR's query_embed.
        self.query_embeddings = self.add_weight(
            shape=(self.num_queries, self.hidden_dim),
            initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="query_embeddings",
        )
        channels = self._feature_model.output.shape[-1]
        self.input_projection.build((None, None, None, channels))
        for layer in self.encoder:
            layer.build((None, None, self.hidden_dim))
        for layer in self.decoder:
            layer.build((None, None, self.hidden_dim))
        for layer in (self.decoder_norm, self.class_head, self.box_head[0], self.box_head[1], self.box_head[2]):
            layer.build((None, None, self.hidden_dim))
        self.built = True

    def _normalise(self, images, mask):
        images = ops.cast(images, self.compute_dtype) / 255.0
        mean = ops.convert_to_tensor(IMAGENET_MEAN, self.compute_dtype)
        std = ops.convert_to_tensor(IMAGENET_STD, self.compute_dtype)
        return (images - mean) / std * ops.cast(mask, self.compute_dtype)[..., None]

    def call(self, inputs, training=None):
        images, mask = _unpack_inputs(inputs)
        features = self.input_projection(self._feature_model(self._normalise(images, mask), training=training))
        batch, height, width = ops.shape(features)[0], features.shape[1], features.shape[2]
        if height is None or width is None:
            height, width = ops.shape(features)[1], ops.shape(features)[2]
        # Mask at the feature resolution (nearest, as DETR).
        in_height, in_width = mask.shape[1] or ops.shape(mask)[1], mask.shape[2] or ops.shape(mask)[2]
        small_mask = ops.take(mask, _nearest_indices(height, in_height), axis=1)
        small_mask = ops.take(small_mask, _nearest_indices(width, in_width), axis=2)  # (B, h, w)
        position = ops.cast(self.position_encoding(small_mask), self.compute_dtype)  # (B, h, w, D)

        tokens = ops.reshape(features, (batch, -1, self.hidden_dim))
        position = ops.reshape(position, (batch, -1, self.hidden_dim))
        token_mask = ops.reshape(small_mask, (batch, -1))
        for layer in self.encoder:
            tokens = layer(tokens, position, token_mask, training=training)

        query_position = ops.broadcast_to(
            ops.cast(self.query_embeddings, self.compute_dtype)[None], (batch, self.num_queries, self.hidden_dim)
        )
        queries = ops.zeros_like(query_position)
        outputs = []
        for layer in self.decoder:
            queries = layer(queries, tokens, query_position, position, token_mask, training=training)
            outputs.append(self.decoder_norm(queries))
        hidden = ops.stack(outputs, axis=1)  # (B, L, Q, D)
        logits = ops.cast(self.class_head(hidden), "float32")
        boxes = hidden
        for layer in self.box_head:
            boxes = layer(boxes)
        boxes = ops.sigmoid(ops.cast(boxes, "float32"))
        return {
            "logits": logits[:, -1],
            "boxes": boxes[:, -1],
            "aux_logits": logits[:, :-1],
            "aux_boxes": boxes[:, :-1],
        }

    def check_raw_inputs(self, x):
        """Images `(B, H, W, 3)` (or a dict with `"images"` and a `(B, H, W)`
        `"pixel_mask"`) with B > 0, checked before any Keras step runs."""
        images, mask = (x.get("images"), x.get("pixel_mask")) if isinstance(x, dict) else (x, None)
        if isinstance(images, (list, tuple)):
            shapes = sorted({tuple(getattr(i, "shape", ())) for i in images})
            raise TypeError(
                "DETR takes one array of images (B, H, W, 3), not a Python list. To batch images "
                "of different sizes, pad them to one size and pass {'images': ..., 'pixel_mask': ...} "
                f"with the mask 1 on real pixels. Received a list of images of shapes {shapes[:4]}."
            )
        shape = getattr(images, "shape", None)
        if shape is None:
            return  # a dataset or generator
        super().check_raw_inputs(images)
        if len(shape) != 4 or (shape[-1] is not None and shape[-1] != 3):
            raise ValueError(
                f"images must have shape (batch, height, width, 3), RGB in [0, 255]. Received: images.shape={tuple(shape)}."
            )
        fixed = tuple(self.backbone.input_shape[1:3])
        if None not in fixed and tuple(shape[1:3]) != fixed:
            raise ValueError(
                f"This DETR's {type(self.backbone).__name__} is built for {fixed[0]} x {fixed[1]} images. Pad the "
                "images to that size with a pixel_mask (or resize them), or rebuild the backbone at your size "
                f"(e.g. {type(self.backbone).__name__}.from_preset(..., image_size=(H, W))). "
                f"Received: images.shape={tuple(shape)}."
            )
        if mask is not None and tuple(getattr(mask, "shape", ())) != tuple(shape[:3]):
            raise ValueError(
                f"pixel_mask must have shape (batch, height, width) = {tuple(shape[:3])}, 1 on real pixels. "
                f"Received: pixel_mask.shape={tuple(getattr(mask, 'shape', ()))}."
            )

    # ------------------------------------------------------------------ loss

    def _check_host_targets(self, y):
        """Targets given as arrays are checked whole, before any step runs."""
        if not isinstance(y, dict) or "labels" not in y or "boxes" not in y:
            return
        try:
            labels, boxes = ops.convert_to_numpy(y["labels"]), ops.convert_to_numpy(y["boxes"])
            mask = ops.convert_to_numpy(y["mask"]) if "mask" in y else None
        except Exception:  # symbolic or foreign values: the step checks them
            return
        check_targets(labels, boxes, mask, self.num_classes, where="y")

    def fit(self, x=None, y=None, *args, **kwargs):
        self._check_host_targets(y)  # Task's fit surfaces the in-step checks as ValueError
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_host_targets(y)  # Task's evaluate surfaces the in-step checks as ValueError
        return super().evaluate(x, y, *args, **kwargs)

    def train_on_batch(self, x, y=None, *args, **kwargs):
        self._check_host_targets(y)  # Task's train_on_batch surfaces the in-step checks as ValueError
        return super().train_on_batch(x, y, *args, **kwargs)

    def test_on_batch(self, x, y=None, *args, **kwargs):
        self._check_host_targets(y)  # Task's test_on_batch surfaces the in-step checks as ValueError
        return super().test_on_batch(x, y, *args, **kwargs)

    def _targets(self, x, y):
        if not isinstance(y, dict) or "boxes" not in y or "labels" not in y:
            raise ValueError(
                'DETR targets must be a dict with "boxes" (B, T, 4) and "labels" (B, T) '
                f"(padded with label -1, or with a \"mask\"). Received: {type(y).__name__}"
                + (f" with keys {sorted(y)}" if isinstance(y, dict) else "")
            )
        labels = ops.convert_to_tensor(y["labels"])
        boxes = ops.cast(ops.convert_to_tensor(y["boxes"]), "float32")
        mask = y["mask"] if "mask" in y else labels >= 0
        if not self.bounding_box_format.startswith("rel_"):
            images, pixel_mask = _unpack_inputs(x)
            image_size = image_sizes_from_mask(pixel_mask)[:, None, :]  # (B, 1, 2)
        else:
            image_size = None
        boxes = convert_format(boxes, self.bounding_box_format, "rel_center_xywh", image_size)
        return sanitize_targets(labels, boxes, mask)

    def _match(self, logits, boxes, labels, target_boxes, mask, after=None):
        cost = hungarian_matching_cost(
            logits, boxes, labels, target_boxes, self.class_cost, self.box_cost, self.giou_cost
        )
        if after is not None:
            # A data dependency (adding 0): the step's check runs before the
            # matching, so that bad values are reported by the check.
            cost = cost + ops.cast(after, cost.dtype)
        return linear_sum_assignment(cost, mask, method=self.matching)

    @property
    def _loss_weights(self):
        return dict(zip(LOSS_TERMS, (self.class_loss_weight, self.box_loss_weight, self.giou_loss_weight)))

    def set_loss(self, x, y, y_pred):
        """All loss terms: `{"loss_ce", "loss_bbox", "loss_giou", "cardinality_error"}`
        for the last layer and the same with suffix `_{i}` for decoder layer i
        (auxiliary), each an unweighted float32 scalar, plus `"loss"`, the
        weighted total."""
        labels, boxes, mask = self._targets(x, y)
        # Bad targets and non-finite predictions raise here, naming the image
        # and slot, before the matching (scipy would fail on a NaN cost and the
        # in-graph solver would give NaN weights).
        checked = self._check_step(y, y_pred)
        # As the original: the box count summed over the replicas that each
        # hold a part of the global batch, divided by their number, at least
        # 1 (keras_vit.distribution; on one device and on JAX, the count).
        # The cross-entropy's weight sum is shared the same way (the original
        # keeps it per GPU), so N replicas give the one-device loss exactly.
        local_boxes = ops.sum(ops.cast(mask, "float32"))
        num_boxes = ops.maximum(_replica_mean(local_boxes), 1.0)
        layers = [(y_pred["logits"], y_pred["boxes"], "")]
        if self.auxiliary_loss:
            layers += [
                (y_pred["aux_logits"][:, i], y_pred["aux_boxes"][:, i], f"_{i}")
                for i in range(y_pred["aux_logits"].shape[1])
            ]
        weights = self._loss_weights
        terms, total = {}, 0.0
        for logits, pred_boxes, suffix in layers:
            logits = ops.cast(logits, "float32")
            pred_boxes = ops.cast(pred_boxes, "float32")
            query_index = self._match(logits, pred_boxes, labels, boxes, mask, after=checked)
            layer_terms = set_loss_terms(
                logits, pred_boxes, labels, boxes, mask, query_index, num_boxes, self.no_object_weight,
                weight_total=_replica_mean,
            )
            for name, value in layer_terms.items():
                terms[name + suffix] = value
                total = total + weights.get(name, 0.0) * value
        terms["loss"] = total + ops.cast(checked, "float32")
        return terms

    def _check_step(self, y, y_pred):
        from keras_vit.backend.host_callback import host_check

        def finite(value):
            value = ops.cast(value, "float32")
            return ops.all(ops.reshape(ops.isfinite(value), (ops.shape(value)[0], -1)), axis=1)

        predictions = [y_pred[k] for k in ("logits", "boxes", "aux_logits", "aux_boxes") if k in y_pred]
        finite_predictions = finite(predictions[0])
        for value in predictions[1:]:
            finite_predictions = finite_predictions & finite(value)
        labels = ops.convert_to_tensor(y["labels"])
        mask = ops.cast(y["mask"], "bool") if "mask" in y else labels >= -1  # -1 pads; < -1 is reported
        has_mask = "mask" in y

        def check(labels, boxes, mask, finite_predictions):
            check_targets(
                labels, boxes, mask if has_mask else None, self.num_classes, finite_predictions, where="the batch"
            )

        return host_check(
            check, [ops.cast(labels, "int32"), ops.cast(y["boxes"], "float32"), mask, finite_predictions]
        )

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if sample_weight is not None:
            raise ValueError("DETR's set loss takes no sample_weight. Received a sample_weight.")
        terms = self.set_loss(x, y, y_pred)
        for name in LOSS_TERMS + ("cardinality_error",):
            self._trackers[name].update_state(terms[name])
        main = sum(weight * terms[name] for name, weight in self._loss_weights.items())
        self._trackers["aux_loss"].update_state(terms["loss"] - main)
        total = terms["loss"]
        losses = self.losses
        if losses:
            total = total + ops.sum(ops.stack([ops.cast(l, "float32") for l in losses]))
        if keras.backend.backend() == "tensorflow":
            # tf.distribute sums the replicas' gradients (Keras's own losses
            # divide by the replica count the same way; its trainer undoes it
            # for the reported loss).
            total = total / replica_count()
        return total

    # ------------------------------------------------------- post-processing

    def post_process(self, outputs, image_sizes, score_threshold=None, bounding_box_format=None):
        """Detections in pixel coordinates from the model's outputs.

        Args:
            outputs: the model's output dict (`"logits"`, `"boxes"`).
            image_sizes: `(B, 2)` (height, width) to scale each image's boxes
                to: its original size, or `image_sizes_from_mask(pixel_mask)`
                for the padded input's own coordinates.
            score_threshold: optional float; detections below it get label
                -1, score 0 and a zero box (the Keras padded convention).
            bounding_box_format: output format, the model's own by default.

        Returns:
            dict of `"boxes"` `(B, Q, 4)`, `"scores"` `(B, Q)` (the best
            non-"no object" class probability) and `"labels"` `(B, Q)` int32,
            sorted by score, highest first.
        """
        fmt = bounding_box_format or self.bounding_box_format
        return decode_detections(outputs, image_sizes, score_threshold, fmt)

    def predict_detections(self, images, pixel_mask=None, image_sizes=None, score_threshold=None, batch_size=None):
        """`predict` + `post_process`: detections for numpy images (see `post_process`).

        `image_sizes` defaults to each image's unpadded size from `pixel_mask`.
        """
        if score_threshold is not None and not 0.0 <= score_threshold <= 1.0:  # also rejects NaN
            raise ValueError(f"score_threshold must be in [0, 1] or None. Received: score_threshold={score_threshold!r}")
        inputs = {"images": images} if pixel_mask is None else {"images": images, "pixel_mask": pixel_mask}
        self.check_raw_inputs(inputs)
        outputs = self.predict(inputs, batch_size=batch_size, verbose=0)
        if image_sizes is None:
            mask = ops.ones(images.shape[:3], "bool") if pixel_mask is None else pixel_mask
            image_sizes = image_sizes_from_mask(mask)
        detections = self.post_process(outputs, image_sizes, score_threshold)
        return {k: ops.convert_to_numpy(v) for k, v in detections.items()}

    @property
    def metrics(self):
        return super().metrics + list(self._trackers.values())

    @staticmethod
    def get_layout_map(device_mesh, model_parallel_dim_name="model", data_parallel_dim_name="batch", backbone_class=None):
        """A `keras.distribution.LayoutMap` for `keras.distribution.ModelParallel`
        (JAX): the ResNet's convolutions split by output channels
        (`ResNetBackbone.get_layout_map`), the input projection too, and in
        every encoder and decoder layer the query, key, value and first FFN
        kernels split by output columns and the attention output and second
        FFN kernels by input rows (Megatron-style: one reduction per pair);
        queries, heads, norms and biases of the outputs replicated. Data goes
        over `data_parallel_dim_name`. `hidden_dim`, `ffn_dim`, the ResNet's
        channel counts and its bottleneck widths must be divisible by the
        model axis.

            mesh = keras.distribution.DeviceMesh((2, 4), ("batch", "model"), keras.distribution.list_devices())
            keras.distribution.set_distribution(keras.distribution.ModelParallel(
                layout_map=keras_vit.DETR.get_layout_map(mesh), batch_dim_name="batch"))
            model = keras_vit.DETR.from_preset("detr_r50")  # built sharded

        `backbone_class`: the backbone's class when it is not a ResNet
        (`keras_vit.ViTDetBackbone`, `SwinBackbone`, `MViTBackbone`): its
        own `get_layout_map` then shards the backbone.
        """
        backbone_class = ResNetBackbone if backbone_class is None else backbone_class
        if not hasattr(backbone_class, "get_layout_map"):
            raise TypeError(
                f"backbone_class must be a keras_vit backbone class with get_layout_map (e.g. "
                f"keras_vit.ViTDetBackbone). Received: backbone_class={backbone_class!r}"
            )
        layout_map = backbone_class.get_layout_map(device_mesh, model_parallel_dim_name, data_parallel_dim_name)
        model = model_parallel_dim_name
        attention = r".*_layer_\d+/(self|cross)_attention"
        layout_map[r"(.*/)?input_projection/kernel"] = (None, None, None, model)
        layout_map[attention + r"/(query|key|value)/kernel"] = (None, model)
        layout_map[attention + r"/(query|key|value)/bias"] = (model,)
        layout_map[attention + r"/output/kernel"] = (model, None)
        layout_map[r".*_layer_\d+/fc1/kernel"] = (None, model)
        layout_map[r".*_layer_\d+/fc1/bias"] = (model,)
        layout_map[r".*_layer_\d+/fc2/kernel"] = (model, None)
        return layout_map

    def get_config(self):
        return {
            **model_config_with_backbone(self),
            "num_classes": self.num_classes,
            "num_queries": self.num_queries,
            "hidden_dim": self.hidden_dim,
            "num_heads": self.num_heads,
            "encoder_layers": self.encoder_layers,
            "decoder_layers": self.decoder_layers,
            "ffn_dim": self.ffn_dim,
            "dropout_rate": self.dropout_rate,
            "bounding_box_format": self.bounding_box_format,
            "class_cost": self.class_cost,
            "box_cost": self.box_cost,
            "giou_cost": self.giou_cost,
            "class_loss_weight": self.class_loss_weight,
            "box_loss_weight": self.box_loss_weight,
            "giou_loss_weight": self.giou_loss_weight,
            "no_object_weight": self.no_object_weight,
            "auxiliary_loss": self.auxiliary_loss,
            "matching": self.matching,
            "feature_level": self.feature_level,
        }

    @classmethod
    def from_config(cls, config):
        config = with_dtype_policy(dict(config))
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)

    @classmethod
    def from_preset(cls, preset, source=None, num_classes=None, load_weights=True, **kwargs):
        """A DETR from a preset name (`DETR.presets`), a preset directory, or a
        checkpoint file (original `.pth` or transformers) or `hf://org/name`.

        Args:
            preset: a name, a directory written by `save_to_preset`, a
                checkpoint file (a `config.json` beside it is read) or
                `hf://org/name`.
            source: for names, `"original"` (the `.pth` release, default) or
                `"transformers"` (the hub port).
            num_classes: a new class count; every weight but the class head's is kept.
            load_weights: False builds the architecture with random weights.
            **kwargs: other DETR arguments (`bounding_box_format`, `matching`,
                `dropout_rate`, loss weights, `num_heads`, `dtype`); for
                checkpoint files, `dilate_last_stage` (whether it is a DC5
                model; read from `config.json` or a "dc5" in the file name
                otherwise).
        """
        if num_classes is not None:
            kwargs["num_classes"] = num_classes
        return super().from_preset(preset, load_weights=load_weights, source=source, **kwargs)


def decode_detections(outputs, image_sizes, score_threshold=None, bounding_box_format="xyxy"):
    """See `DETR.post_process`."""
    probabilities = ops.softmax(ops.cast(outputs["logits"], "float32"), axis=-1)[..., :-1]
    scores = ops.max(probabilities, axis=-1)  # (B, Q)
    labels = ops.cast(ops.argmax(probabilities, axis=-1), "int32")
    image_sizes = ops.cast(ops.convert_to_tensor(image_sizes), "float32")[:, None, :]  # (B, 1, 2)
    boxes = convert_format(ops.cast(outputs["boxes"], "float32"), "rel_center_xywh", bounding_box_format, image_sizes)
    order = ops.argsort(-scores, axis=-1)
    scores = ops.take_along_axis(scores, order, axis=1)
    labels = ops.take_along_axis(labels, order, axis=1)
    boxes = ops.take_along_axis(boxes, order[..., None], axis=1)
    if score_threshold is not None:
        keep = scores >= score_threshold
        scores = ops.where(keep, scores, 0.0)
        labels = ops.where(keep, labels, -1)
        boxes = ops.where(keep[..., None], boxes, 0.0)
    return {"boxes": boxes, "scores": scores, "labels": labels}


def detr_resnet(depth=50, dilate_last_stage=False, **kwargs):
    """A DETR with a fresh `ResNetBackbone(depth, dilate_last_stage)`; kwargs go to DETR."""
    return DETR(ResNetBackbone(depth, dilate_last_stage=dilate_last_stage), **kwargs)
