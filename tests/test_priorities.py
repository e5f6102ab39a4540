"""Priority classes as entitlements: who may submit at which class (pure, no server)."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_mlinfra.errors import InvalidInput, NotAllowed
from jupyter_mlinfra.identity import Identity
from jupyter_mlinfra.priorities import Priorities

CLASSES = {"low": 0, "normal": 100, "high": 1000, "urgent": 5000}

ADA = Identity("ada")
RESEARCHER = Identity("rui", frozenset({"research"}))
ADMIN = Identity("root-ish", admin=True)


def priorities(**entitlements: Any) -> Priorities:
    return Priorities.from_config(CLASSES, "normal", entitlements)


def test_by_default_users_have_the_default_class_and_admins_every_class() -> None:
    policy = priorities()
    assert policy.for_identity(ADA) == ["normal"]
    assert policy.for_identity(ADMIN) == ["urgent", "high", "normal", "low"]
    assert policy.choose(ADA, "normal") == 100
    assert policy.choose(ADMIN, "urgent") == 5000
    with pytest.raises(NotAllowed) as refused:
        policy.choose(ADA, "low")
    assert refused.value.field == "priority"
    assert refused.value.message == ("user 'ada' may not use priority class 'low' (yours: normal)")


def test_entitlements_name_users_and_groups_and_an_empty_one_is_everybodys() -> None:
    policy = priorities(low={}, high={"groups": ["research"]}, urgent={"users": ["ada"]})
    assert policy.for_identity(ADA) == ["urgent", "normal", "low"]
    assert policy.for_identity(RESEARCHER) == ["high", "normal", "low"]
    assert policy.choose(RESEARCHER, "high") == 1000
    with pytest.raises(NotAllowed, match="'rui' may not use priority class 'urgent'"):
        policy.choose(RESEARCHER, "urgent")


def test_an_unknown_class_is_a_bad_request_listing_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as raised:
        priorities().choose(ADMIN, "asap")
    assert (
        raised.value.message == "priority: unknown class 'asap' (known: high, low, normal, urgent)"
    )
    assert raised.value.field == "priority"


@pytest.mark.parametrize(
    ("entitlements", "message"),
    [
        (
            {"hihg": {"groups": ["research"]}},
            "priority_entitlements['hihg']: no priority class 'hihg' "
            "(known: high, low, normal, urgent)",
        ),
        (
            {"high": ["research"]},
            "priority_entitlements['high']: must be a mapping with users and groups, "
            "got ['research']",
        ),
        (
            {"high": {"group": ["research"]}},
            "priority_entitlements['high']: unknown field 'group' (did you mean 'groups'?); "
            "known fields: users, groups",
        ),
        (
            {"high": {"users": "ada"}},
            "priority_entitlements['high'].users: must be a list of names, got 'ada'",
        ),
    ],
)
def test_a_mistaken_entitlement_is_named_with_its_setting(
    entitlements: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        Priorities.from_config(CLASSES, "normal", entitlements)
    assert raised.value.message == message
