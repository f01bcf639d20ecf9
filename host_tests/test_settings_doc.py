# cpython-only: a host tool (tokenize, ast, difflib); the board never reads its docs
"""tools/settings_doc.py: the settings tables of README.md and docs/setup.md are the ones
lib/config.py's TABLE gives (the test that fails when a doc and the table disagree)."""

import shutil
from pathlib import Path

import support
from tools import settings_doc

ROOT = Path(__file__).resolve().parent.parent


def test_docs_tables_match_the_table():
    diff = settings_doc.check()
    assert diff == "", "run `make settings-doc`:\n" + diff


def test_every_key_is_documented_once_in_both_docs():
    entries = settings_doc.read_table()
    keys = [e.key for e in entries]
    assert len(keys) == len(set(keys)) and all(e.doc for e in entries)
    for rel in settings_doc.DOCS:
        text = (ROOT / rel).read_text()
        for e in entries:
            assert text.count("| `%s` |" % e.key) == 1, (rel, e.key)
    ap = [e for e in entries if e.key == "ap_password"][0]
    assert ap.secret and ap.default == "weather-setup" and (ap.low, ap.high) == (8, 63)
    assert ap.doc == "fallback AP WPA2 passphrase: the AP is never open"  # two lines


def _copy(name):
    root = Path(support.tmpdir(name))
    for rel in [settings_doc.SOURCE, settings_doc.RULES] + list(settings_doc.DOCS):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, root / rel)
    return root


def test_a_changed_table_or_doc_fails_the_check():
    root = _copy("settings_doc")
    assert settings_doc.check(root) == ""
    cfg = root / settings_doc.SOURCE
    src = cfg.read_text()
    cfg.write_text(src.replace('"batch_max": (50, 1, 1000)', '"batch_max": (60, 1, 1000)'))
    diff = settings_doc.check(root)
    assert "| `batch_max` | `60` |" in diff and "README.md" in diff and "setup.md" in diff
    cfg.write_text(src.replace("# NTP server host name", "# NTP server"))
    assert "| NTP server |" in settings_doc.check(root)
    cfg.write_text(src)
    doc = root / "docs" / "setup.md"
    doc.write_text(doc.read_text().replace("| 1..1000 |", "| 1..100 |"))
    assert "1..100 |" in settings_doc.check(root)
