"""Reading each ratings and item format, validation counts, de-duplication and input errors."""

from __future__ import annotations

import pytest
from chispa import assert_df_equality

from als_spark import ingest, titles
from als_spark.errors import InputDataError

RATINGS = "user_id int, item_id int, rating double, timestamp long"
ITEMS = "item_id int, title string"


def _write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return str(path)


def _sorted(df):
    return df.orderBy(*df.columns)


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        ("u.data", "1\t10\t5\t881250949\n2\t10\t3\t881250950\n2\t20\t4\t881250951\n", "ml-100k"),
        ("ratings.dat", "1::10::5::881250949\n2::10::3::881250950\n2::20::4::881250951\n", "ml-1m"),
        (
            "ratings.csv",
            "userId,movieId,rating,timestamp\n1,10,5.0,881250949\n2,10,3.0,881250950\n2,20,4.0,881250951\n",
            "csv",
        ),
    ],
)
def test_each_ratings_format_is_detected_and_read(spark, tmp_path, name, text, fmt):
    path = _write(tmp_path / name, text)
    got = ingest.read_ratings(spark, path)
    expected = spark.createDataFrame(
        [(1, 10, 5.0, 881250949), (2, 10, 3.0, 881250950), (2, 20, 4.0, 881250951)], RATINGS
    )
    assert_df_equality(_sorted(got.df), expected, ignore_nullable=True)
    assert (got.fmt, got.rows_read, got.rows_rejected, got.duplicates_dropped, got.rows) == (fmt, 3, 0, 0, 3)


def test_csv_keeps_half_star_ratings(spark, tmp_path):
    path = _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n7,3,3.5,100\n7,4,0.5,101\n")
    got = ingest.read_ratings(spark, path).df
    assert_df_equality(
        _sorted(got), spark.createDataFrame([(7, 3, 3.5, 100), (7, 4, 0.5, 101)], RATINGS), ignore_nullable=True
    )


def test_format_can_be_forced(spark, tmp_path):
    # A headerless comma file would be detected as csv anyway; forcing ml-100k on it rejects every row.
    path = _write(tmp_path / "data.txt", "1\t2\t3\t4\n")
    assert ingest.read_ratings(spark, path, fmt="ml-100k").rows == 1
    with pytest.raises(InputDataError, match="all rejected"):
        ingest.read_ratings(spark, path, fmt="ml-1m")


def test_detect_format_from_first_line():
    assert ingest.detect_format("196\t242\t3\t881250949") == "ml-100k"
    assert ingest.detect_format("1::1193::5::978300760") == "ml-1m"
    assert ingest.detect_format("userId,movieId,rating,timestamp") == "csv"
    assert ingest.detect_format("\ufeffuserId,movieId,rating,timestamp") == "csv"
    assert ingest.detect_format("1,2,3.5,4") == "csv"
    assert ingest.detect_format("hello world") is None
    # Tables: magic bytes, JSON lines, and a header of names (not MovieLens's).
    assert ingest.detect_format("PAR1\x15\x04") == "parquet"
    assert ingest.detect_format("ORC\x0a") == "orc"
    assert ingest.detect_format('{"user_id": "a"}') == "json"
    assert ingest.detect_format("user_id,item_id,rating,timestamp") == "delimited"
    assert ingest.detect_format("user\titem") == "delimited"
    assert ingest.detect_format("\x00\x01binary,stuff") is None


