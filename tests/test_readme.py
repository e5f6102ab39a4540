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


def test_every_submit_option_of_the_cli_and_the_magic_is_documented() -> None:
    from jupyter_mlinfra.cli import parser as cli_parser
    from jupyter_mlinfra.magic_args import parser as magic_parser
    from jupyter_mlinfra.submit_args import subcommands

    text = README.read_text()
    for root in (cli_parser(), magic_parser()):
        submit = subcommands(root)["submit"]
        options = [name for action in submit._actions for name in action.option_strings]
        assert "--wait" in options and "--detach" in options
        assert [name for name in options if name.startswith("--") and name not in text] == []


def test_the_example_notebook_and_the_readme_install_what_it_imports() -> None:
    """PyTorch warns "Failed to initialize NumPy" without NumPy, which it does not require."""
    notebook = (README.parent / "examples" / "notebooks" / "distributed-pytorch.ipynb").read_text()
    for text in (README.read_text(), notebook):
        assert "pip install torch numpy" in text
