"""The test tiers: every test file has one in tests/conftest.py, every collected test gets exactly one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import BY_FIXTURE, FILE_TIERS, TIERS

TESTS = Path(__file__).resolve().parent

#: A plugin for the collection below: writes every test's tier markers and whether it uses ``spark``.
DUMP = """
import json, os

def pytest_collection_finish(session):
    tiers = ("unit", "spark_unit", "integration", "e2e", "deploy")
    found = {item.nodeid: {"tiers": sorted({m.name for m in item.iter_markers() if m.name in tiers}),
                           "spark": "spark" in item.fixturenames} for item in session.items}
    with open(os.environ["TIER_DUMP"], "w") as out:
        json.dump(found, out)
"""


def test_every_test_file_has_a_tier():
    files = sorted(p.name for p in TESTS.glob("test_*.py"))
    assert sorted(FILE_TIERS) == files  # no file left out, none listed that is gone
    assert set(FILE_TIERS.values()) <= {*TIERS, BY_FIXTURE}


def test_every_collected_test_has_exactly_one_tier_and_unit_tests_use_no_spark(tmp_path):
    (tmp_path / "tier_dump.py").write_text(DUMP)
    dump = tmp_path / "tiers.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "TIER_DUMP": str(dump),
    }
    collected = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "tier_dump",
            "-p",
            "no:cacheprovider",
            str(TESTS),
        ],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-3000:]
    found = json.loads(dump.read_text())
    assert {Path(node.split("::")[0]).name for node in found} == set(FILE_TIERS)
    untiered = [node for node, t in found.items() if len(t["tiers"]) != 1]
    assert not untiered, untiered
    assert {t["tiers"][0] for t in found.values()} == set(TIERS)  # each tier has tests
    assert not [node for node, t in found.items() if t["tiers"] == ["unit"] and t["spark"]]
    # a library file's unit and Spark-unit tests are told apart by the fixture
    library = [
        t
        for node, t in found.items()
        if FILE_TIERS[Path(node.split("::")[0]).name] == BY_FIXTURE and t["tiers"] in (["unit"], ["spark_unit"])
    ]
    assert all(t["tiers"] == (["spark_unit"] if t["spark"] else ["unit"]) for t in library)
