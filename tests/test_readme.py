"""The README's configuration reference is the traitlets' help text, verbatim."""

from __future__ import annotations

from pathlib import Path

from jupyter_mlinfra.config_reference import render

README = Path(__file__).parent.parent / "README.md"


def test_configuration_reference_is_in_sync_with_the_traitlets() -> None:
    assert render() in README.read_text(), (
        "README.md is stale: run python -m jupyter_mlinfra.config_reference"
    )


def test_every_setting_has_help_text() -> None:
    from jupyter_mlinfra.config_reference import CONFIGURABLES

    missing = [
        f"{cls.__name__}.{name}"
        for cls in CONFIGURABLES
        for name, trait in cls.class_own_traits(config=True).items()
        if not trait.help
    ]
    assert missing == []
