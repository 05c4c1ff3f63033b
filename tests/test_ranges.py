"""Range selection and multipart framing, clause by clause of RFC 9110 §14."""

from __future__ import annotations

import email
import email.message

import pytest

from tinyhttp.ranges import (
    MAX_RANGES,
    ByteRange,
    content_range,
    layout_length,
    multipart_layout,
    select_ranges,
    unsatisfied_range,
)

SIZE = 1000


# --- §14.1.2: the forms of a byte range ----------------------------------------------------


def test_byte_range_length_counts_both_ends_rfc9110_14_1_2() -> None:
    assert ByteRange(0, 99).length == 100
    assert ByteRange(5, 5).length == 1


def test_single_range_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=0-99", SIZE) == [ByteRange(0, 99)]


def test_single_byte_range_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=0-0", SIZE) == [ByteRange(0, 0)]
    assert select_ranges("bytes=999-999", SIZE) == [ByteRange(999, 999)]


def test_suffix_range_is_the_last_n_bytes_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=-500", SIZE) == [ByteRange(500, 999)]


def test_open_ended_range_runs_to_the_end_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=500-", SIZE) == [ByteRange(500, 999)]
    assert select_ranges("bytes=0-", SIZE) == [ByteRange(0, 999)]


def test_end_past_eof_is_clamped_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=900-5000", SIZE) == [ByteRange(900, 999)]
    assert select_ranges("bytes=0-1000", SIZE) == [ByteRange(0, 999)]


def test_suffix_longer_than_file_is_whole_file_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=-5000", SIZE) == [ByteRange(0, 999)]
    assert select_ranges("bytes=-1000", SIZE) == [ByteRange(0, 999)]


def test_leading_zeros_are_just_digits_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=0010-0019", SIZE) == [ByteRange(10, 19)]


# --- §14.1.2: satisfiable or not -----------------------------------------------------------


def test_first_pos_at_length_is_unsatisfiable_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=1000-", SIZE) == []
    assert select_ranges("bytes=1000-2000", SIZE) == []


def test_zero_suffix_is_unsatisfiable_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=-0", SIZE) == []


def test_unsatisfiable_specs_are_dropped_beside_satisfiable_ones_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=5000-,0-9,-0", SIZE) == [ByteRange(0, 9)]


def test_zero_length_file_ignores_range_rfc9110_14_1_2() -> None:
    """An empty file has no bytes to range over: it is sent whole, with 200 (§14.2 MAY)."""
    assert select_ranges("bytes=0-99", 0) is None
    assert select_ranges("bytes=-5", 0) is None


# --- §14.1.2: numbers of any length never raise --------------------------------------------


def test_5000_digit_first_pos_is_unsatisfiable_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=" + "9" * 5000 + "-", SIZE) == []


def test_5000_digit_last_pos_is_clamped_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=10-" + "9" * 5000, SIZE) == [ByteRange(10, 999)]


def test_5000_digit_suffix_is_the_whole_file_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=-" + "9" * 5000, SIZE) == [ByteRange(0, 999)]


def test_5000_zeros_are_zero_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=" + "0" * 5000 + "-9", SIZE) == [ByteRange(0, 9)]
    assert select_ranges("bytes=-" + "0" * 5000, SIZE) == []


def test_huge_first_above_huge_last_is_invalid_rfc9110_14_1_1() -> None:
    """Numbers too long for int() are still ordered exactly, so last < first is caught."""
    first, last = "9" * 5000, "9" * 4999
    assert select_ranges(f"bytes={first}-{last}", SIZE) is None
    assert select_ranges(f"bytes={last}-{first}", SIZE) == []


def test_19_digit_numbers_count_as_past_any_file_rfc9110_14_1_2() -> None:
    assert select_ranges("bytes=1000000000000000000-", 2**63 - 1) == []
    assert select_ranges("bytes=0-1000000000000000000", 2**63 - 1) == [ByteRange(0, 2**63 - 2)]
    assert select_ranges("bytes=999999999999999999-", 10**18) == [
        ByteRange(999999999999999999, 10**18 - 1)
    ]


# --- §14.1.1 and §14.1: syntax, where one bad spec voids the header ------------------------


@pytest.mark.parametrize(
    "header",
    [
        "bytes=a-b",
        "bytes=5-1",  # last-pos below first-pos
        "bytes=0-1,5-1",  # one invalid spec voids the whole header
        "bytes=0-1,x",
        "bytes=",
        "bytes=,",
        "bytes=-",
        "bytes=1",
        "bytes=1-2-3",
        "bytes=--1",
        "bytes=+1-2",
        "bytes=1 -2",
        "bytes=0x10-",
        "bytes=\u0663-",  # an Arabic-Indic digit: int() would take it, DIGIT does not
        "bytes 0-1",
        "bytes =0-1",
        "bytes= 0-1;",
        "=0-1",
        "",
    ],
)
def test_invalid_syntax_is_ignored_rfc9110_14_1_1(header: str) -> None:
    assert select_ranges(header, SIZE) is None


