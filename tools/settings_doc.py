"""The settings table on the host: its docs, and lib/settings.py under CPython.

``lib/config.py`` ``TABLE`` holds every setting once: default, checks and, as the entry's
comment, its one-line doc (format: that module's docstring). The docs are comments so that
they cost a board nothing (``mpy-cross`` drops them); this module reads them with
``tokenize``/``ast`` and writes the "Configuration keys" tables of README.md (key, default,
meaning) and docs/setup.md (key, default, allowed values, meaning) between their marker
comments:

    python -m tools.settings_doc          # rewrite both tables (make settings-doc)
    python -m tools.settings_doc --check  # exit 1, with a diff, when a table differs

``host_tests/test_settings_doc.py`` runs the check, so a table that disagrees with the
settings table fails ``make test``.

``board_settings()`` loads lib/settings.py (the board's own checks) under CPython, for
``make deploy`` and the simulator.
"""

import argparse
import ast
import difflib
import importlib.util
import io
import json
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path("lib") / "config.py"  # the table
RULES = Path("lib") / "settings.py"  # the rules between two keys
DOCS = (Path("README.md"), Path("docs") / "setup.md")
BEGIN = "<!-- settings table: `make settings-doc` writes it from lib/config.py -->"
END = "<!-- end of the settings table -->"


class Entry:
    """One key of the table: ``default``, ``low``/``high`` (None for a bare value),
    ``flags`` (words), ``prefixes``, ``choices``, ``forbidden`` (chars), ``doc``."""

    def __init__(self, key, value, doc):
        self.key, self.doc = key, doc
        self.prefixes, self.choices, self.forbidden = (), (), ""
        if type(value) is not tuple:
            self.default, self.low, self.high, self.flags = value, None, None, []
            return
        self.default, self.low, self.high = value[:3]
        self.flags = value[3].split() if len(value) > 3 else []
        for extra in value[4:]:
            if isinstance(extra, str):
                self.forbidden = extra
            elif "one-of" in self.flags:
                self.choices = extra
            else:
                self.prefixes = extra

    @property
    def secret(self):
        return "secret" in self.flags


def read_table(root=ROOT):
    """The entries of ``root``'s settings table, in file order."""
    src = (Path(root) / SOURCE).read_text()
    comments = {}  # line -> text of its comment
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string[1:].strip()
    table = None
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None)
                                             for t in node.targets] == ["TABLE"]:
            table = node.value
    if not isinstance(table, ast.Dict):
        raise SystemExit("%s: no TABLE = {...}" % SOURCE)
    starts = [k.lineno for k in table.keys if k is not None] + [table.end_lineno or 0]
    entries = []
    for i, (k, v) in enumerate(zip(table.keys, table.values)):
        if not isinstance(k, ast.Constant):
            raise SystemExit("%s:%d: a key must be a string literal" % (SOURCE, v.lineno))
        doc = []
        for line in range(starts[i], starts[i + 1]):
            text = comments.get(line)
            if text is None:
                continue
            if text.startswith("--"):  # a section
                break
            doc.append(text)
        if not doc:
            raise SystemExit("%s:%d: %s has no doc comment" % (SOURCE, k.lineno, k.value))
        entries.append(Entry(k.value, ast.literal_eval(v), " ".join(doc)))
    return entries


