"""The catalog: validation with exact, located messages; entitlements; lookups."""

from __future__ import annotations

from typing import Any

import pytest

from jupyter_mlinfra.catalog import (
    Accelerator,
    Catalog,
    Entitlement,
    Environment,
    Flavor,
    build_catalog,
    read_catalog_document,
)
from jupyter_mlinfra.errors import CatalogError, InvalidInput, NotAllowed, NotFound
from jupyter_mlinfra.identity import Identity

GPU = "nvidia.com/gpu"
Gi = 2**30
FLAVOR_FIELDS = (
    "name, display_name, description, accelerator, cpu, memory, capacity_type, price_per_hour, "
    "max_nodes, node_selector, tolerations, volumes, users, groups"
)
ENVIRONMENT_FIELDS = (
    "name, display_name, description, framework, image, python, launcher, env, volumes, users, "
    "groups"
)
NAME_RULE = "must be a non-empty name of letters, digits, '-', '_' or '.', got"


def problems_of(
    flavors: Any = ({"name": "cpu"},),
    environments: Any = ({"name": "python"},),
    default_flavor: str = "",
    default_environment: str = "",
) -> list[str]:
    """The problems build_catalog reports (lists given as tuples stay tuples: both are valid)."""
    with pytest.raises(CatalogError) as caught:
        build_catalog(flavors, environments, default_flavor, default_environment)
    return caught.value.problems


def flavor_problems(**fields: Any) -> list[str]:
    return problems_of(flavors=[{"name": "f", **fields}])


def environment_problems(**fields: Any) -> list[str]:
    return problems_of(environments=[{"name": "e", **fields}])


def one_flavor(**fields: Any) -> Flavor:
    return build_catalog([{"name": "f", **fields}], [{"name": "e"}]).flavors[0]


def one_environment(**fields: Any) -> Environment:
    return build_catalog([{"name": "f"}], [{"name": "e", **fields}]).environments[0]


# --- validation: every problem, exactly where it is --------------------------------------------


def test_unknown_flavor_field_suggests_the_close_one() -> None:
    assert flavor_problems(memroy="1Gi") == [
        f"flavors[0] 'f': unknown field 'memroy' (did you mean 'memory'?); "
        f"known fields: {FLAVOR_FIELDS}"
    ]


def test_unknown_field_without_a_close_match_has_no_hint() -> None:
    assert flavor_problems(zzz=1) == [
        f"flavors[0] 'f': unknown field 'zzz'; known fields: {FLAVOR_FIELDS}"
    ]


def test_unknown_environment_field() -> None:
    assert environment_problems(framwork="jax") == [
        f"environments[0] 'e': unknown field 'framwork' (did you mean 'framework'?); "
        f"known fields: {ENVIRONMENT_FIELDS}"
    ]


def test_unknown_accelerator_field() -> None:
    assert flavor_problems(accelerator={"kind": GPU, "modle": "A100"}) == [
        "flavors[0] 'f'.accelerator: unknown field 'modle' (did you mean 'model'?); "
        "known fields: kind, model, count"
    ]


def test_accelerator_must_be_a_mapping() -> None:
    assert flavor_problems(accelerator="A100") == [
        "flavors[0] 'f'.accelerator: must be a mapping with kind, model, count, got 'A100'"
    ]


def test_accelerator_needs_a_kind() -> None:
    assert flavor_problems(accelerator={"model": "A100", "count": 1}) == [
        "flavors[0] 'f'.accelerator: missing field 'kind' (for example 'nvidia.com/gpu')"
    ]


@pytest.mark.parametrize(
    ("count", "message"),
    [
        (-1, "must be >= 0, got -1"),
        ("2", "must be a whole number, got '2'"),
        (1.0, "must be a whole number, got 1.0"),
        (True, "must be a whole number, got True"),
        (None, "must be a whole number, got None"),
    ],
)
def test_accelerator_count_must_be_a_whole_number(count: object, message: str) -> None:
    assert flavor_problems(accelerator={"kind": GPU, "count": count}) == [
        f"flavors[0] 'f'.accelerator.count: {message}"
    ]


@pytest.mark.parametrize(("key", "value"), [("kind", 5), ("model", ["A100"])])
def test_accelerator_kind_and_model_are_strings(key: str, value: object) -> None:
    accelerator = {"kind": GPU, key: value}
    assert flavor_problems(accelerator=accelerator) == [
        f"flavors[0] 'f'.accelerator.{key}: must be a string, got {value!r}"
    ]


