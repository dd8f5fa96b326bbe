import keras


def with_dtype_policy(config):
    """A copy of a model config whose serialized `dtype` is a policy object again."""
    config = dict(config)
    if isinstance(config.get("dtype"), dict):
        config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
    return config


def model_config_with_backbone(model):
    """The config fields every keras_vit task model shares: name, trainable,
    dtype policy and the serialized backbone (undone by `with_dtype_policy`
    and `keras.saving.deserialize_keras_object`)."""
    return {
        "name": model.name,
        "trainable": model.trainable,
        "dtype": keras.dtype_policies.serialize(model.dtype_policy),
        "backbone": keras.saving.serialize_keras_object(model.backbone),
    }
