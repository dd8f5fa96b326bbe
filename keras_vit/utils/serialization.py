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


def task_from_config(cls, config):
    """`cls(**config)` for a task whose config holds a serialized `backbone`
    and `preprocessor` (and dtype policy), as `model_config_with_backbone` writes it."""
    config = with_dtype_policy(config)
    for key in ("backbone", "preprocessor"):
        if isinstance(config.get(key), dict):
            config[key] = keras.saving.deserialize_keras_object(config[key])
    return cls(**config)
