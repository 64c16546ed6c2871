"""A corpus of malformed inputs, each run through `als-spark ingest`.

Every case must end in one of two ways: exit 0 with the bad lines quarantined in
`rejected` and exactly the good lines in `ratings`, or exit 3 with a one-paragraph
message and nothing published. Never a crash (exit 1), a stack trace, or a wrong table.

Inputs that tests/test_ingest.py already reads (CRLF line ends, a byte order mark, an empty
file, a header-only CSV, an id outside the 32-bit range) are not repeated here: the same ingest
code reads them, and the cases below check the command's two ways out.
"""

from __future__ import annotations

import os
import random

import pandas as pd
import pytest

from als_spark.cli import main

pytestmark = pytest.mark.slow

# 200 good lines: users 1..20 x items 1..10, ratings cycling 1..5.
GOOD = [(u, i, (u * i) % 5 + 1, 880000000 + 100 * u + i) for u in range(1, 21) for i in range(1, 11)]


def tsv(rows, sep="\t", end="\n") -> str:
    return "".join(sep.join(str(v) for v in row) + end for row in rows)


def garbage(n: int, seed: int = 7) -> bytes:
    rng = random.Random(seed)
    return bytes(rng.randrange(256) for _ in range(n))


# name -> (file name, bytes, extra CLI args, expected exit, expected rejected reasons (sorted) if exit 0)
CASES = {
    "binary garbage": ("u.data", garbage(4000), [], 3, None),
    "binary garbage forced": ("u.data", garbage(4000, 8), ["--format", "ml-100k"], 3, None),
    "wrong delimiter forced": ("u.data", tsv(GOOD, sep=",").encode(), ["--format", "ml-100k"], 3, None),
    "comma file without header is csv": ("data.txt", tsv(GOOD, sep=",").encode(), [], 0, []),
    "negative and NaN ratings above the limit": (
        "u.data",
        (tsv(GOOD) + "1\t99\t-3\t1\n2\t99\tNaN\t1\n3\t99\t-1\t1\n").encode(),
        [],
        3,
        None,
    ),
    "negative rating within the limit": (
        "u.data",
        (tsv(GOOD) + "1\t99\t-3\t1\n").encode(),
        [],
        0,
        ["rating outside [0.5, 5]"],
    ),
    "truncated last line": ("u.data", (tsv(GOOD) + "7\t3\t4").encode(), [], 0, ["wrong number of fields"]),
    "latin-1 byte in a field": (
        "u.data",
        tsv(GOOD).encode() + b"4\t5\xe9\t3\t1\n",
        [],
        0,
        ["item_id is not an integer"],
    ),
    "only blank lines": ("u.data", b"\n\n\n", [], 3, None),
    "one valid line among garbage lines": (
        "u.data",
        b"1\t2\t3\t4\n" + b"\x00\x01\x02\n" * 50,
        ["--format", "ml-100k"],
        3,
        None,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_input_is_quarantined_or_refused_never_crashes(spark, tmp_path, capsys, name):
    file_name, content, extra, want_exit, want_reasons = CASES[name]
    path = tmp_path / file_name
    path.write_bytes(content)
    out = tmp_path / "out"
    code = main(["ingest", "--input", str(path), "--output", str(out), "--log-level", "ERROR", *extra])
    err = capsys.readouterr().err
    assert code == want_exit, err[-1500:]
    assert "Traceback" not in err
    if want_exit == 3:
        assert "error:" in err and len(err.strip().splitlines()) <= 3  # one paragraph
        assert not out.exists() or not [e for e in os.listdir(out) if not e.startswith(".")]
        return
    ratings = pd.read_parquet(out / "ratings").sort_values(["user_id", "item_id"]).reset_index(drop=True)
    expected = pd.DataFrame(GOOD, columns=["user_id", "item_id", "rating", "timestamp"]).astype(
        {"user_id": "int32", "item_id": "int32", "rating": "float64", "timestamp": "int64"}
    )
    pd.testing.assert_frame_equal(ratings, expected, check_dtype=True)
    rejected = pd.read_parquet(out / "rejected")
    assert sorted(rejected["reason"]) == want_reasons