def test_every_bad_line_is_rejected_with_its_reason(spark):
    lines = [
        "1\t10\t5\t100",  # valid
        "",  # empty line
        "1\t10\t5",  # 3 fields
        "1\t10\t5\t100\t7",  # 5 fields
        "\t10\t5\t100",  # missing user id
        "1\t\t5\t100",  # missing item id
        "u1\t10\t5\t100",  # non-integer user id
        "1\t1.5\t5\t100",  # non-integer item id (never truncated to 1)
        "2147483648\t10\t5\t100",  # one past the 32-bit range
        "1\t10\tfive\t100",  # rating not a number
        "1\t10\tNaN\t100",  # rating not finite
        "1\t10\tInfinity\t100",  # rating not finite
        "1\t10\t-1\t100",  # rating below the range
        "1\t10\t5.5\t100",  # rating above the range
        "1\t10\t5\tyesterday",  # timestamp not an integer
        "-7\t10\t0.5\t100",  # valid: negative ids are ids, 0.5 is in range
        "2147483647\t10\t5\t100",  # valid: the largest 32-bit id
    ]
    got = ingest.parse_lines(
        spark.createDataFrame([(v,) for v in lines], "value string"), "ml-100k", rating_range=(0.5, 5.0)
    )
    reasons = [
        None,
        "empty line",
        "wrong number of fields",
        "wrong number of fields",
        "missing user_id",
        "missing item_id",
        "user_id is not an integer",
        "item_id is not an integer",
        "user_id outside the 32-bit integer range",
        "rating is not a number",
        "rating is not finite",
        "rating is not finite",
        "rating outside [0.5, 5]",
        "rating outside [0.5, 5]",
        "timestamp is not an integer",
        None,
        None,
    ]
    expected = spark.createDataFrame(list(zip(lines, reasons)), "line string, reason string")
    assert_df_equality(got.select("line", "reason"), expected, ignore_nullable=True, ignore_row_order=True)
    valid = got.where("reason IS NULL").select("user_id", "item_id", "rating", "timestamp")
    want = spark.createDataFrame([(1, 10, 5.0, 100), (-7, 10, 0.5, 100), (2147483647, 10, 5.0, 100)], RATINGS)
    assert_df_equality(valid, want, ignore_nullable=True, ignore_row_order=True)


def test_crlf_line_ends_and_a_byte_order_mark_are_tolerated(spark, tmp_path):
    path = _write(tmp_path / "u.data", "\ufeff1\t10\t5\t100\r\n2\t20\t4\t200\r\n")
    got = ingest.read_ratings(spark, path)
    assert (got.rows_read, got.rows_rejected) == (2, 0)
    assert_df_equality(
        _sorted(got.df), spark.createDataFrame([(1, 10, 5.0, 100), (2, 20, 4.0, 200)], RATINGS), ignore_nullable=True
    )


def test_rating_range_is_configurable(spark, tmp_path):
    path = _write(tmp_path / "u.data", "1\t10\t10\t100\n1\t11\t0\t100\n")
    assert ingest.read_ratings(spark, path, rating_range=(0, 10)).rows == 2
    with pytest.raises(InputDataError, match=r"all rejected; 2 x rating outside \[1, 5\]"):
        ingest.read_ratings(spark, path, rating_range=(1, 5))


def test_too_many_rejected_lines_is_an_error_listing_reasons(spark, tmp_path):
    path = _write(tmp_path / "u.data", "1\t10\t5\t100\n1\t11\tx\t100\n2\t10\t4\t100\n2\t11\t4\n")
    ratings = ingest.read_ratings(spark, path)
    assert (ratings.rows_read, ratings.rows_rejected) == (4, 2)
    ingest.check_rejected(ratings, 0.5, path)  # exactly at the limit: allowed
    with pytest.raises(InputDataError) as err:
        ingest.check_rejected(ratings, 0.49, path)
    message = str(err.value)
    assert "2 of 4 lines" in message and "(50.0%)" in message and "Nothing was published" in message
    assert "1 x rating is not a number (e.g. '1\\t11\\tx\\t100')" in message
    assert "1 x wrong number of fields" in message and "ingest.max_rejected_fraction" in message
    assert_df_equality(
        ratings.rejected.orderBy("line"),
        spark.createDataFrame(
            [("1\t11\tx\t100", "rating is not a number"), ("2\t11\t4", "wrong number of fields")],
            "line string, reason string",
        ),
        ignore_nullable=True,
    )


