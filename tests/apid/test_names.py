"""apid/names.py: Docker's name rules, generated names, id-prefix lookup."""

import random

import pytest
from dockyard.apid.names import NameIndex, generate_name, validate_name

from dockyard import errdefs


def test_validate_name():
    assert validate_name("web-1") == "/web-1"
    assert validate_name("/web_1.x") == "/web_1.x"
    for bad in ("a", "-x", "bad name", "x/y"):
        with pytest.raises(errdefs.InvalidArgument, match="Invalid container name"):
            validate_name(bad)


def test_generated_names_are_adjective_surname():
    name = generate_name(rng=random.Random(1))
    adj, _, surname = name.partition("_")
    assert adj and surname and name != "boring_wozniak"


def test_lookup_by_name_prefix_and_conflict():
    idx = NameIndex()
    idx.reserve("/web", "abc123" + "0" * 58)
    idx.reserve("/db", "abd456" + "0" * 58)
    assert idx.resolve("web").startswith("abc123")
    assert idx.resolve("/db").startswith("abd456")
    assert idx.resolve("abc").startswith("abc123")
    with pytest.raises(errdefs.InvalidArgument, match="multiple IDs"):
        idx.resolve("ab")
    with pytest.raises(errdefs.NotFound, match="No such container: nope"):
        idx.resolve("nope")
    with pytest.raises(errdefs.AlreadyExists, match='name "/web" is already in use'):
        idx.reserve("/web", "f" * 64)
