"""Prepared statements: named parameters turned once into $n, on Django's own connection."""

from __future__ import annotations

import pytest
from django.db import DataError, transaction

from apps.core.db import Statement, prepared_cursor
from apps.orders.services.fast import reserve_statement


def test_a_statement_numbers_each_name_once_and_keeps_literal_percent():
    statement = Statement.of("SELECT %(a)s::int + %(b)s::int, %(a)s::int, 'x%%y'")
    assert statement.text == "SELECT $1::int + $2::int, $1::int, 'x%y'"
    assert statement.names == ("a", "b")
    assert statement.args({"b": 2, "a": 1, "unused": 3}) == [1, 2]
    with pytest.raises(KeyError):
        statement.args({"a": 1})


def test_a_positional_placeholder_is_refused():
    with pytest.raises(ValueError, match="named parameters only"):
        Statement.of("SELECT %s")


def test_the_reservation_statement_is_over_the_length_psycopg_would_cache():
    """Why Statement exists: psycopg converts longer texts on every call."""
    from psycopg import _queries

    reserve = reserve_statement().statement
    assert len(reserve.text.encode()) > _queries.MAX_CACHED_STATEMENT_LENGTH
    assert "%(" not in reserve.text and len(reserve.names) == len(set(reserve.names))


@pytest.mark.django_db
def test_a_raw_cursor_runs_in_the_callers_transaction_and_maps_errors(django_assert_num_queries):
    statement = Statement.of("SELECT %(n)s::int * 2")
    with django_assert_num_queries(1), prepared_cursor(raw=True) as cursor:
        cursor.execute(statement.text, statement.args({"n": 21}))
        assert cursor.fetchone() == (42,)
    with pytest.raises(DataError), transaction.atomic(), prepared_cursor(raw=True) as cursor:
        cursor.execute(statement.text, statement.args({"n": "not a number"}))
