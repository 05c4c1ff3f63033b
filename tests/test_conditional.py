"""Preconditions, clause by clause of RFC 9110 §13 and the ETag comparisons of §8.8.3."""

from __future__ import annotations

import pytest

from tinyhttp.conditional import evaluate, if_range_holds, parse_etags, strong_match, weak_match
from tinyhttp.httpdate import format_http_date

ETAG = '"3e8-17a"'
OTHER = '"3e8-17b"'
MODIFIED = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT
AT = format_http_date(MODIFIED)
BEFORE = format_http_date(MODIFIED - 1)
AFTER = format_http_date(MODIFIED + 1)


def check(headers: dict[str, str], method: str = "GET") -> int | None:
    return evaluate(method, headers, ETAG, MODIFIED)


# --- §8.8.3: parsing If-Match / If-None-Match lists ----------------------------------------


def test_parse_etags_keeps_quotes_and_weak_prefix_rfc9110_8_8_3() -> None:
    assert parse_etags('"a", W/"b"') == ['"a"', 'W/"b"']


def test_parse_etags_star_is_none_rfc9110_13_1_1() -> None:
    assert parse_etags("*") is None
    assert parse_etags("  *\t") is None


def test_parse_etags_tolerates_whitespace_and_empty_elements_rfc9110_5_6_1() -> None:
    assert parse_etags(' \t"a" ,\t"b",, ,"c" ') == ['"a"', '"b"', '"c"']


def test_parse_etags_empty_tag_and_empty_list_rfc9110_8_8_3() -> None:
    assert parse_etags('""') == ['""']
    assert parse_etags("") == []
    assert parse_etags(" , ") == []


def test_parse_etags_comma_inside_a_tag_rfc9110_8_8_3() -> None:
    """etagc includes the comma: a list is not split on every comma."""
    assert parse_etags('"a,b", "c"') == ['"a,b"', '"c"']


@pytest.mark.parametrize(
    "header",
    [
        "abc",  # no quotes
        '"abc',  # unterminated
        '"a"b',  # text after the closing quote
        '"a""b"',  # two tags with no comma
        'w/"a"',  # "W/" is case-sensitive
        'W/ "a"',
        '"a b"',  # a space is not an etagc
        "*, *",
    ],
)
def test_parse_etags_skips_malformed_elements_rfc9110_8_8_3(header: str) -> None:
    assert parse_etags(header) == []
    assert parse_etags(f'"ok", {header}, W/"ok2"') == ['"ok"', 'W/"ok2"']


def test_parse_etags_keeps_obs_text_rfc9110_8_8_3() -> None:
    assert parse_etags('"caf\xe9"') == ['"caf\xe9"']


# --- §8.8.3.2: strong and weak comparison --------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "strong", "weak"),
    [
        # The table of RFC 9110 §8.8.3.2, row by row.
        ('W/"1"', 'W/"1"', False, True),
        ('W/"1"', 'W/"2"', False, False),
        ('W/"1"', '"1"', False, True),
        ('"1"', '"1"', True, True),
        # And what follows from the definitions.
        ('"1"', 'W/"1"', False, True),
        ('"1"', '"2"', False, False),
        ('"a"', '"A"', False, False),  # opaque-tags compare character for character
    ],
)
def test_comparison_table_rfc9110_8_8_3_2(a: str, b: str, strong: bool, weak: bool) -> None:
    assert strong_match(a, b) is strong
    assert weak_match(a, b) is weak


# --- §13.1.1 If-Match (step 1 of §13.2.2) --------------------------------------------------


def test_no_preconditions_go_on_rfc9110_13_2_2() -> None:
    assert check({}) is None


def test_if_match_same_tag_goes_on_rfc9110_13_1_1() -> None:
    assert check({"if-match": ETAG}) is None
    assert check({"if-match": f"{OTHER}, {ETAG}"}) is None


def test_if_match_other_tag_is_412_rfc9110_13_1_1() -> None:
    assert check({"if-match": OTHER}) == 412
    assert check({"if-match": OTHER}, "HEAD") == 412
    assert check({"if-match": OTHER}, "PUT") == 412


def test_if_match_uses_strong_comparison_rfc9110_13_1_1() -> None:
    assert check({"if-match": f"W/{ETAG}"}) == 412


def test_if_match_star_holds_for_an_existing_file_rfc9110_13_1_1() -> None:
    assert check({"if-match": "*"}) is None


def test_if_match_empty_or_malformed_list_matches_nothing_rfc9110_13_1_1() -> None:
    assert check({"if-match": ""}) == 412
    assert check({"if-match": "garbage"}) == 412


# --- §13.1.4 If-Unmodified-Since (step 2) --------------------------------------------------


def test_if_unmodified_since_earlier_date_is_412_rfc9110_13_1_4() -> None:
    assert check({"if-unmodified-since": BEFORE}) == 412


def test_if_unmodified_since_same_or_later_date_goes_on_rfc9110_13_1_4() -> None:
    assert check({"if-unmodified-since": AT}) is None
    assert check({"if-unmodified-since": AFTER}) is None


def test_if_unmodified_since_applies_to_every_method_rfc9110_13_1_4() -> None:
    assert check({"if-unmodified-since": BEFORE}, "DELETE") == 412


@pytest.mark.parametrize("value", ["yesterday", "", "0", f"{BEFORE}, {BEFORE}"])
def test_if_unmodified_since_invalid_date_is_ignored_rfc9110_13_1_4(value: str) -> None:
    assert check({"if-unmodified-since": value}) is None


