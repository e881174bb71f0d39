"""The Shopify fake's slice of the Admin API schema against the schema Shopify publishes for the pinned version.

Shopify ships its Admin GraphQL schema, one introspection file per API version, inside its npm package
``@shopify/dev-mcp`` (``dist/data/admin_<version>.json.gz``). The test fetches that package with ``npm pack``
(nothing of it is kept in the repository; a copy is cached under ``var/cache/``) and checks every type,
field, argument and enum value of the fake's SDL against it: a field the fake has and Shopify does not (or
with another type), an argument Shopify requires and the fake does not, fails here as it would in
production. Without npm or the registry the test is skipped and says why.
"""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    Undefined,
    build_client_schema,
    build_schema,
)

from sandbox.fakes.shopify.api import SCHEMA_SDL

PACKAGE = os.environ.get("SHOPIFY_SCHEMA_PACKAGE", "@shopify/dev-mcp@1.16.0")
CACHE = Path(settings.VAR_DIR) / "cache" / "shopify-admin-schema"


def published_schema(version: str) -> GraphQLSchema:
    CACHE.mkdir(parents=True, exist_ok=True)
    # Parallel runners share the cache: one downloads, the others wait for its copy.
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        target = _cached_schema(version)
    with gzip.open(target) as raw:
        introspection = json.load(raw)
    return build_client_schema(introspection.get("data", introspection))


def _cached_schema(version: str) -> Path:
    target = CACHE / f"admin_{version}.json.gz"
    if not target.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.skip("npm is not installed: cannot fetch Shopify's published Admin schema (@shopify/dev-mcp)")
        work = CACHE / "download"
        work.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                [npm, "pack", PACKAGE, "--silent"], cwd=work, capture_output=True, text=True, timeout=300
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm pack {PACKAGE} took over 5 minutes: the npm registry is not reachable")
        if done.returncode:
            pytest.skip(f"npm pack {PACKAGE} failed (no registry?): {done.stderr.strip()[-300:]}")
        tarball = work / done.stdout.strip().splitlines()[-1]
        member = f"package/dist/data/admin_{version}.json.gz"
        with tarfile.open(tarball) as archive:
            try:
                source = archive.extractfile(member)
            except KeyError:
                pytest.skip(f"{PACKAGE} has no schema for API version {version}")
            assert source is not None
            target.write_bytes(source.read())
        shutil.rmtree(work, ignore_errors=True)
    return target


def differences(fake: GraphQLSchema, real: GraphQLSchema) -> list[str]:
    found: list[str] = []
    for name, kind in fake.type_map.items():
        if name.startswith("__"):
            continue
        published = real.type_map.get(name)
        if published is None:
            found.append(f"type {name}: not in the published schema")
            continue
        if type(published) is not type(kind):
            found.append(f"type {name}: a {type(kind).__name__} here, a {type(published).__name__} at Shopify")
            continue
        if isinstance(kind, GraphQLEnumType):
            assert isinstance(published, GraphQLEnumType)
            extra = sorted(set(kind.values) - set(published.values))
            if extra:
                found.append(f"enum {name}: values {extra} are not Shopify's")
            continue
        if isinstance(kind, GraphQLObjectType | GraphQLInterfaceType):
            assert isinstance(published, GraphQLObjectType | GraphQLInterfaceType)
            missing = {i.name for i in kind.interfaces} - {i.name for i in published.interfaces}
            if missing:
                found.append(f"type {name}: implements {sorted(missing)}, Shopify's does not")
        if isinstance(kind, GraphQLObjectType | GraphQLInterfaceType | GraphQLInputObjectType):
            found.extend(_fields(name, kind, published))
    return found


def _fields(name: str, kind: Any, published: Any) -> list[str]:
    found = []
    for field_name, field in kind.fields.items():
        path = f"{name}.{field_name}"
        theirs = published.fields.get(field_name)
        if theirs is None:
            found.append(f"field {path}: not in the published schema")
            continue
        if str(field.type) != str(theirs.type):
            found.append(f"field {path}: {field.type} here, {theirs.type} at Shopify")
        if isinstance(kind, GraphQLInputObjectType):
            continue
        for arg_name, arg in field.args.items():
            their_arg = theirs.args.get(arg_name)
            if their_arg is None:
                found.append(f"argument {path}({arg_name}): not in the published schema")
            elif str(arg.type) != str(their_arg.type):
                found.append(f"argument {path}({arg_name}): {arg.type} here, {their_arg.type} at Shopify")
        for arg_name, their_arg in theirs.args.items():
            required = str(their_arg.type).endswith("!") and their_arg.default_value is Undefined
            if required and arg_name not in field.args:
                found.append(f"argument {path}({arg_name}): required by Shopify, missing here")
    return found


@pytest.mark.slow
def test_the_fakes_schema_slice_is_shopifys_published_admin_schema_of_the_pinned_version():
    real = published_schema(settings.SHOPIFY_API_VERSION)
    fake = build_schema(SCHEMA_SDL)
    found = differences(fake, real)
    assert found == [], "\n".join(found)


@pytest.mark.slow
def test_the_check_catches_a_field_shopify_removed():
    """The check itself: compareQuantity (removed in 2026-04) is found, a renamed argument too."""
    real = published_schema(settings.SHOPIFY_API_VERSION)
    sdl = SCHEMA_SDL.replace("inventorySetQuantities(input:", "inventorySetQuantities(inputs:").replace(
        "  changeFromQuantity: Int\n", "  changeFromQuantity: Int\n  compareQuantity: Int\n"
    )
    found = differences(build_schema(sdl), real)
    assert "field InventoryQuantityInput.compareQuantity: not in the published schema" in found
    assert any("Mutation.inventorySetQuantities(inputs)" in line for line in found)
    assert any("Mutation.inventorySetQuantities(input): required by Shopify" in line for line in found)


@pytest.mark.slow
def test_every_query_the_connector_sends_is_valid_against_the_published_schema():
    from graphql import parse, validate

    from apps.channels.connectors import shopify

    real = published_schema(settings.SHOPIFY_API_VERSION)
    # Shopify's schema breaks a rule graphql-core checks on the schema itself (a deprecated id implementing
    # Node.id); queries are what is checked here, so that check is taken as passed.
    real._validation_errors = []
    sent = {
        name: value
        for name, value in vars(shopify).items()
        if name.isupper() and isinstance(value, str) and value.lstrip().startswith(("query", "mutation", "{"))
    }
    assert {
        "CATALOG_PAGE", "CATALOG_BULK", "RUN_BULK", "BULK_STATUS", "SUBSCRIBE", "SET_QUANTITIES", "ORDERS",
        "ORDERS_GET", "MORE_FULFILLMENTS_QUERY", "MORE_FULFILLMENT_LINES_QUERY", "MORE_LINE_ITEMS",
    } <= set(sent)  # fmt: skip
    problems = {name: [e.message for e in validate(real, parse(text))] for name, text in sent.items()}
    assert {name: found for name, found in problems.items() if found} == {}
