"""The public API: every name in __all__ imports, and configs round-trip through plain dicts."""

import pytest

import AlignFlowLib
from AlignFlowLib.config import RunConfig, from_dict, to_dict
from AlignFlowLib.errors import AlignFlowError
from AlignFlowLib.presets import PRESETS


@pytest.mark.parametrize("name", AlignFlowLib.__all__)
def test_public_name_imports(name):
    assert getattr(AlignFlowLib, name) is not None


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_config_round_trips_through_json_types(name):
    import json

    config = PRESETS[name]
    assert from_dict(RunConfig, json.loads(json.dumps(to_dict(config)))) == config


def test_unknown_config_key_is_named():
    with pytest.raises(AlignFlowError, match="learning_rat"):
        from_dict(RunConfig, {"align": {"learning_rat": 1.0}})