def test_accelerator_count_zero_means_no_accelerator() -> None:
    flavor = one_flavor(accelerator={"kind": GPU, "model": "A100", "count": 0})
    assert flavor.accelerator is None
    assert flavor.accelerators == 0
    assert flavor.display_name == "1 CPU · 1Gi"


def test_null_accelerator_means_none() -> None:
    assert one_flavor(accelerator=None).accelerator is None


def test_accelerator_count_defaults_to_one_and_model_to_any() -> None:
    flavor = one_flavor(accelerator={"kind": GPU})
    assert flavor.accelerator == Accelerator(kind=GPU, model="", count=1)
    assert flavor.accelerators == 1


def test_missing_name() -> None:
    assert problems_of(flavors=[{"cpu": 1}]) == ["flavors[0]: missing field 'name'"]
    assert problems_of(environments=[{"framework": "jax"}]) == [
        "environments[0]: missing field 'name'"
    ]


@pytest.mark.parametrize("name", ["a b", "", "a/b", "gpu:1", "gpu*"])
def test_bad_name_characters(name: str) -> None:
    assert problems_of(flavors=[{"name": name}]) == [
        f"flavors[0] {name!r}.name: {NAME_RULE} {name!r}"
    ]
    assert problems_of(environments=[{"name": name}]) == [
        f"environments[0] {name!r}.name: {NAME_RULE} {name!r}"
    ]


def test_name_of_the_wrong_type_is_located_by_index_only() -> None:
    assert problems_of(flavors=[{"name": 5}]) == ["flavors[0].name: must be a string, got 5"]


def test_names_may_use_letters_digits_dash_underscore_and_dot() -> None:
    assert one_flavor(name="A100_x-4.big").name == "A100_x-4.big"


def test_duplicate_names() -> None:
    assert problems_of(flavors=[{"name": "cpu"}, {"name": "gpu"}, {"name": "cpu"}]) == [
        "flavors[2] 'cpu': duplicate name 'cpu'"
    ]
    assert problems_of(environments=[{"name": "py"}, {"name": "py"}]) == [
        "environments[1] 'py': duplicate name 'py'"
    ]


def test_default_flavor_must_be_in_the_catalog() -> None:
    flavors = [{"name": "cpu"}, {"name": "big"}]
    assert problems_of(flavors=flavors, default_flavor="gpu") == [
        "default_flavor: 'gpu' is not in the catalog (known: cpu, big)"
    ]


def test_default_environment_must_be_in_the_catalog() -> None:
    assert problems_of(default_environment="jax") == [
        "default_environment: 'jax' is not in the catalog (known: python)"
    ]


def test_default_of_an_unusable_list_knows_none() -> None:
    assert problems_of(flavors="cpu", default_flavor="cpu") == [
        "flavors: must be a list, got str",
        "default_flavor: 'cpu' is not in the catalog (known: none)",
    ]


@pytest.mark.parametrize(
    ("key", "value", "options"),
    [
        ("framework", "torch", "pytorch, tensorflow, jax, generic"),
        ("launcher", "mpirun", "process, torchrun"),
    ],
)
def test_environment_choices(key: str, value: str, options: str) -> None:
    assert environment_problems(**{key: value}) == [
        f"environments[0] 'e'.{key}: must be one of {options}; got {value!r}"
    ]


def test_unknown_capacity_type() -> None:
    assert flavor_problems(capacity_type="preemptible") == [
        "flavors[0] 'f'.capacity_type: must be one of on-demand, spot, reserved, flex-start; "
        "got 'preemptible'"
    ]


@pytest.mark.parametrize(
    ("value", "kind"), [({"name": "cpu"}, "dict"), (None, "NoneType"), ("cpu", "str")]
)
def test_lists_must_be_lists(value: object, kind: str) -> None:
    assert problems_of(flavors=value) == [f"flavors: must be a list, got {kind}"]
    assert problems_of(environments=value) == [f"environments: must be a list, got {kind}"]


def test_lists_must_not_be_empty() -> None:
    assert problems_of(flavors=[], environments=()) == [
        "flavors: must list at least one entry",
        "environments: must list at least one entry",
    ]


