"""`keras.src.testing.TestCase.run_class_serialization_test`, with public API only."""

import json

import keras


def _json(config):
    return json.dumps(config, sort_keys=True)


def _attributes(instance):
    # As Keras' test, without `__annotations__`, which Python creates lazily.
    return set(dir(instance)) - {"__annotations__"}


def check_class_serialization(instance):
    """Asserts config round trips: `get_config` → `from_config` and `serialize` → `deserialize`.

    Both revived instances must give the same config, as JSON, and have the
    same attributes (`dir`) as `instance`. Returns the deserialized instance.
    """
    config = instance.get_config()
    config_json = _json(config)
    attributes = _attributes(instance)

    revived = type(instance).from_config(config)
    assert _json(revived.get_config()) == config_json
    assert _attributes(revived) == attributes

    serialized = json.loads(_json(keras.saving.serialize_keras_object(instance)))
    revived = keras.saving.deserialize_keras_object(serialized)
    assert type(revived) is type(instance)
    assert _json(revived.get_config()) == config_json
    assert _attributes(revived) == attributes
    return revived
