"""Keys: every id gets its own keys, inside its own hash tag."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from floodwall.stores.keys import Keys, encode_id

HOSTILE = [
    "{",
    "}",
    "a}b{c",
    ":",
    "alice:bucket",
    "line\nbreak",
    "x" * 10_240,
    "ünïcødé",
    "*",
    "?[]",
    "",
    " ",
    "%41",
    "A",
    "\udcff\udc80",
    "#" + "0" * 64,
]

TAG = re.compile(r"^floodwall:\{([^{}]*)\}:(bucket|state|jti)$")


def _slot_tag(key: str) -> str:
    match = TAG.match(key)
    assert match is not None, key
    return match.group(1)


def test_hostile_ids_stay_inside_their_tag_and_apart() -> None:
    keys = Keys("floodwall")
    tags = set()
    for user_id in HOSTILE:
        subject = keys.user(user_id)
        tag = _slot_tag(subject.bucket)
        assert _slot_tag(subject.state) == tag == _slot_tag(subject.revoked)
        assert "\n" not in tag
        assert len(tag) <= 130
        tags.add(tag)
    assert len(tags) == len(HOSTILE)


def test_plain_ids_stay_readable() -> None:
    assert Keys("floodwall").user("alice@example.com").bucket == (
        "floodwall:{u:alice@example.com}:bucket"
    )


def test_users_and_anonymous_clients_never_share_keys() -> None:
    keys = Keys("floodwall")
    assert keys.user("127.0.0.1").bucket != keys.anonymous("127.0.0.1").bucket


@given(st.text(max_size=300), st.text(max_size=300))
def test_encoding_is_injective(first: str, second: str) -> None:
    if first != second:
        assert encode_id(first) != encode_id(second)
    encoded = encode_id(first)
    assert not set(encoded) & set("{}:\r\n *")
    assert 0 < len(encoded) <= 128 or (encoded.startswith("#") and len(encoded) == 65)


def test_the_replication_marker_is_on_the_node_of_the_key_it_follows() -> None:
    keys = Keys("fw")
    # On a Cluster, WAIT follows a marker written in the slot of what changed.
    for near in (keys.user("alice").state, keys.user("{odd}").state, keys.networks, keys.config):
        assert key_slot(keys.replicated(near, cluster=True).encode()) == key_slot(near.encode())
    # On one Redis, one marker serves every write.
    assert keys.replicated(keys.networks, cluster=False) == "fw:replicated"
