"""The admin's settings: read once from the traits, and sent to the agent as a document."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import pytest
from traitlets import TraitError
from traitlets.config import Config

from jupyter_mlinfra.app import MLInfraApp
from jupyter_mlinfra.backends.local.agent_jobs import AgentJobs
from jupyter_mlinfra.jobs.policy import Policy
from jupyter_mlinfra.kernels.local_kernels import LocalKernels
from jupyter_mlinfra.settings import Settings, SettingsTraits

from .conftest import mlinfra_app
from .jobs_client import call


def test_every_setting_is_a_trait_and_every_trait_a_setting() -> None:
    assert {f.name for f in fields(Settings)} == set(SettingsTraits.class_trait_names(config=True))


def test_the_app_reads_its_section_into_frozen_settings() -> None:
    config = Config({"MLInfraApp": {"preemption": True, "admin_users": ["ann"]}})
    settings = MLInfraApp(config=config).mlinfra_settings
    assert settings.preemption is True
    assert settings.admin_users == frozenset({"ann"})
    with pytest.raises(AttributeError):
        settings.preemption = False  # type: ignore[misc]


def test_the_agent_reads_back_what_the_server_sends() -> None:
    sent = Settings.from_document(
        {
            "admin_groups": ["staff", "admins"],
            "flavors": [{"name": "cpu"}],
            "environments": [{"name": "base"}],
            "groups": {"staff": ["bob"]},
            "preemption_grace_seconds": 3,
            "run_ranks_as": "owner",
        }
    )
    document = sent.to_document()
    assert document["admin_groups"] == ["admins", "staff"]
    assert Settings.from_document(document) == sent
    policy = Policy.from_document(document)
    assert policy.grace_seconds == 3.0
    assert policy.identity("bob").admin
    assert [f.name for f in policy.catalog.flavors] == ["cpu"]


def test_a_document_is_validated_by_the_traits() -> None:
    with pytest.raises(TraitError):
        Settings.from_document({"run_ranks_as": "root"})


def test_names_this_version_does_not_know_are_left_out() -> None:
    assert Settings.from_document({"a_newer_setting": 1}) == Settings.from_document({})


class OwnJobs(AgentJobs):
    """An admin's own jobs_class: the local agent's jobs under another name."""


class TestJobsClass:
    @pytest.fixture
    def mlinfra_config(self, mlinfra_config: dict[str, Any]) -> dict[str, Any]:
        return {**mlinfra_config, "jobs_class": f"{__name__}.OwnJobs"}

    async def test_the_configured_class_holds_the_jobs(
        self, jp_fetch: Any, jp_serverapp: Any
    ) -> None:
        app = mlinfra_app(jp_serverapp)
        assert type(app.jobs) is OwnJobs
        assert type(app.kernels.backend) is LocalKernels  # chosen by backend = 'local'
        assert (await call(jp_fetch, "jobs"))["jobs"] == []


@pytest.mark.parametrize("name", ["jobs_class", "kernels_class"])
def test_backend_chooses_the_classes_unless_one_is_set(name: str) -> None:
    assert getattr(MLInfraApp(), name) is None  # chosen by backend when the server starts
    with pytest.raises(TraitError):  # not a backend's class
        MLInfraApp(config=Config({"MLInfraApp": {name: f"{__name__}.Policy"}}))
