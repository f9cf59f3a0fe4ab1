"""The bundle in chunks over MQTT: the plan a notice carries, its checks, and the
assembly that checks each chunk and resumes after a restart."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from edge_runtime.errors import IntegrityError
from edge_runtime.update.chunks import (
    MAX_CHUNKS,
    BadChunkPlan,
    ChunkAssembly,
    chunk_size_for,
    chunk_topic,
    parse_plan,
    split,
)
from edge_runtime.update.service import BadNotice, parse_notice

DATA = os.urandom(10_000)
SHA = hashlib.sha256(DATA).hexdigest()


def test_split_and_plan_round_trip() -> None:
    plan, pieces = split(DATA, 4096)
    assert [len(p) for p in pieces] == [4096, 4096, 1808]
    assert b"".join(pieces) == DATA
    assert parse_plan(plan.to_json(), len(DATA)) == plan
    assert chunk_topic("edge", SHA) == f"edge/bundles/{SHA[:16]}"


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be an object"),
        ({"size": 10, "sha256": []}, "chunks.size"),
        ({"size": 4096, "sha256": ["xyz"] * 3}, "64-hex"),
        ({"size": 4096, "sha256": ["a" * 64] * 2}, "lists 2 chunks; a 10000-byte bundle"),
    ],
)
def test_bad_plans_are_refused(doc: object, message: str) -> None:
    with pytest.raises(BadChunkPlan, match=message):
        parse_plan(doc, len(DATA))


def test_a_notice_needs_a_url_or_chunks() -> None:
    plan, _ = split(DATA, 4096)
    base = {
        "manifest": {"name": "m", "version": "2.0.0"},
        "bundle": {"size": len(DATA), "sha256": SHA},
    }
    notice = parse_notice(json.dumps({**base, "chunks": plan.to_json()}).encode())
    assert notice.url is None and notice.chunks == plan
    with pytest.raises(BadNotice, match='neither a "url" nor "chunks"'):
        parse_notice(json.dumps(base).encode())


def test_assembly_checks_each_chunk_and_puts_them_in_place(tmp_path: Path) -> None:
    plan, pieces = split(DATA, 4096)
    assembly = ChunkAssembly(tmp_path, SHA, len(DATA), plan)
    assert assembly.add(2, pieces[2])
    assert not assembly.add(2, pieces[2])  # a repeat (retained chunks come again)
    assert not assembly.add(0, b"x" * 4096)  # damaged
    assert not assembly.add(7, pieces[0])  # no such chunk
    assert assembly.rejected == 1 and not assembly.complete
    assert assembly.add(0, pieces[0]) and assembly.add(1, pieces[1])
    assert assembly.complete
    assert assembly.finish().read_bytes() == DATA


def test_assembly_resumes_with_what_a_previous_run_stored(tmp_path: Path) -> None:
    plan, pieces = split(DATA, 4096)
    first = ChunkAssembly(tmp_path, SHA, len(DATA), plan)
    first.add(0, pieces[0])
    first.add(2, pieces[2])
    first.flush()
    del first  # the process ends here
    again = ChunkAssembly(tmp_path, SHA, len(DATA), plan)
    assert again.kept == 2 and again.received_bytes == 4096 + 1808
    assert again.add(1, pieces[1]) and again.complete
    assert again.finish().read_bytes() == DATA


def test_a_record_of_another_plan_is_not_trusted(tmp_path: Path) -> None:
    plan, pieces = split(DATA, 4096)
    first = ChunkAssembly(tmp_path, SHA, len(DATA), plan)
    first.add(0, pieces[0])
    first.flush()
    other, _ = split(DATA, 2048)
    assert ChunkAssembly(tmp_path, SHA, len(DATA), other).kept == 0


def test_chunks_that_match_their_hashes_but_not_the_bundle(tmp_path: Path) -> None:
    wrong = os.urandom(len(DATA))
    plan, pieces = split(wrong, 4096)  # a notice whose chunk list is of another file
    assembly = ChunkAssembly(tmp_path, SHA, len(DATA), plan)
    for i, piece in enumerate(pieces):
        assembly.add(i, piece)
    with pytest.raises(IntegrityError, match="assembled bundle"):
        assembly.finish()
    assert not assembly.part.exists() and not assembly.record.exists()


def test_a_bundle_is_never_split_into_more_chunks_than_a_broker_delivers() -> None:
    """A broker may deliver at most 1,000 retained messages to one subscription (ejabberd's
    match_retained_limit): a bundle that would need more chunks at the asked size gets
    larger chunks instead."""
    data = os.urandom(1024 * 1250 + 7)  # 1,251 chunks of 1 KiB
    plan, pieces = split(data, 1024)
    assert MAX_CHUNKS == 1000
    assert len(pieces) == plan.count <= MAX_CHUNKS
    assert plan.size == chunk_size_for(len(data), 1024) > 1024 and plan.size % 1024 == 0
    assert b"".join(pieces) == data and parse_plan(plan.to_json(), len(data)) == plan
    assert chunk_size_for(10_000, 4096) == 4096  # a size that fits is kept


def test_a_plan_over_the_chunk_cap_is_refused_saying_so() -> None:
    size = 1024 * (MAX_CHUNKS + 1)
    with pytest.raises(BadChunkPlan, match=r"1001 chunks; at most 1000") as info:
        parse_plan({"size": 1024, "sha256": ["a" * 64] * (MAX_CHUNKS + 1)}, size)
    assert info.value.reason == "bad_notice"
    notice = {
        "manifest": {"name": "m", "version": "2.0.0"},
        "bundle": {"size": size, "sha256": SHA},
        "chunks": {"size": 1024, "sha256": ["a" * 64] * (MAX_CHUNKS + 1)},
    }
    with pytest.raises(BadNotice, match="at most 1000"):
        parse_notice(json.dumps(notice).encode())
