"""Every REFINERY_* setting is declared once, in refinery/settings.py: no other module reads one
(read from the source), each is in README.md's settings table, a bad value fails naming the
variable and the value, and only the documented ones are read when the definitions are built."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from refinery import settings
from refinery.settings import SETTINGS, SettingError

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "refinery"
NAME = re.compile(r"^REFINERY_[A-Z0-9_]+$")
# A test hook, not a setting: refinery/faults.py SIGKILLs at the point it names.
HOOK = {"refinery/faults.py": {"REFINERY_KILL_AT"}}
# The demo starts a dagster daemon and webserver with settings of its own, and gold's planner
# passes a run's dates to its dbt subprocess in REFINERY_GOLD_RUN (not a setting: nobody sets it
# but the gold step): they name variables to SET them for those processes (and may not read one).
SETS_FOR_CHILDREN = {"refinery/demo.py", "refinery/assets/gold/plan.py"}
# Read outside the package (bench/, the fuzz tests), never by refinery itself.
NOT_REFINERY = {"REFINERY_FUZZ_EXAMPLES", "REFINERY_KILL_AT"}


def modules() -> list[Path]:
    return sorted(
        p for p in PACKAGE.rglob("*.py") if p.name != "settings.py" or p.parent != PACKAGE
    )


def _is_environ(node: ast.AST) -> bool:
    """os.environ, or a name/attribute called environ (a mapping passed in its place)."""
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def environment_reads(tree: ast.AST) -> list[str]:
    """REFINERY_* names read from the environment: os.environ.get / [] / in, os.getenv."""
    reads = []

    def named(node: ast.AST) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value if node.value.startswith("REFINERY_") else None
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            func = node.func
            if (func.attr in ("get", "pop", "setdefault") and _is_environ(func.value)) or (
                func.attr == "getenv"
            ):
                reads.append(named(node.args[0]))
        elif isinstance(node, ast.Subscript) and _is_environ(node.value):
            if isinstance(node.ctx, ast.Load):
                reads.append(named(node.slice))
        elif isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators):
            reads.append(named(node.left))
    return [name for name in reads if name]


def exact_names(tree: ast.AST) -> list[str]:
    """String constants that are a whole REFINERY_* name (a message that mentions one is not)."""
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and NAME.match(node.value)
    ]


def test_no_module_but_settings_reads_a_refinery_variable():
    offenders = []
    for path in modules():
        relative = str(path.relative_to(REPO))
        tree = ast.parse(path.read_text())
        allowed = HOOK.get(relative, set())
        for name in environment_reads(tree):
            if name not in allowed:
                offenders.append(f"{relative} reads {name}")
        if relative not in SETS_FOR_CHILDREN:
            for name in exact_names(tree):
                if name not in allowed:
                    offenders.append(f"{relative} names {name} (read it through refinery.settings)")
    assert offenders == [], "\n".join(offenders)


def test_the_source_scan_sees_each_way_of_reading():
    source = (
        "import os\n"
        "a = os.environ.get('REFINERY_A')\n"
        "b = os.environ['REFINERY_B']\n"
        "c = os.getenv('REFINERY_C', '1')\n"
        "d = 'REFINERY_D' in os.environ\n"
        "e = environ.get('REFINERY_E')\n"
        "os.environ['REFINERY_SET'] = '1'\n"  # a write is not a read
        "msg = 'raise REFINERY_MESSAGE if needed'\n"
        "NAME = 'REFINERY_F'\n"
    )
    tree = ast.parse(source)
    assert sorted(environment_reads(tree)) == [f"REFINERY_{c}" for c in "ABCDE"]
    assert "REFINERY_F" in exact_names(tree) and "REFINERY_MESSAGE" not in str(exact_names(tree))


def readme_settings_rows() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("|")]


def test_every_setting_is_in_the_readme_table_and_the_table_names_no_other():
    rows = readme_settings_rows()
    documented = {name for row in rows for name in re.findall(r"`(REFINERY_[A-Z0-9_]+)`", row)}
    missing = sorted(set(SETTINGS) - documented)
    assert missing == [], f"README.md's settings table lacks {missing}"
    unknown = sorted(documented - set(SETTINGS) - NOT_REFINERY)
    assert unknown == [], f"README.md's settings table names undeclared {unknown}"


@pytest.mark.parametrize(
    ("name", "bad", "expected"),
    [
        ("REFINERY_DBT_TARGETS_KEPT", "ten", "not an integer"),
        ("REFINERY_DBT_TARGETS_KEPT", "0", "must be >= 1"),
        ("REFINERY_SENSOR_INTERVAL_SECONDS", "soon", "not an integer"),
        ("REFINERY_MAX_QUARANTINE_RATE", "5%", "not a number"),
        ("REFINERY_MAX_QUARANTINE_RATE", "1.5", r"within \[0, 1\]"),
        ("REFINERY_DRIFT_SHARE", "0", r"within \(0, 1\]"),
        ("REFINERY_FRESHNESS_HALF_LIFE_HOURS", "nan", "not a finite number"),
        ("REFINERY_PARTITIONS_START", "Jan 1", "not a YYYY-MM-DD date"),
        ("REFINERY_MIN_EVENT_TIME", "2025-02-30", "day is out of range"),
        ("REFINERY_DUCKDB_MEMORY_LIMIT", "lots", "e.g. 6GB or 8GiB"),
        ("REFINERY_SERVE_PORT", "70000", "TCP port"),
        ("REFINERY_GIT_PLATFORM", "bitbucket", "one of github, gitlab"),
    ],
)
def test_a_bad_value_fails_naming_the_variable_and_the_value(name, bad, expected):
    with pytest.raises(SettingError, match=rf"^{name}={re.escape(repr(bad))}: .*{expected}"):
        SETTINGS[name].get({name: bad})


def test_values_parse_to_their_types_and_unset_or_empty_is_the_default(tmp_path):
    environ = {
        "REFINERY_DATA_DIR": str(tmp_path / "lake-root"),
        "REFINERY_DRIFT_KEY_FEATURES": " spend_7d, ,plan ",
        "REFINERY_DUCKDB_THREADS": "3",
        "REFINERY_LANDING_SETTLE_SECONDS": "2.5",
        "REFINERY_TRAINING_WINDOW_DAYS": "",
    }
    assert settings.DATA_DIR.get(environ) == tmp_path / "lake-root"
    assert settings.DRIFT_KEY_FEATURES.get(environ) == ("spend_7d", "plan")
    assert settings.DUCKDB_THREADS.get(environ) == 3
    assert settings.LANDING_SETTLE_SECONDS.get(environ) == 2.5
    assert settings.TRAINING_WINDOW_DAYS.get(environ) == 28  # empty: the default
    assert settings.DUCKDB_THREADS.get({}) == (os.cpu_count() or 1)
    assert settings.DATA_DIR.get({}) == Path("./data").resolve()
    assert settings.size_gb("8GiB") == pytest.approx(8 * 2**30 / 1e9)
    assert set(settings.check_all({})) == set(SETTINGS)


def test_the_resources_and_consumers_take_the_settings_when_used(monkeypatch, tmp_path):
    from refinery.assets.gold.dbt_project import memory_limit_gb, targets_kept
    from refinery.online.resource import OnlineStoreResource
    from refinery.resources import LakeResource, QualityPolicy
    from refinery.sensors import sensor_interval

    lake, store = LakeResource(), OnlineStoreResource()  # built before the variables are set
    monkeypatch.setenv("REFINERY_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("REFINERY_ONLINE_STORE", "redis://127.0.0.1:6390/0")
    monkeypatch.setenv("REFINERY_MAX_QUARANTINE_RATE", "0.2")
    monkeypatch.setenv("REFINERY_DBT_TARGETS_KEPT", "4")
    monkeypatch.setenv("REFINERY_DUCKDB_MEMORY_LIMIT", "512MB")
    assert lake.paths.root == tmp_path
    assert store.store_url() == "redis://127.0.0.1:6390/0"
    assert QualityPolicy().max_quarantine_rate == 0.2
    assert QualityPolicy(max_quarantine_rate=0.01).max_quarantine_rate == 0.01  # code wins
    assert targets_kept() == 4 and memory_limit_gb() == pytest.approx(0.512)
    monkeypatch.setenv("REFINERY_MAX_QUARANTINE_RATE", "lots")
    with pytest.raises(ValueError, match="REFINERY_MAX_QUARANTINE_RATE='lots'"):
        QualityPolicy()
    monkeypatch.setenv("REFINERY_SENSOR_INTERVAL_SECONDS", "-5")
    with pytest.raises(ValueError, match="REFINERY_SENSOR_INTERVAL_SECONDS='-5': must be >= 1"):
        sensor_interval()


SPY = """
import json, sys
import refinery.settings as s
reads = []
raw = s.Setting.raw
s.Setting.raw = lambda self, environ=None: reads.append(self.env) or raw(self, environ)
import refinery.assets.gold.dbt_project, refinery.online.server, refinery.online.resource
import refinery.resources, refinery.assets.gold.plan, refinery.assets.ml.drift.report
plain = sorted(set(reads))
import refinery.definitions
print(json.dumps({"plain": plain, "load": sorted(set(reads))}))
"""


def test_only_the_documented_settings_are_read_when_the_definitions_are_built(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("REFINERY_")}
    env["REFINERY_DATA_DIR"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", SPY], env=env, capture_output=True, text=True, check=True
    ).stdout
    reads = json.loads(out.strip().splitlines()[-1])
    assert reads["plain"] == []  # importing these modules reads no setting
    # without REFINERY_GIT_URL, its branch and platform are not looked at
    expected = settings.READ_AT_LOAD - {"REFINERY_GIT_BRANCH", "REFINERY_GIT_PLATFORM"}
    assert set(reads["load"]) == expected
