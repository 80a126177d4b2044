#!/usr/bin/env python3
"""The result column of a criterion bench's output: each benchmark's median time, and where
a group (the part of the id before '/') has a baseline member (`lettre`, or `compose`), each
other member's time as a ratio of it. Change reports against a saved baseline are skipped.

usage: criterion_summary.py LOG"""
import re
import sys

UNITS = {"ps": 1e-3, "ns": 1.0, "µs": 1e3, "us": 1e3, "ms": 1e6, "s": 1e9}
BASELINES = ("lettre", "compose")


def medians(lines):
    out, prev = [], ""
    for line in lines:
        fields = line.split()
        if "time:" in fields:
            i = fields.index("time:")
            values = fields[i + 1:]
            # "change: time: [-24% -20% -16%]" lines compare with an earlier run: skipped.
            if len(values) >= 4 and "%" not in values[0]:
                ident = fields[0] if i > 0 else prev.strip()
                out.append((ident, float(values[2]), values[3]))
        prev = line
    return out


def main():
    rows = medians(open(sys.argv[1], encoding="utf-8", errors="replace"))
    times = {ident: value * UNITS.get(unit, 1.0) for ident, value, unit in rows}
    parts = []
    for ident, value, unit in rows:
        text = f"{ident}: {value:g} {unit}"
        group, _, member = ident.rpartition("/")
        base = next((f"{group}/{b}" for b in BASELINES if f"{group}/{b}" in times), None)
        if group and base and base != ident and times[base] > 0:
            text += f" ({times[ident] / times[base]:.2f}x {base.rpartition('/')[2]})"
        parts.append(text)
    print("; ".join(parts))


main()
