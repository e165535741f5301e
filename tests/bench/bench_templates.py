"""Hostile templates through the real ``validate``: peak RSS and seconds of each, from the
kernel's account of the process (``wait4``, what ``/usr/bin/time -v`` shows), beside a
plain manifest's in the same run (the baseline: Python and hifly-batch loaded, its rows
rendered).

Each hostile template is one the rendering bounds (``hifly_batch/manifest/bounds.py``)
refuse; SPEC §3 wants each under 500 MB and a few seconds. Usage:

    python tests/bench/bench_templates.py [--only NAME]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.manifest_helpers import BASE, campaign

TEMPLATES = {
    "plain (baseline)": "{{ row.name }}您好。\n",
    "replace bomb": "{{ ('a'*100000)|replace('a','a'*100000) }}",
    "center(1e9)": "{{ 'x'|center(1000000000) }}",
    "indent(4e9)": "{{ 'x\ny'|indent(4000000000) }}",
    "nested range loops": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
    ),
    "% width": "{{ '%1000000000d' % 1 }}",
    "str.format width": "{{ '{:>1000000000}'.format(1) }}",
    "format filter width": "{{ '%1000000000s'|format('x') }}",
    "join of a range": "{{ range(100000)|join('x'*1000) }}",
    "ljust(1e9)": "{{ 'x'.ljust(1000000000) }}",
    "macro recursion": "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "~ doubling": '{% set a = "x" * 1000000 %}' + "{% set a = a ~ a %}" * 9 + "{{ a }}",
    "namespace doubling": (
        '{% set ns = namespace(s="x") %}{% for i in range(30) %}'
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}"
    ),
    "+ doubling": '{% set a = "x" * 1000000 %}{% set a = a + a %}{{ a }}',
    "str.format width argument": '{{ "{:>{}}".format("x", 900000000) }}',
    "nested list product": "{{ ([[1]*1000000]*1000000) | string }}",
    "lipsum(200000)": "{{ lipsum(200000, false) }}",
    "wordwrap(1) of 1 MB": '{{ ("x" * 1000000) | wordwrap(1) }}',
    "tower of powers": "{% set x = (((9**64)**64)**64)**64 %}{{ x ** 64 > 1 }}",
    "exponential macros": (
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(40) }}"
    ),
    "captured block of 3 GB": (
        '{% set big %}{% for i in range(3000) %}{{ "x" * 999999 }}{% endfor %}{% endset %}hi'
    ),
    "values each under 1 MB": (
        '{{ range(3000) | map("string") | map("center", 999990) | list | length }}'
    ),
    "% doubling": (
        '{% set ns = namespace(s="x") %}{% for i in range(32) %}'
        '{% set ns.s = "%s%s" % (ns.s, ns.s) %}{% endfor %}hi'
    ),
    "format doubling": (
        '{% set ns = namespace(s="x") %}{% for i in range(32) %}'
        '{% set ns.s = "%s%s"|format(ns.s, ns.s) %}{% endfor %}hi'
    ),
    "str.format doubling": (
        '{% set ns = namespace(s="x") %}{% for i in range(32) %}'
        '{% set ns.s = "{0}{0}".format(ns.s) %}{% endfor %}hi'
    ),
    "str.format 6-digit widths": '{% set b = ("{0:999999}" * 2000).format("x") %}hi',
    "translate to 1 MB a character": (
        '{% set a = "x" * 2000 %}{% set b = a.translate({120: "y" * 999999}) %}hi'
    ),
    "str.join of a text": '{% set a = "x" * 100000 %}{% set b = a.join(a) %}hi',
    "list.extend doubling": (
        "{% set l = [1] %}{% for i in range(40) %}{{ l.extend(l) or '' }}{% endfor %}"
    ),
    "sum of 400,000 lists": "{% set l = [[1]] * 400000 %}{% set s = l | sum(start=[]) %}hi",
    "10-million-element list | pprint": (
        "{% set a = range(100000)|list %}{% set b = [a,a,a,a,a,a,a,a,a,a] %}"
        "{% set c = [b,b,b,b,b,b,b,b,b,b] %}{{ c | pprint | length }}"
    ),
    "10-million-element list {{ }}": (
        "{% set a = range(100000)|list %}{% set b = [a,a,a,a,a,a,a,a,a,a] %}"
        "{% set c = [b,b,b,b,b,b,b,b,b,b] %}{{ c }}"
    ),
}
# Templates just inside each render's bounds, over many rows: their renders share a time
# allowance, so the whole campaign is refused within seconds, not one second a row.
ROWS = 2_000
MANY_ROWS = {
    f"99,000-turn loop x {ROWS:,} rows": ("{% for i in range(99000) %}{% endfor %}{{ row.name }}"),
    f"0.1 s of macros x {ROWS:,} rows": (
        "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}"
        "{{ f(13) }}{{ row.name }}"
    ),
    # One slow filter a render (0.05 s), no loop: each render ends before it looks at
    # the clock again, so the shared allowance is enforced at the start and end.
    f"urlize of 90,000 characters x {ROWS:,} rows": (
        '{{ ((row.name + " ") * 30000) | urlize | length }}'
    ),
}
RSS_LIMIT_MB = 500
SECONDS_LIMIT = 5.0


def measure(template: str, folder: Path, rows: int = 3) -> tuple[int, float, float]:
    """(exit code, peak RSS in MB, wall seconds) of ``validate`` on a campaign whose
    script is ``template``: the kernel's account of the child, as ``/usr/bin/time -v``
    prints it."""
    csv = "customer_id,name,city\n" + "".join(f"c{i},n{i},x\n" for i in range(rows))
    path = campaign(folder, BASE, template=template, csv=csv)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hifly_batch", "validate", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="measure this template (and the baseline) only")
    args = parser.parse_args(argv)
    hostile = {**TEMPLATES, **MANY_ROWS}
    names = [n for n in hostile if args.only in (None, n) or n == "plain (baseline)"]
    print(f"{'template':34} {'exit':>4} {'peak RSS':>10} {'seconds':>8}  x baseline RSS")
    base_rss, worst_rss, worst_s, refused = 0.0, 0.0, 0.0, True
    for name in names:
        with tempfile.TemporaryDirectory() as folder:
            rows = ROWS if name in MANY_ROWS else 3
            code, rss, seconds = measure(hostile[name], Path(folder), rows)
        if name == "plain (baseline)":
            base_rss = rss
        else:
            worst_rss, worst_s = max(worst_rss, rss), max(worst_s, seconds)
            refused = refused and code == 2
        print(f"{name:34} {code:>4} {rss:>7.1f} MB {seconds:>7.2f}s  {rss / base_rss:.2f}")
    held = refused and worst_rss < RSS_LIMIT_MB and worst_s < SECONDS_LIMIT
    print(
        f"verdict: {'holds' if held else 'FAILS'}: every hostile template refused (exit 2); "
        f"worst {worst_rss:.1f} MB ({worst_rss / base_rss:.2f} x the {base_rss:.1f} MB "
        f"baseline; limit {RSS_LIMIT_MB} MB), {worst_s:.2f} s (limit {SECONDS_LIMIT:g} s)"
    )
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