@pytest.mark.parametrize("item", ["cpu", 3, None, ["cpu"]])
def test_entries_must_be_mappings(item: object) -> None:
    assert problems_of(flavors=[{"name": "cpu"}, item]) == [
        f"flavors[1]: must be a mapping, got {item!r}"
    ]
    assert problems_of(environments=[item]) == [f"environments[0]: must be a mapping, got {item!r}"]


@pytest.mark.parametrize(
    ("memory", "message"),
    [
        ("16GB", "expected bytes or a quantity such as '16Gi', got '16GB'"),
        (1.5, "expected bytes or a quantity such as '16Gi', got 1.5"),
        (True, "expected bytes or a quantity such as '16Gi', got True"),
        (-1, "must not be negative, got -1"),
    ],
)
def test_bad_memory(memory: object, message: str) -> None:
    assert flavor_problems(memory=memory) == [f"flavors[0] 'f'.memory: {message}"]


@pytest.mark.parametrize(
    ("cpu", "message"),
    [
        ("two", "expected cores such as 4 or '500m', got 'two'"),
        (False, "expected cores such as 4 or '500m', got False"),
        (-2, "must not be negative, got -2"),
    ],
)
def test_bad_cpu(cpu: object, message: str) -> None:
    assert flavor_problems(cpu=cpu) == [f"flavors[0] 'f'.cpu: {message}"]


@pytest.mark.parametrize("price", [-1, -0.01, "1.5", True, [1]])
def test_bad_price(price: object) -> None:
    assert flavor_problems(price_per_hour=price) == [
        f"flavors[0] 'f'.price_per_hour: must be a number >= 0 or null, got {price!r}"
    ]


@pytest.mark.parametrize(("price", "parsed"), [(None, None), (0, 0.0), (2, 2.0), (1.25, 1.25)])
def test_price(price: object, parsed: float | None) -> None:
    flavor = one_flavor(price_per_hour=price)
    assert flavor.price_per_hour == parsed
    assert type(flavor.price_per_hour) is type(parsed)


@pytest.mark.parametrize(
    ("max_nodes", "message"),
    [
        (0, "must be >= 1, got 0"),
        (-2, "must be >= 1, got -2"),
        (1.5, "must be a whole number, got 1.5"),
        ("2", "must be a whole number, got '2'"),
        (True, "must be a whole number, got True"),
    ],
)
def test_bad_max_nodes(max_nodes: object, message: str) -> None:
    assert flavor_problems(max_nodes=max_nodes) == [f"flavors[0] 'f'.max_nodes: {message}"]


def test_max_nodes() -> None:
    assert one_flavor().max_nodes == 1
    assert one_flavor(max_nodes=8).max_nodes == 8


@pytest.mark.parametrize("key", ["users", "groups"])
@pytest.mark.parametrize("value", ["alice", ["alice", 1], {"alice": True}, None])
def test_bad_users_and_groups(key: str, value: object) -> None:
    assert flavor_problems(**{key: value}) == [
        f"flavors[0] 'f'.{key}: must be a list of names, got {value!r}"
    ]
    assert environment_problems(**{key: value}) == [
        f"environments[0] 'e'.{key}: must be a list of names, got {value!r}"
    ]


@pytest.mark.parametrize("value", [{"zone": 1}, {1: "a"}, ["zone=a"], "zone=a"])
def test_node_selector_and_env_map_strings_to_strings(value: object) -> None:
    assert flavor_problems(node_selector=value) == [
        f"flavors[0] 'f'.node_selector: must be a mapping of strings to strings, got {value!r}"
    ]
    assert environment_problems(env=value) == [
        f"environments[0] 'e'.env: must be a mapping of strings to strings, got {value!r}"
    ]


@pytest.mark.parametrize("value", [{"key": "gpu"}, ["gpu"], [{"key": "gpu"}, "x"], "gpu"])
def test_tolerations_are_a_list_of_mappings(value: object) -> None:
    assert flavor_problems(tolerations=value) == [
        "flavors[0] 'f'.tolerations: must be a list of Kubernetes tolerations (mappings), "
        f"got {value!r}"
    ]


@pytest.mark.parametrize("key", ["display_name", "description"])
def test_flavor_texts_are_strings(key: str) -> None:
    assert flavor_problems(**{key: 5}) == [f"flavors[0] 'f'.{key}: must be a string, got 5"]


