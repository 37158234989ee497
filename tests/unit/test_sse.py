"""SSE framing: line endings, comments, event names, multi-line data, cut streams."""

from __future__ import annotations

import pytest

from sidecar.parse.sse import (
    block_event_name,
    iter_events,
    normalise_newlines,
    parse_block,
    peek_type,
    split_blocks,
)


def events(body: str) -> list[tuple[str | None, str]]:
    return list(iter_events(body))


def test_plain_data_events() -> None:
    assert events('data: {"a":1}\n\ndata: [DONE]\n\n') == [(None, '{"a":1}'), (None, "[DONE]")]


@pytest.mark.parametrize("sep", ["\n", "\r\n", "\r"])
def test_line_endings(sep: str) -> None:
    body = f"event: x{sep}data: 1{sep}{sep}data: 2{sep}{sep}"
    assert events(body) == [("x", "1"), (None, "2")]


def test_mixed_line_endings() -> None:
    body = "data: 1\r\n\r\ndata: 2\n\nevent: e\r\ndata: 3\n\r\ndata: 4\r\n\n"
    assert events(body) == [(None, "1"), (None, "2"), ("e", "3"), (None, "4")]


def test_several_events_in_one_chunk_and_extra_blank_lines() -> None:
    assert events("data: a\n\n\n\ndata: b\n\n\n") == [(None, "a"), (None, "b")]


def test_comments_are_skipped() -> None:
    body = ": OPENROUTER PROCESSING\n\n: keep-alive\ndata: x\n\n:\n\n"
    assert events(body) == [(None, "x")]


def test_event_lines_and_unknown_fields() -> None:
    body = "id: 7\nevent: message_start\nretry: 10\nfoo: bar\ndata: {}\n\n"
    assert events(body) == [("message_start", "{}")]


def test_event_without_data_is_not_dispatched() -> None:
    assert events("event: ping\n\ndata: x\n\n") == [(None, "x")]


def test_multiline_data_is_joined_with_newlines() -> None:
    assert events('data: {\ndata:   "a": 1\ndata: }\n\n') == [(None, '{\n  "a": 1\n}')]


def test_space_after_colon_is_optional_and_only_one_is_removed() -> None:
    assert events("data:x\n\ndata:  y\n\n") == [(None, "x"), (None, " y")]
    assert events("event:e\ndata:{}\n\n") == [("e", "{}")]


def test_data_line_without_colon_counts_as_empty_data() -> None:
    assert events("data\n\n") == [(None, "")]


def test_last_event_without_blank_line_is_kept() -> None:
    assert events("data: a\n\ndata: b") == [(None, "a"), (None, "b")]
    assert events("data: a\n\ndata: b\n") == [(None, "a"), (None, "b")]


def test_split_blocks_reports_a_cut_tail() -> None:
    assert split_blocks("data: a\n\n") == (["data: a"], True)
    assert split_blocks("data: a\n\ndata: b") == (["data: a", "data: b"], False)
    assert split_blocks("") == ([], True)


def test_parse_block_and_event_name() -> None:
    assert parse_block("data: x") == (None, "x")
    assert parse_block(": comment") is None
    assert block_event_name("event: response.completed\ndata: {}") == "response.completed"
    assert block_event_name("data: {}") is None
    assert block_event_name(": c\nevent: e\ndata: 1") == "e"


def test_normalise_newlines_copies_only_when_needed() -> None:
    body = "data: a\n\n"
    assert normalise_newlines(body) is body
    assert normalise_newlines("a\r\nb\rc") == "a\nb\nc"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"type":"message_stop"   }', "message_stop"),
        ('{"type": "ping"}', "ping"),
        ('{"a":1}', None),
        ('{"type": 3}', None),
        ('{"type"', None),
        ("", None),
    ],
)
def test_peek_type(data: str, expected: str | None) -> None:
    assert peek_type(data) == expected