@pytest.mark.parametrize("header", ["items=0-1", "none=0-1", "byte=0-1", "bytesx=0-1"])
def test_unknown_unit_is_ignored_rfc9110_14_2(header: str) -> None:
    assert select_ranges(header, SIZE) is None


def test_unit_name_is_case_insensitive_rfc9110_14_1() -> None:
    assert select_ranges("BYTES=0-1", SIZE) == [ByteRange(0, 1)]
    assert select_ranges("Bytes=0-1", SIZE) == [ByteRange(0, 1)]


def test_whitespace_around_list_commas_rfc9110_5_6_1() -> None:
    assert select_ranges("bytes=0-1 , \t10-11", SIZE) == [ByteRange(0, 1), ByteRange(10, 11)]
    assert select_ranges("  bytes=0-1  ", SIZE) == [ByteRange(0, 1)]


def test_empty_list_elements_are_allowed_rfc9110_5_6_1() -> None:
    assert select_ranges("bytes=0-1,,10-11", SIZE) == [ByteRange(0, 1), ByteRange(10, 11)]
    assert select_ranges("bytes=,0-1,", SIZE) == [ByteRange(0, 1)]


# --- §14.2: several ranges, the guards, coalescing -----------------------------------------


def test_several_ranges_are_sorted_rfc9110_14_2() -> None:
    assert select_ranges("bytes=500-599,0-99,-100", SIZE) == [
        ByteRange(0, 99),
        ByteRange(500, 599),
        ByteRange(900, 999),
    ]


def test_overlapping_ranges_are_coalesced_rfc9110_14_2() -> None:
    assert select_ranges("bytes=0-99,50-149", SIZE) == [ByteRange(0, 149)]
    assert select_ranges("bytes=100-199,0-149", SIZE) == [ByteRange(0, 199)]


def test_contained_range_is_coalesced_rfc9110_14_2() -> None:
    assert select_ranges("bytes=0-199,50-60", SIZE) == [ByteRange(0, 199)]


def test_adjacent_ranges_are_coalesced_rfc9110_14_2() -> None:
    assert select_ranges("bytes=0-99,100-199", SIZE) == [ByteRange(0, 199)]
    assert select_ranges("bytes=-100,800-899", SIZE) == [ByteRange(800, 999)]


def test_ranges_with_a_gap_stay_apart_rfc9110_14_2() -> None:
    assert select_ranges("bytes=0-99,101-199", SIZE) == [ByteRange(0, 99), ByteRange(101, 199)]


def test_sixteen_ranges_are_served_rfc9110_14_2() -> None:
    header = "bytes=" + ",".join(f"{i * 10}-{i * 10}" for i in range(MAX_RANGES))
    assert MAX_RANGES == 16
    assert select_ranges(header, SIZE) == [ByteRange(i * 10, i * 10) for i in range(16)]


def test_seventeen_ranges_get_the_whole_file_rfc9110_14_2() -> None:
    header = "bytes=" + ",".join(f"{i * 10}-{i * 10}" for i in range(MAX_RANGES + 1))
    assert select_ranges(header, SIZE) is None


def test_seventeen_ranges_count_even_if_unsatisfiable_rfc9110_14_2() -> None:
    header = "bytes=0-0," + ",".join("5000-" for _ in range(MAX_RANGES))
    assert select_ranges(header, SIZE) is None


def test_empty_elements_do_not_count_as_ranges_rfc9110_5_6_1() -> None:
    header = "bytes=" + ",,".join(f"{i * 10}-{i * 10}" for i in range(MAX_RANGES))
    assert select_ranges(header, SIZE) is not None


def test_ranges_adding_up_to_more_than_the_file_get_it_whole_rfc9110_14_2() -> None:
    """nginx's guard, checked before coalescing: `0-,0-` would coalesce to one range."""
    assert select_ranges("bytes=0-,0-", 10) is None
    assert select_ranges("bytes=0-5,3-9", 10) is None  # 6 + 7 = 13 bytes > 10


def test_ranges_adding_up_to_exactly_the_file_are_served_rfc9110_14_2() -> None:
    assert select_ranges("bytes=0-4,5-9", 10) == [ByteRange(0, 9)]
    assert select_ranges("bytes=0-5,3-6", 10) == [ByteRange(0, 6)]  # 6 + 4 = 10 bytes