@pytest.mark.parametrize("key", ["display_name", "description", "image", "python"])
def test_environment_texts_are_strings(key: str) -> None:
    assert environment_problems(**{key: None}) == [
        f"environments[0] 'e'.{key}: must be a string, got None"
    ]


def test_every_problem_is_reported_at_once_in_order() -> None:
    with pytest.raises(CatalogError) as caught:
        build_catalog(
            [
                {"name": "a b", "zzz": 1, "cpu": -1, "accelerator": {"count": -1}},
                "cpu",
                {"name": "ok", "memory": "lots"},
                {"name": "ok", "max_nodes": 0},
            ],
            [{"name": "py", "framework": "torch"}, {"image": "x"}],
        )
    expected = [
        f"flavors[0] 'a b': unknown field 'zzz'; known fields: {FLAVOR_FIELDS}",
        f"flavors[0] 'a b'.name: {NAME_RULE} 'a b'",
        "flavors[0] 'a b'.accelerator: missing field 'kind' (for example 'nvidia.com/gpu')",
        "flavors[0] 'a b'.accelerator.count: must be >= 0, got -1",
        "flavors[0] 'a b'.cpu: must not be negative, got -1",
        "flavors[1]: must be a mapping, got 'cpu'",
        "flavors[2] 'ok'.memory: expected bytes or a quantity such as '16Gi', got 'lots'",
        "flavors[3] 'ok'.max_nodes: must be >= 1, got 0",
        "flavors[3] 'ok': duplicate name 'ok'",
        "environments[0] 'py'.framework: must be one of pytorch, tensorflow, jax, generic; "
        "got 'torch'",
        "environments[1]: missing field 'name'",
    ]
    error = caught.value
    assert error.problems == expected
    assert str(error) == "invalid catalog:\n" + "\n".join(f"  - {p}" for p in expected)
    assert error.message == str(error)
    assert error.field is None
    assert error.status == 400
    assert isinstance(error, InvalidInput)


def test_defaults_are_checked_after_the_entries() -> None:
    assert problems_of(
        flavors=[{"name": "cpu", "cpu": "x"}], default_flavor="gpu", default_environment="jax"
    ) == [
        "flavors[0] 'cpu'.cpu: expected cores such as 4 or '500m', got 'x'",
        "default_flavor: 'gpu' is not in the catalog (known: cpu)",
        "default_environment: 'jax' is not in the catalog (known: python)",
    ]


# --- what a valid catalog holds ----------------------------------------------------------------


def test_defaults_fall_back_to_the_first_entry() -> None:
    catalog = build_catalog([{"name": "a"}, {"name": "b"}], [{"name": "x"}, {"name": "y"}])
    assert (catalog.default_flavor, catalog.default_environment) == ("a", "x")


def test_chosen_defaults() -> None:
    catalog = build_catalog(
        [{"name": "a"}, {"name": "b"}], [{"name": "x"}, {"name": "y"}], "b", "y"
    )
    assert (catalog.default_flavor, catalog.default_environment) == ("b", "y")


def test_flavor_field_defaults() -> None:
    flavor = one_flavor()
    assert flavor == Flavor(name="f", display_name="1 CPU · 1Gi", cpu=1.0, memory_bytes=Gi)
    assert flavor.description == ""
    assert flavor.capacity_type == "on-demand"
    assert flavor.price_per_hour is None
    assert flavor.node_selector == {}
    assert flavor.tolerations == ()
    assert flavor.allowed == Entitlement()


