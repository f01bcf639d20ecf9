"""Records as CSV lines: the columns and lines ``console.dump`` and the SD archive write.

Kept out of ``record`` so the firmware's loop does not load it: only the console (when a
person imports it) and the archive (with ``sd_mount``) do.
"""

from record import FLAG_MASK, LAYOUTS, layout_of, timestamp_of
from utc import iso


def csv_columns():
    """CSV columns: seq, utc, the raw time_ms/boot/flags, layout, then the union of every
    registered layout's values (a record leaves other layouts' columns empty)."""
    cols = ["seq", "utc", "time_ms", "boot", "flags", "layout"]
    for v in sorted(LAYOUTS):
        for name in LAYOUTS[v].values:
            if name not in cols:
                cols.append(name)
    return cols


def csv_line(seqn, rec, cols, boot_epochs=None):
    """One CSV line (no newline) of decoded record ``rec`` for the columns ``cols``; a
    value whose name is not in ``cols`` is left out, a column the layout lacks is empty,
    a null (failed reading) is empty."""
    lay = layout_of(rec)
    ts = timestamp_of(rec, boot_epochs)
    out = ["%d" % seqn, iso(ts) if ts is not None else "", "%d" % rec[0],
           "%d" % rec[-2], "%d" % (rec[-1] & FLAG_MASK), "%d" % lay.version]
    n = len(cols) - 6
    cells = [""] * n
    k = 0
    for name, text in lay.texts(rec):
        if k < n and cols[6 + k] == name:  # the usual case: the columns are this layout's
            i = k
        else:
            i = -1
            for c in range(n):
                if cols[6 + c] == name:
                    i = c
                    break
        k += 1
        if i >= 0 and text is not None:
            cells[i] = text
    out.extend(cells)
    return ",".join(out)