def test_if_match_beats_if_unmodified_since_rfc9110_13_2_2() -> None:
    """With If-Match present, If-Unmodified-Since is not looked at, either way."""
    assert check({"if-match": ETAG, "if-unmodified-since": BEFORE}) is None
    assert check({"if-match": OTHER, "if-unmodified-since": AFTER}) == 412


# --- §13.1.2 If-None-Match (step 3) --------------------------------------------------------


def test_if_none_match_same_tag_is_304_for_get_and_head_rfc9110_13_1_2() -> None:
    assert check({"if-none-match": ETAG}) == 304
    assert check({"if-none-match": ETAG}, "HEAD") == 304


def test_if_none_match_same_tag_is_412_for_other_methods_rfc9110_13_1_2() -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
        assert check({"if-none-match": ETAG}, method) == 412


def test_if_none_match_uses_weak_comparison_rfc9110_13_1_2() -> None:
    assert check({"if-none-match": f"W/{ETAG}"}) == 304


def test_if_none_match_in_a_list_rfc9110_13_1_2() -> None:
    assert check({"if-none-match": f'{OTHER}, W/"x", {ETAG}'}) == 304


def test_if_none_match_star_rfc9110_13_1_2() -> None:
    assert check({"if-none-match": "*"}) == 304
    assert check({"if-none-match": "*"}, "PUT") == 412


def test_if_none_match_other_tag_goes_on_rfc9110_13_1_2() -> None:
    assert check({"if-none-match": OTHER}) is None
    assert check({"if-none-match": OTHER}, "POST") is None


def test_if_match_is_checked_before_if_none_match_rfc9110_13_2_2() -> None:
    assert check({"if-match": OTHER, "if-none-match": ETAG}) == 412
    assert check({"if-match": ETAG, "if-none-match": ETAG}) == 304


def test_if_unmodified_since_is_checked_before_if_none_match_rfc9110_13_2_2() -> None:
    assert check({"if-unmodified-since": BEFORE, "if-none-match": ETAG}) == 412


# --- §13.1.3 If-Modified-Since (step 4) ----------------------------------------------------


def test_if_modified_since_same_or_later_date_is_304_rfc9110_13_1_3() -> None:
    assert check({"if-modified-since": AT}) == 304
    assert check({"if-modified-since": AFTER}) == 304
    assert check({"if-modified-since": AT}, "HEAD") == 304


def test_if_modified_since_earlier_date_goes_on_rfc9110_13_1_3() -> None:
    assert check({"if-modified-since": BEFORE}) is None


def test_if_modified_since_other_date_forms_rfc9110_13_1_3() -> None:
    assert check({"if-modified-since": "Sunday, 06-Nov-94 08:49:37 GMT"}) == 304  # rfc850-date


@pytest.mark.parametrize("value", ["yesterday", "", "Sun, 32 Nov 1994 08:49:37 GMT", f"{AT}, {AT}"])
def test_if_modified_since_invalid_date_is_ignored_rfc9110_13_1_3(value: str) -> None:
    assert check({"if-modified-since": value}) is None


def test_if_modified_since_only_for_get_and_head_rfc9110_13_1_3() -> None:
    assert check({"if-modified-since": AT}, "POST") is None
    assert check({"if-modified-since": AT}, "PUT") is None


def test_if_none_match_makes_if_modified_since_ignored_rfc9110_13_1_3() -> None:
    """A client with a tag trusts the tag: a differing tag wins over an unchanged date."""
    assert check({"if-none-match": OTHER, "if-modified-since": AFTER}) is None
    assert check({"if-none-match": ETAG, "if-modified-since": BEFORE}) == 304


def test_if_match_passing_then_if_modified_since_rfc9110_13_2_2() -> None:
    assert check({"if-match": ETAG, "if-modified-since": AT}) == 304


# --- §13.1.5 If-Range ----------------------------------------------------------------------


def test_if_range_same_strong_tag_holds_rfc9110_13_1_5() -> None:
    assert if_range_holds(ETAG, ETAG, MODIFIED)
    assert if_range_holds(f"  {ETAG} ", ETAG, MODIFIED)


def test_if_range_other_tag_fails_rfc9110_13_1_5() -> None:
    assert not if_range_holds(OTHER, ETAG, MODIFIED)


def test_if_range_weak_tag_never_holds_rfc9110_13_1_5() -> None:
    assert not if_range_holds(f"W/{ETAG}", ETAG, MODIFIED)
    assert not if_range_holds('W/"1"', 'W/"1"', MODIFIED)


def test_if_range_exact_date_holds_rfc9110_13_1_5() -> None:
    assert if_range_holds(AT, ETAG, MODIFIED)


def test_if_range_other_date_fails_rfc9110_13_1_5() -> None:
    """Exact match, not "earlier than or equal to": a later date does not hold either."""
    assert not if_range_holds(BEFORE, ETAG, MODIFIED)
    assert not if_range_holds(AFTER, ETAG, MODIFIED)


@pytest.mark.parametrize("value", ["", "garbage", f"{ETAG[:-1]}", f"{ETAG}, {ETAG}", "*"])
def test_if_range_unparsable_fails_rfc9110_13_1_5(value: str) -> None:
    assert not if_range_holds(value, ETAG, MODIFIED)