def test_sum_guard_uses_clamped_lengths_rfc9110_14_2() -> None:
    """`0-99999` on a 10-byte file counts as the 10 bytes it really names."""
    assert select_ranges("bytes=0-99999", 10) == [ByteRange(0, 9)]
    assert select_ranges("bytes=0-99999,-1", 10) is None


# --- §14.4: Content-Range ------------------------------------------------------------------


def test_content_range_rfc9110_14_4() -> None:
    assert content_range(ByteRange(0, 99), 1000) == "bytes 0-99/1000"
    assert content_range(ByteRange(999, 999), 1000) == "bytes 999-999/1000"


def test_unsatisfied_range_rfc9110_14_4() -> None:
    assert unsatisfied_range(1000) == "bytes */1000"


# --- §14.6: multipart/byteranges -----------------------------------------------------------

SAMPLE = bytes(range(256)) * 4  # every byte value, CR and LF included
BOUNDARY = "3d6b6a416f9b5"


def body_of(layout: list[bytes | ByteRange], data: bytes) -> bytes:
    """The body the server would send: heads as they are, ranges filled from the file."""
    return b"".join(
        part if isinstance(part, bytes) else data[part.start : part.end + 1] for part in layout
    )


def parse_multipart(body: bytes, boundary: str) -> email.message.Message:
    head = f"Content-Type: multipart/byteranges; boundary={boundary}\r\n\r\n".encode()
    return email.message_from_bytes(head + body)


def parts_of(message: email.message.Message) -> list[email.message.Message]:
    payload = message.get_payload()
    assert isinstance(payload, list)
    return [part for part in payload if isinstance(part, email.message.Message)]


def test_multipart_layout_alternates_heads_and_ranges_rfc9110_14_6() -> None:
    ranges = [ByteRange(0, 9), ByteRange(20, 29)]
    layout = multipart_layout(ranges, 100, "text/plain", "B")
    assert layout == [
        b"--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-9/100\r\n\r\n",
        ByteRange(0, 9),
        b"\r\n--B\r\nContent-Type: text/plain\r\nContent-Range: bytes 20-29/100\r\n\r\n",
        ByteRange(20, 29),
        b"\r\n--B--\r\n",
    ]


def test_multipart_layout_without_content_type_rfc9110_14_6() -> None:
    layout = multipart_layout([ByteRange(0, 0)], 1, "", "B")
    assert layout[0] == b"--B\r\nContent-Range: bytes 0-0/1\r\n\r\n"


def test_layout_length_is_exact_rfc9110_14_6() -> None:
    ranges = [ByteRange(0, 9), ByteRange(100, 355), ByteRange(1000, 1023)]
    layout = multipart_layout(ranges, len(SAMPLE), "application/octet-stream", BOUNDARY)
    assert layout_length(layout) == len(body_of(layout, SAMPLE))
    heads = sum(len(part) for part in layout if isinstance(part, bytes))
    assert layout_length(layout) == heads + 10 + 256 + 24


def test_multipart_body_parses_with_the_email_package_rfc9110_14_6() -> None:
    ranges = select_ranges("bytes=1000-,-1,0-9,100-355,13-13", len(SAMPLE))
    assert ranges is not None
    content_type = "application/octet-stream"
    layout = multipart_layout(ranges, len(SAMPLE), content_type, BOUNDARY)
    message = parse_multipart(body_of(layout, SAMPLE), BOUNDARY)
    assert message.is_multipart()
    parts = parts_of(message)
    assert len(parts) == len(ranges) == 4
    for part, r in zip(parts, ranges, strict=True):
        assert part["Content-Type"] == content_type
        assert part["Content-Range"] == f"bytes {r.start}-{r.end}/{len(SAMPLE)}"
        assert part.get_payload(decode=True) == SAMPLE[r.start : r.end + 1]
    assert message.defects == []


def test_multipart_parts_ending_in_crlf_keep_it_rfc9110_14_6() -> None:
    """A part whose bytes end in CRLF must not lose them to the delimiter's own CRLF."""
    data = b"ab\r\n\r\ncd\r\n"
    ranges = [ByteRange(0, 3), ByteRange(6, 9)]
    layout = multipart_layout(ranges, len(data), "text/plain", BOUNDARY)
    message = parse_multipart(body_of(layout, data), BOUNDARY)
    parts = parts_of(message)
    assert [p.get_payload(decode=True) for p in parts] == [b"ab\r\n", b"cd\r\n"]
