"""Heap taken by importing modules (.mpy): run by bench/bench_code_heap.py under MicroPython.

Reads ``job.json`` from the current directory: ``pre`` (hardware fakes and stubs,
imported first and not counted) and ``mods`` (imported in order, counted; ``-name`` drops
module ``name`` again, as the firmware drops ``settings`` and ``config`` after boot);
prints one ``@@HEAP {json}`` line: the live heap after ``gc.collect()`` taken by each import
and in total (bytecode, constant tables, function and class objects, interned names).
"""

import gc
import json
import sys

with open("job.json") as f:
    job = json.load(f)
for name in job["pre"]:
    __import__(name)
gc.collect()
base = gc.mem_alloc()
each = []
for name in job["mods"]:
    gc.collect()
    a = gc.mem_alloc()
    if name[0] == "-":
        sys.modules.pop(name[1:])
    else:
        __import__(name)
    gc.collect()
    each.append((name, gc.mem_alloc() - a))
gc.collect()
print("@@HEAP " + json.dumps({"total": gc.mem_alloc() - base, "each": each}))
