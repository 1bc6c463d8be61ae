"""The source-tag scanner (bench.tags): PAPER-GAP / DEVIATION notes in comments and docstrings."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from bench import tables, tags

TAG_GAP, TAG_DEV = "PAPER" + "-GAP", "DEVI" + "ATION"  # split so this file never reads as a note


def test_scan_finds_planted_notes(tmp_path):
    (tmp_path / "aae_core").mkdir()
    (tmp_path / "bench").mkdir()
    (tmp_path / "aae_core" / "model.py").write_text(
        "import torch\n\n\ndef encoder():\n"
        f"    x = 1  # {TAG_GAP}: planted model gap\n"
        "    # that continues here\n"
        "    # and here\n"
        "    return x\n")
    (tmp_path / "bench" / "grids.py").write_text(
        '"""Grids."""\n\n'
        f"# {TAG_DEV}: the labelled subset is drawn per seed (semi-supervised)\n"
        "TABLE2_PROFILES = {}\n\n\n"
        "def table3():\n"
        f'    """Clusters.\n\n    {TAG_GAP} (of others): cluster count\n    is unstated."""\n'
        "    return []\n"
        f"# {TAG_GAP}: a note about nothing in particular\n"
        "LAST = 1\n")
    (tmp_path / "bench" / "config.py").write_text(
        "class C:\n    epochs: int = 3\n"
        f'    """Passes over the data. {TAG_GAP}: unstated."""\n')
    notes = tags.scan_notes(tmp_path)
    field = [n for n in notes if n.path == "bench/config.py"][0]
    assert (field.line, field.context, field.text) == (3, "epochs", "(Passes over the data.) unstated.")
    notes.remove(field)
    by_line = {(n.path, n.line): n for n in notes}
    model = by_line[("aae_core/model.py", 5)]
    assert model.tag == TAG_GAP and model.context == "encoder"
    assert model.text == "planted model gap that continues here and here"
    dev = by_line[("bench/grids.py", 3)]
    assert dev.tag == TAG_DEV and dev.context == "TABLE2_PROFILES"
    doc = by_line[("bench/grids.py", 10)]
    assert doc.tag == f"{TAG_GAP} (of others)" and doc.text == "cluster count is unstated."
    assert doc.context == "table3"
    assert len(notes) == 4

    def where(key):
        return {n.where() for n in tables.notes_for(tables.TABLES[key], notes)}
    # A note bears on the tables it names (in its text or the name it sits under): the subset
    # note on Table 2 only, the cluster-count note on Table 3 only; one that names no table
    # (the model note, the last one) bears on every table.
    assert where("table1") == {"aae_core/model.py:5", "bench/grids.py:13"}
    assert where("table2") == {"aae_core/model.py:5", "bench/grids.py:3", "bench/grids.py:13"}
    assert where("table3") == {"aae_core/model.py:5", "bench/grids.py:10", "bench/grids.py:13"}
    assert where("dim_reduction") == {"aae_core/model.py:5", "bench/grids.py:13"}


def test_scan_of_the_real_tree_never_reports_the_scanner():
    notes = tags.scan_notes()
    assert notes, "the source tree has tagged notes"
    assert not any(n.path in ("bench/tags.py", "bench/tables.py") for n in notes)
    assert all(n.text for n in notes)


def test_docstring_lines_written_as_comments_read_as_comments(tmp_path):
    (tmp_path / "aae_core").mkdir()
    (tmp_path / "aae_core" / "priors.py").write_text(
        "class Roll:\n"
        '    """A roll.\n\n'
        f"    # {TAG_GAP}: its constants\n"
        "    # are unknown.\n"
        '    """\n\n'
        "    def sample(self):\n"
        f"        return 1  # {TAG_DEV}: trailing, in a method\n"
        f'MESSAGE = "{TAG_GAP}: a string that is no docstring"\n'
        f"# a comment that mentions {TAG_GAP}: in passing\n")
    notes = tags.scan_notes(tmp_path)
    assert [(n.line, n.tag, n.text, n.context) for n in notes] == [
        (4, TAG_GAP, "its constants are unknown.", "Roll"),
        (9, TAG_DEV, "trailing, in a method", "Roll"),
    ]


def test_a_tag_needs_its_colon():
    assert tags.find_tag(f"{TAG_GAP} field") is None
    assert tags.find_tag(f"X{TAG_GAP}: no") is None
    assert tags.find_tag(f"see {TAG_DEV} (ours) : the text ") == (4, f"{TAG_DEV} (ours)", "the text")


SNAPSHOT = Path(__file__).parent / "data" / "tag_notes_cbbf41c.json"


def test_same_notes_as_the_regex_scanner_it_replaced(tmp_path):
    # The tree of the commit before the rewrite, and what the old (regex) scanner found in it.
    snapshot = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    repo = Path(tags.REPO)
    try:
        tree = subprocess.run(["git", "-C", str(repo), "archive", snapshot["commit"], "aae_core",
                               "bench"], capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"commit {snapshot['commit'][:12]} is not in this checkout")
    with tarfile.open(fileobj=io.BytesIO(tree)) as archive:
        archive.extractall(tmp_path, filter="data")
    found = [[n.path, n.line, n.tag, n.text, n.context] for n in tags.scan_notes(tmp_path)]
    assert found == snapshot["notes"]
