import keras


def with_dtype_policy(config):
    """A copy of a model config whose serialized `dtype` is a policy object again."""
    config = dict(config)
    if isinstance(config.get("dtype"), dict):
        config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
    return config