def _pair_rules(root=ROOT):
    """settings.py's rules between two keys: {name: ((a, b), ...)} (literals, read with
    ``ast`` so that the docs need no import of board code)."""
    rules = {}
    for node in ast.parse((Path(root) / RULES).read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            name = getattr(node.targets[0], "id", "")
            if name in ("_DIFFERENT", "_ORDERED", "_CLEAR_TEXT"):
                rules[name] = ast.literal_eval(node.value)
    return rules


def _code(text):
    return "`%s`" % text.replace("|", "\\|")


def _keys(keys):
    return ", ".join(_code(k) for k in keys)


def allowed(e, rules):
    """The "allowed" cell of ``e``: type, range, extra checks, rules with other keys."""
    if isinstance(e.default, bool):
        out = ["true/false"]
    elif isinstance(e.default, int):
        out = ["%d..%d" % (e.low, e.high)]
        if "fraction" in e.flags:
            out[0] += " (fractions allowed)"
        if "zero-ok" in e.flags:
            out[0] += ", or 0"
    elif e.choices:
        out = [", ".join(_code(json.dumps(c)) if c == "" else _code(c) for c in e.choices)]
    else:
        size = "%d..%d bytes" % (e.low, e.high)
        if e.prefixes:
            size = " or ".join(_code(p + "...") for p in e.prefixes) + " (%s)" % size
        out = [('`""` or ' if "empty-ok" in e.flags else "") + size]
        if e.forbidden:
            chars = [_code(c) for c in e.forbidden if c != " "]
            out.append("no " + ", ".join(chars + (["spaces"] if " " in e.forbidden else [])))
    differ = [b if a == e.key else a for a, b in rules.get("_DIFFERENT", ()) if e.key in (a, b)]
    if differ:
        out.append("not the same as " + _keys(differ))
    for a, b in rules.get("_ORDERED", ()):
        if e.key == a:
            out.append("at most " + _code(b))
        elif e.key == b:
            out.append("at least " + _code(a))
    for host, insecure in rules.get("_CLEAR_TEXT", ()):
        if e.key == host:
            plain = [p for p in e.prefixes if p in ("http://", "mqtt://")]
            out.append("%s only with %s true" % (_keys(plain), _code(insecure)))
    return "; ".join(out)


def _row(cells):
    return "| " + " | ".join(c.replace("\n", " ") for c in cells) + " |"


def _meaning(e):
    return e.doc + (" (secret)" if e.secret else "")


def render(doc, entries, rules):
    """The table (lines) for README.md (``doc`` index 0) or docs/setup.md (1)."""
    head = ["key", "default", "meaning"] if doc == 0 else ["key", "default", "allowed",
                                                           "meaning"]
    lines = [_row(head), _row(["---"] * len(head))]
    for e in entries:
        default = _code(json.dumps(e.default))
        cells = [_code(e.key), default, _meaning(e)]
        if doc == 1:
            cells.insert(2, allowed(e, rules))
        lines.append(_row(cells))
    return lines


def rewrite(text, table, name):
    """``text`` with the lines between the markers replaced by ``table``."""
    lines = text.split("\n")
    try:
        a, b = lines.index(BEGIN), lines.index(END)
    except ValueError:
        raise SystemExit("%s: no settings table markers (%s ... %s)" % (name, BEGIN, END))
    return "\n".join(lines[:a + 1] + table + lines[b:])


def outputs(root=ROOT):
    """{path: (current text, text with the generated table)} for both docs."""
    entries, rules = read_table(root), _pair_rules(root)
    out = {}
    for i, rel in enumerate(DOCS):
        path = Path(root) / rel
        text = path.read_text()
        out[path] = (text, rewrite(text, render(i, entries, rules), rel))
    return out


def check(root=ROOT):
    """A unified diff of each docs table that differs from the settings table ("" when
    none does)."""
    diff = []
    for path, (old, new) in outputs(root).items():
        rel = str(path.relative_to(root))
        diff += difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                     rel, rel + " (from lib/config.py)")
    return "".join(diff)


def board_settings(root=ROOT):
    """``root``'s lib/settings.py loaded under CPython (module ``board_settings``): the
    board's own table and checks, for ``make deploy`` and the simulator. It imports
    ``micropython`` (a fake here), lib/config.py and lib/fsutil.py: their folders go on
    ``sys.path``."""
    root = Path(root)
    for extra in (ROOT / "host_tests" / "fakes", root / "lib"):
        if str(extra) not in sys.path:
            sys.path.append(str(extra))
    spec = importlib.util.spec_from_file_location("board_settings", root / "lib" / "settings.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tools.settings_doc", description=__doc__.split(
        "\n")[0])
    p.add_argument("--check", action="store_true",
                   help="only compare: exit 1 with a diff when a table differs")
    args = p.parse_args(argv)
    if args.check:
        diff = check()
        if diff:
            sys.stdout.write(diff)
            print("settings_doc: the tables differ from lib/config.py: run "
                  "`make settings-doc`", file=sys.stderr)
            return 1
        return 0
    for path, (old, new) in outputs().items():
        if new != old:
            path.write_text(new)
            print("settings_doc: %s rewritten" % path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main())
