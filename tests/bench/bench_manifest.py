"""Benchmark: validate + plan of a generated 10,000-row campaign.

Prints seconds, peak memory, and the ratio to a floor measured in the same
run: PyYAML loading the manifest, reading the CSV, and rendering the bare
templates with Jinja2 once per row (the least any implementation must do).
Target: ratio <= 2.0.

    python tests/bench/bench_manifest.py [ROWS]
"""

from __future__ import annotations

import csv
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import jinja2
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hifly_batch.core.graph import build_graph  # noqa: E402
from hifly_batch.core.planning import make_plan  # noqa: E402
from hifly_batch.manifest.loader import load_campaign  # noqa: E402

MANIFEST = """\
version: 1
name: bench
vars: {brand: 飞影}
assets:
  clip: {file: founder.mp4}
  sample: {file: voice.wav}
data:
  customers:
    csv: customers.csv
    key: "{{ row.customer_id }}"
avatars:
  founder: {video: clip, title: 创始人}
voices:
  founder_voice: {audio: sample, title: 创始人, rate: 1.1}
videos:
  welcome:
    for_each: customers
    when: "{{ row.opt_in == 'yes' }}"
    avatar: founder
    voice: founder_voice
    text_file: welcome.txt.j2
    title: "欢迎{{ row.name }}"
    output: "welcome/{{ key }}.mp4"
"""
TEMPLATE = (
    "{{ row.name }}您好，感谢您在{{ row.city }}选择{{ vars.brand }}。\n您的编号是{{ key }}。\n"
)
TEMPLATES = {
    "key": "{{ row.customer_id }}",
    "when": "{{ row.opt_in == 'yes' }}",
    "title": "欢迎{{ row.name }}",
    "output": "welcome/{{ key }}.mp4",
    "text": TEMPLATE,
}


def make_campaign(folder: Path, rows: int) -> Path:
    media = REPO / "examples" / "quickstart" / "media"
    shutil.copy(media / "founder.mp4", folder / "founder.mp4")
    shutil.copy(media / "voice.wav", folder / "voice.wav")
    (folder / "welcome.txt.j2").write_text(TEMPLATE, encoding="utf-8")
    with (folder / "customers.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "name", "city", "opt_in"])
        for i in range(rows):
            writer.writerow([f"c{i:05d}", f"客户{i}", "上海", "yes" if i % 10 else "no"])
    path = folder / "bench.yaml"
    path.write_text(MANIFEST, encoding="utf-8")
    return path


def floor(path: Path) -> None:
    """The least work: load the YAML, read the CSV, render each template per row."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    env = jinja2.Environment()
    compiled = {k: env.from_string(v) for k, v in TEMPLATES.items()}
    context = {"vars": data["vars"], "campaign": data["name"]}
    with (path.parent / "customers.csv").open(encoding="utf-8-sig", newline="") as handle:
        for index, row in enumerate(csv.DictReader(handle), start=1):
            row_context = {**context, "row": row, "index": index}
            row_context["key"] = compiled["key"].render(row_context)
            for name in ("when", "title", "output", "text"):
                compiled[name].render(row_context)


def ours(path: Path) -> int:
    graph = build_graph(load_campaign(path))
    return len(make_plan(graph, {}).steps)


def timed(func, *args) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        func(*args)
        best = min(best, time.perf_counter() - start)
    return best


def main(rows: int = 10_000) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = make_campaign(Path(folder), rows)
        floor_s = timed(floor, path)
        ours_s = timed(ours, path)
        tracemalloc.start()
        items = ours(path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    print(f"rows: {rows}, items planned: {items}")
    print(f"floor (yaml + csv + bare jinja2 renders): {floor_s:.3f} s")
    print(f"validate + plan: {ours_s:.3f} s")
    print(f"ratio to floor: {ours_s / floor_s:.2f} (target <= 2.0)")
    print(f"peak memory (tracemalloc): {peak / 1048576:.1f} MiB")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