def test_display_name_default_describes_the_resources() -> None:
    accelerator = {"kind": GPU, "model": "A100", "count": 1}
    assert one_flavor(accelerator=accelerator, cpu="500m", memory="1Gi").display_name == (
        "1 × A100 · 500m CPU · 1Gi"
    )
    assert one_flavor(accelerator={"kind": GPU, "count": 2}, cpu=8, memory="64Gi").display_name == (
        "2 × nvidia.com/gpu · 8 CPU · 64Gi"
    )
    assert one_flavor(cpu=0.25, memory=3 * Gi // 2).display_name == "250m CPU · 1.5Gi"
    assert one_flavor(display_name="Big one", cpu=64).display_name == "Big one"


def test_full_flavor_and_its_json() -> None:
    flavor = one_flavor(
        display_name="4 × H100",
        description="Training",
        accelerator={"kind": GPU, "model": "H100", "count": 4},
        cpu="1500m",
        memory="256Gi",
        capacity_type="spot",
        price_per_hour=12.5,
        max_nodes=4,
        node_selector={"pool": "h100"},
        tolerations=[{"key": "gpu", "operator": "Exists"}],
        users=["alice"],
        groups=("ml",),
    )
    assert flavor.accelerators == 4
    assert flavor.allowed == Entitlement(users=frozenset({"alice"}), groups=frozenset({"ml"}))
    assert flavor.to_json() == {
        "name": "f",
        "display_name": "4 × H100",
        "description": "Training",
        "accelerator": {"kind": GPU, "model": "H100", "count": 4},
        "cpu": 1.5,
        "memory": "256Gi",
        "memory_bytes": 256 * Gi,
        "capacity_type": "spot",
        "price_per_hour": 12.5,
        "max_nodes": 4,
        "node_selector": {"pool": "h100"},
        "tolerations": [{"key": "gpu", "operator": "Exists"}],
        "volumes": [],
    }
    assert one_flavor().to_json()["accelerator"] is None


def test_environment_defaults_and_json() -> None:
    environment = one_environment()
    assert environment == Environment(name="e", display_name="e")
    assert environment.to_json() == {
        "name": "e",
        "display_name": "e",
        "description": "",
        "framework": "generic",
        "image": "",
        "python": "",
        "launcher": "process",
        "env": {},
        "volumes": [],
    }
    full = one_environment(
        display_name="PyTorch 2",
        description="CUDA 12",
        framework="pytorch",
        image="pytorch/pytorch:2",
        python="/opt/torch/bin/python",
        launcher="torchrun",
        env={"NCCL_DEBUG": "INFO"},
        groups=["ml"],
    )
    assert full.to_json() == {
        "name": "e",
        "display_name": "PyTorch 2",
        "description": "CUDA 12",
        "framework": "pytorch",
        "image": "pytorch/pytorch:2",
        "python": "/opt/torch/bin/python",
        "launcher": "torchrun",
        "env": {"NCCL_DEBUG": "INFO"},
        "volumes": [],
    }
    assert full.allowed == Entitlement(groups=frozenset({"ml"}))


# --- catalog files -----------------------------------------------------------------------------


def test_read_catalog_document() -> None:
    document = {"flavors": [{"name": "cpu"}], "default_flavor": "cpu"}
    read = read_catalog_document(document)
    assert read == document
    assert read is not document
    assert read_catalog_document(None) == {}


@pytest.mark.parametrize(("document", "kind"), [([], "list"), ("flavors", "str"), (3, "int")])
def test_catalog_document_must_be_a_mapping(document: object, kind: str) -> None:
    with pytest.raises(CatalogError) as caught:
        read_catalog_document(document)
    assert caught.value.problems == [f"catalog_file: must be a mapping, got {kind}"]


def test_catalog_document_unknown_keys() -> None:
    with pytest.raises(CatalogError) as caught:
        read_catalog_document({"flavours": [], "environments": [], "quota": {}})
    known = "flavors, environments, default_flavor, default_environment"
    assert caught.value.problems == [
        f"catalog_file: unknown field 'flavours' (did you mean 'flavors'?); known fields: {known}",
        f"catalog_file: unknown field 'quota'; known fields: {known}",
    ]


# --- who may use what --------------------------------------------------------------------------

ALICE = Identity("alice")
BOB_ML = Identity("bob", frozenset({"ml", "staff"}))
ROOT = Identity("root", admin=True)


def test_empty_entitlement_allows_everyone() -> None:
    assert Entitlement().allows(ALICE)
    assert Entitlement().allows(BOB_ML)


def test_entitlement_by_user_and_by_group() -> None:
    by_user = Entitlement(users=frozenset({"alice"}))
    assert by_user.allows(ALICE)
    assert not by_user.allows(BOB_ML)
    by_group = Entitlement(groups=frozenset({"ml"}))
    assert by_group.allows(BOB_ML)
    assert not by_group.allows(ALICE)
    assert not by_group.allows(Identity("ml"))  # a user named like a group is not in it
    both = Entitlement(users=frozenset({"alice"}), groups=frozenset({"ml"}))
    assert both.allows(ALICE)
    assert both.allows(BOB_ML)
    assert not both.allows(Identity("carol", frozenset({"staff"})))


def test_admin_may_use_everything() -> None:
    assert Entitlement(users=frozenset({"alice"})).allows(ROOT)
    assert Entitlement(groups=frozenset({"ml"})).allows(ROOT)


def test_accelerator_matches_kind_and_model_substring_ignoring_case() -> None:
    a100 = Accelerator(GPU, "a100", 1)
    assert a100.matches(GPU, "A100-SXM4-80GB")
    assert not a100.matches(GPU, "H100 80GB HBM3")
    assert not a100.matches("amd.com/gpu", "A100")
    any_model = Accelerator(GPU, "", 1)
    assert any_model.matches(GPU, "H100")
    assert any_model.matches(GPU, "")
    assert not any_model.matches("amd.com/gpu", "MI300X")


def catalog_for_entitlements(default_flavor: str = "a100") -> Catalog:
    return build_catalog(
        [
            {"name": "cpu"},
            {"name": "a100", "groups": ["ml"]},
            {"name": "h100", "users": ["carol"]},
        ],
        [{"name": "python"}, {"name": "torch", "groups": ["ml"]}],
        default_flavor=default_flavor,
        default_environment="torch",
    )


def names(entries: tuple[Flavor, ...] | tuple[Environment, ...]) -> list[str]:
    return [e.name for e in entries]


def test_for_identity_keeps_entitled_entries_and_their_defaults() -> None:
    mine = catalog_for_entitlements().for_identity(BOB_ML)
    assert names(mine.flavors) == ["cpu", "a100"]
    assert names(mine.environments) == ["python", "torch"]
    assert (mine.default_flavor, mine.default_environment) == ("a100", "torch")


def test_for_identity_falls_back_to_the_first_entitled_entry() -> None:
    mine = catalog_for_entitlements().for_identity(ALICE)
    assert names(mine.flavors) == ["cpu"]
    assert names(mine.environments) == ["python"]
    assert (mine.default_flavor, mine.default_environment) == ("cpu", "python")


def test_for_identity_of_an_admin_is_everything() -> None:
    catalog = catalog_for_entitlements()
    assert catalog.for_identity(ROOT) == catalog


def test_for_identity_with_nothing_entitled_has_no_defaults() -> None:
    catalog = build_catalog([{"name": "a", "users": ["x"]}], [{"name": "e", "groups": ["g"]}])
    mine = catalog.for_identity(ALICE)
    assert mine == Catalog(flavors=(), environments=(), default_flavor="", default_environment="")


def test_flavor_lookup() -> None:
    catalog = catalog_for_entitlements()
    assert catalog.flavor("h100").name == "h100"  # no identity: no entitlement check
    assert catalog.flavor("a100", BOB_ML).name == "a100"
    assert catalog.flavor("h100", ROOT).name == "h100"
    assert catalog.environment("torch", BOB_ML).name == "torch"


def test_unknown_flavor_is_not_found() -> None:
    with pytest.raises(NotFound) as caught:
        catalog_for_entitlements().flavor("b200", ALICE)
    error = caught.value
    # only the flavors the caller may use are named: the others are not theirs to know of
    assert error.message == "unknown flavor 'b200' (known: cpu)"
    assert str(error) == error.message
    assert error.field == "flavor"
    assert error.status == 404
    assert error.to_json() == {"message": error.message, "field": "flavor"}


def test_unknown_environment_is_not_found() -> None:
    with pytest.raises(NotFound) as caught:
        catalog_for_entitlements().environment("jax")
    assert caught.value.message == "unknown environment 'jax' (known: python, torch)"
    assert caught.value.field == "environment"


def test_lookup_in_an_empty_catalog_knows_none() -> None:
    with pytest.raises(NotFound) as caught:
        Catalog((), (), "", "").flavor("cpu")
    assert caught.value.message == "unknown flavor 'cpu' (known: none)"


def test_flavor_not_entitled_is_not_allowed() -> None:
    with pytest.raises(NotAllowed) as caught:
        catalog_for_entitlements().flavor("h100", BOB_ML)
    error = caught.value
    assert error.message == "user 'bob' may not use flavor 'h100'"
    assert error.field == "flavor"
    assert error.status == 403


def test_environment_not_entitled_is_not_allowed() -> None:
    with pytest.raises(NotAllowed) as caught:
        catalog_for_entitlements().environment("torch", ALICE)
    assert caught.value.message == "user 'alice' may not use environment 'torch'"
    assert caught.value.field == "environment"
