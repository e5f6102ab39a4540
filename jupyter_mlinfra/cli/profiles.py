"""``jupyter mlinfra profiles``: the catalog's flavors as Zero to JupyterHub profiles."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

import yaml

from ..profiles import z2jh_values
from .config import local_app


def register(commands: Any) -> None:
    profiles = commands.add_parser(
        "profiles",
        help="print a Zero to JupyterHub values file offering the flavors as server profiles",
        description="Reads this machine's Jupyter config (or --catalog) and prints a values "
        "file for `helm upgrade -f`: KubeSpawner profiles, one per flavor, each user offered "
        "the flavors they may use.",
    )
    profiles.set_defaults(run=run_profiles)
    profiles.add_argument("--catalog", help="a catalog file (default: the configured catalog)")


def run_profiles(args: argparse.Namespace) -> int:
    app = local_app()
    settings = app.mlinfra_settings
    if args.catalog:
        settings = replace(settings, catalog_file=args.catalog)
    catalog = settings.catalog(app.make_backend(settings).builtin_catalog)
    values = z2jh_values(catalog)
    print(yaml.dump(values, Dumper=_BlockDumper, sort_keys=False, allow_unicode=True), end="")
    return 0


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (the generated Python) as YAML literal blocks."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _string)