def test_bad_rows_are_rejected_and_counted(spark, tmp_path):
    text = "\n".join(
        [
            "1\t10\t5\t100",
            "x\t10\t5\t100",  # non-integer user id
            "1\t11",  # missing fields
            "1\t12\tfive\t100",  # unparseable rating
            "1\t13\tNaN\t100",  # non-finite rating
            "99999999999\t14\t4\t100",  # id outside the 32-bit range
            "2\t10\t4\t100",
        ]
    )
    got = ingest.read_ratings(spark, _write(tmp_path / "u.data", text + "\n"))
    assert (got.rows_read, got.rows_rejected, got.rows) == (7, 5, 2)
    assert_df_equality(
        _sorted(got.df), spark.createDataFrame([(1, 10, 5.0, 100), (2, 10, 4.0, 100)], RATINGS), ignore_nullable=True
    )


def test_duplicate_pairs_keep_the_latest_rating(spark, tmp_path):
    text = "1\t10\t5\t100\n1\t10\t2\t300\n1\t10\t4\t200\n2\t10\t1\t50\n2\t10\t3\t50\n"
    got = ingest.read_ratings(spark, _write(tmp_path / "u.data", text))
    # (1,10): timestamp 300 wins -> 2.0; (2,10): same timestamp, the higher rating wins -> 3.0
    expected = spark.createDataFrame([(1, 10, 2.0, 300), (2, 10, 3.0, 50)], RATINGS)
    assert_df_equality(_sorted(got.df), expected, ignore_nullable=True)
    assert (got.rows_read, got.duplicates_dropped, got.rows) == (5, 3, 2)


def test_missing_input_is_an_actionable_error(spark, tmp_path):
    with pytest.raises(InputDataError, match=r"input not found: .*nope\.data.*--input.*--dataset synthetic"):
        ingest.read_ratings(spark, str(tmp_path / "nope.data"))


def test_empty_input_is_an_error(spark, tmp_path):
    with pytest.raises(InputDataError, match="input is empty"):
        ingest.read_ratings(spark, _write(tmp_path / "u.data", ""))


def test_header_only_csv_is_an_error(spark, tmp_path):
    with pytest.raises(InputDataError, match="has no rows"):
        ingest.read_ratings(spark, _write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n"))


def test_unknown_format_is_an_error_suggesting_format(spark, tmp_path):
    with pytest.raises(InputDataError, match="cannot tell the format.*--format"):
        ingest.read_ratings(spark, _write(tmp_path / "r.txt", "hello world\n"))


def test_u_item_is_latin1_pipe_separated(spark, tmp_path):
    text = '1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1\n2|Café "Noir" (1996)|01-Jan-1996||http://y|0|1|0\n'
    got = titles.read_items(spark, _write(tmp_path / "u.item", text, "latin-1"))
    expected = spark.createDataFrame([(1, "Toy Story (1995)"), (2, 'Café "Noir" (1996)')], ITEMS)
    assert_df_equality(_sorted(got), expected, ignore_nullable=True)


def test_movies_dat_is_latin1_double_colon(spark, tmp_path):
    text = "1::Toy Story (1995)::Animation|Children's\n2::Señor, A (1996)::Drama\n"
    got = titles.read_items(spark, _write(tmp_path / "movies.dat", text, "latin-1"))
    expected = spark.createDataFrame([(1, "Toy Story (1995)"), (2, "Señor, A (1996)")], ITEMS)
    assert_df_equality(_sorted(got), expected, ignore_nullable=True)


def test_movies_csv_handles_quoted_commas_and_quotes(spark, tmp_path):
    text = (
        "movieId,title,genres\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\n'
        '12,"""Great Performances"" Cats (1998)",Musical\n'
        "13,Amélie (2001),Comedy\n"
    )
    got = titles.read_items(spark, _write(tmp_path / "movies.csv", text))
    expected = spark.createDataFrame(
        [(11, "American President, The (1995)"), (12, '"Great Performances" Cats (1998)'), (13, "Amélie (2001)")], ITEMS
    )
    assert_df_equality(_sorted(got), expected, ignore_nullable=True)


def test_items_path_beside_follows_the_archive_layout():
    assert titles.items_path_beside("/data/ml-100k/u.data", "ml-100k") == "/data/ml-100k/u.item"
    assert titles.items_path_beside("s3://b/ml-1m/ratings.dat", "ml-1m") == "s3://b/ml-1m/movies.dat"
    assert titles.items_path_beside("ratings.csv", "csv") == "movies.csv"
