"""The review page: pure rendering (escaping, relative media links, summary), and the page
a real run writes, loaded from disk in a headless Chromium."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from hifly_batch.core.graph import Item, ItemKind
from hifly_batch.core.lifecycle import Status
from hifly_batch.reports import review_page as review
from hifly_batch.runner.state import Record
from hifly_batch.sandbox import Sandbox
from hifly_batch.sandbox.media_maker import make_mp4
from tests.campaigns import cli

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="no browser: /usr/bin/chromium is absent (apt-get install -y chromium; .ci/run does)",
)


# --- the page, parsed ----------------------------------------------------------


@dataclass
class Card:
    item: str
    status: str
    text: list[str] = field(default_factory=list)
    media: list[dict[str, str]] = field(default_factory=list)


class PageParser(HTMLParser):
    """Cards (``<article data-item>``) with their text and players; summary counts."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, Card] = {}
        self.counts: dict[str, int] = {}
        self._card: Card | None = None
        self._count: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "article":
            self._card = Card(values["data-item"], values["data-status"])
            self.cards[self._card.item] = self._card
        elif tag in ("video", "audio") and self._card is not None:
            self._card.media.append({"tag": tag, **values})
        elif tag == "li" and "count" in values.get("class", ""):
            self._count = values["data-status"]

    def handle_endtag(self, tag: str) -> None:
        if tag == "article":
            self._card = None

    def handle_data(self, data: str) -> None:
        if self._card is not None:
            self._card.text.append(data)
        if self._count is not None and data.strip().isdigit():
            self.counts[self._count] = int(data)
            self._count = None


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    return parser


# --- pure rendering --------------------------------------------------------------


def make_item(item_id: str, kind: ItemKind, text: str | None = None, **request: str) -> Item:
    section, _, rest = item_id.partition(".")
    return Item(
        id=item_id,
        section=section,
        name=rest.split("[")[0],
        kind=kind,
        request=request,
        fingerprint="f" * 64,
        text=text,
    )


def make_record(item_id: str, kind: ItemKind, status: Status, **values: object) -> Record:
    return Record(
        item=item_id, section=item_id.split(".")[0], kind=kind.value, status=status, **values
    )  # type: ignore[arg-type]


HOSTILE = "<script>alert('x')</script> & \"quotes\""


def sample() -> tuple[list[Record], dict[str, Item]]:
    items = [
        make_item("avatars.founder", ItemKind.AVATAR_BY_VIDEO, title="创始人"),
        make_item("videos.welcome[c 1#?]", ItemKind.VIDEO_BY_TTS, text=f"您好 {HOSTILE}"),
        make_item("videos.broken", ItemKind.VIDEO_BY_TTS, text="失败"),
        make_item("audios.greeting", ItemKind.AUDIO_BY_TTS, text="大家好"),
        make_item("videos.later", ItemKind.VIDEO_BY_AUDIO),
    ]
    records = [
        make_record("avatars.founder", ItemKind.AVATAR_BY_VIDEO, Status.DONE, resource_id="av_1"),
        make_record(
            "videos.welcome[c 1#?]",
            ItemKind.VIDEO_BY_TTS,
            Status.DONE,
            key="c 1#?",
            output="welcome/c 1#?.mp4",
            duration_s=65.0,
            started_at=1000.0,
            finished_at=1010.0,
        ),
        make_record(
            "videos.broken",
            ItemKind.VIDEO_BY_TTS,
            Status.FAILED,
            error_code=14,
            error_message=f"找不到资源 {HOSTILE}",
        ),
        make_record(
            "audios.greeting",
            ItemKind.AUDIO_BY_TTS,
            Status.DONE,
            output="audios/greeting.wav",
            duration_s=4.0,
        ),
        make_record("videos.later", ItemKind.VIDEO_BY_AUDIO, Status.BLOCKED),
    ]
    return records, {i.id: i for i in items}


def test_every_item_gets_a_card_with_its_status() -> None:
    records, items = sample()
    page = parse(review.render(records, items, title="t"))
    assert {i: c.status for i, c in page.cards.items()} == {
        "avatars.founder": "done",
        "videos.welcome[c 1#?]": "done",
        "videos.broken": "failed",
        "audios.greeting": "done",
        "videos.later": "blocked",
    }


def test_summary_counts_each_status_and_the_total() -> None:
    records, items = sample()
    page = review.render(records, items, title="t")
    assert parse(page).counts == {"done": 3, "failed": 1, "blocked": 1, "total": 5}
    assert "1 min 9 s" in page  # 65 s + 4 s of media
    assert "10 s" in page  # from the first start to the last finish


def test_players_for_downloaded_works_only_with_encoded_relative_links() -> None:
    records, items = sample()
    cards = parse(review.render(records, items, title="t")).cards
    assert cards["videos.welcome[c 1#?]"].media == [
        {"tag": "video", "controls": "", "preload": "metadata", "src": "welcome/c%201%23%3F.mp4"}
    ]
    assert cards["audios.greeting"].media[0]["tag"] == "audio"
    assert cards["audios.greeting"].media[0]["src"] == "audios/greeting.wav"
    assert not cards["videos.broken"].media and not cards["avatars.founder"].media


def test_script_error_and_key_are_shown_and_escaped() -> None:
    records, items = sample()
    html = review.render(records, items, title=HOSTILE)
    assert "<script>" not in html and "&lt;script&gt;" in html
    cards = parse(html).cards
    assert HOSTILE in "".join(cards["videos.welcome[c 1#?]"].text)
    assert "c 1#?" in "".join(cards["videos.welcome[c 1#?]"].text)
    broken = "".join(cards["videos.broken"].text)
    assert "[14] 找不到资源" in broken and HOSTILE in broken and "失败" in broken


def test_page_needs_nothing_from_the_network() -> None:
    records, items = sample()
    html = review.render(records, items, title="t")
    assert "http://" not in html and "https://" not in html and "<script" not in html


def test_write_links_media_from_wherever_the_page_is(tmp_path: Path) -> None:
    records, items = sample()
    output_dir = tmp_path / "out" / "c"
    (output_dir / "welcome").mkdir(parents=True)
    (output_dir / "welcome" / "c 1#?.mp4").write_bytes(b"x")
    for page in (output_dir / "report.html", tmp_path / "elsewhere" / "r.html"):
        review.write(records, items, page, output_dir=output_dir, title="c")
        src = parse(page.read_text("utf-8")).cards["videos.welcome[c 1#?]"].media[0]["src"]
        assert not src.startswith("/")
        assert (page.parent / unquote(src)).resolve() == output_dir / "welcome" / "c 1#?.mp4"


def test_review_path_is_beside_the_csv() -> None:
    assert review.review_path(Path("out/c/report.csv")) == Path("out/c/report.html")


@pytest.mark.parametrize(
    ("seconds", "shown"), [(0, "0 s"), (7.4, "7 s"), (125, "2 min 5 s"), (3720, "1 h 2 min")]
)
def test_format_seconds(seconds: float, shown: str) -> None:
    assert review.format_seconds(seconds) == shown


# --- a real run's page in a real browser ---------------------------------------

CAMPAIGN = """\
version: 1
name: review
settings: {poll_interval: 0.05s, poll_max: 0.5s, max_attempts: 1}
assets:
  clip: {file: clip.mp4}
data:
  customers:
    rows:
      - {id: "c 1#a", name: 张伟}
      - {id: c2, name: Alice}
    key: "{{ row.id }}"
avatars:
  founder: {video: clip}
  ghost: {id: av_does_not_exist}
voices:
  announcer: {public: 公共声音1}
videos:
  welcome:
    for_each: customers
    avatar: founder
    voice: announcer
    text: "{{ row.name }}您好，欢迎您。"
    output: "welcome/{{ key }}.mp4"
  lost: {avatar: ghost, voice: announcer, text: 这个视频的数字人不存在。}
audios:
  greeting: {voice: announcer, text: 大家好，欢迎观看。}
"""

# Added to a copy of the page by the test only: it records whether each player loaded.
PROBE = """<script>
document.querySelectorAll('video,audio').forEach(m => {
  m.addEventListener('loadedmetadata', () => m.setAttribute('data-probe', 'loaded ' + m.duration));
  m.addEventListener('error', () => m.setAttribute('data-probe', 'error'));
  m.load();
});
</script>"""


def chromium(page: Path, profile: Path, *args: str) -> str:
    # Chromium puts a Unix socket in TMPDIR, whose path must stay short (108 bytes).
    proc = subprocess.run(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TMPDIR": "/tmp"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture
def run_page(sandbox: Sandbox, tmp_path: Path) -> Path:
    """report.html of a run with two videos, an audio and one failed video."""
    (tmp_path / "review.yaml").write_text(CAMPAIGN, encoding="utf-8")
    (tmp_path / "clip.mp4").write_bytes(make_mp4(3.0, "clip"))
    result = cli("run", "--no-progress", str(tmp_path / "review.yaml"), sandbox=sandbox)
    assert result.code == 1, result.stdout + result.stderr  # videos.lost fails
    page = tmp_path / "out" / "review.sandbox" / "report.html"  # a rehearsal's
    assert f"review: {page}" in result.stdout
    return page


@needs_chromium
def test_browser_shows_players_that_load_and_the_failed_items_error(
    run_page: Path, tmp_path: Path
) -> None:
    probe = run_page.with_name("probe.html")  # same folder, so the same relative links
    probe.write_text(run_page.read_text("utf-8").replace("</body>", PROBE + "</body>"), "utf-8")
    dom = chromium(probe, tmp_path / "profile", "--virtual-time-budget=5000", "--dump-dom")
    page = parse(dom)
    players = [m for card in page.cards.values() for m in card.media]
    assert sorted(m["tag"] for m in players) == ["audio", "video", "video"]
    for media in players:
        assert media.get("data-probe", "").startswith("loaded "), media
        assert float(media["data-probe"].split()[1]) > 0
    lost = page.cards["videos.lost"]
    assert lost.status == "failed" and not lost.media
    assert "error 14" in "".join(lost.text) and "找不到资源" in "".join(lost.text)
    assert page.counts["failed"] == 1 and page.counts["total"] == len(page.cards)
    assert "张伟您好，欢迎您。" in "".join(page.cards["videos.welcome[c 1#a]"].text)


@needs_chromium
def test_browser_renders_the_page_as_an_image(run_page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "review.png"
    chromium(
        run_page,
        tmp_path / "profile",
        "--hide-scrollbars",
        "--window-size=1280,1600",
        "--virtual-time-budget=3000",
        f"--screenshot={shot}",
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("code", "message", "shown"),
    [
        (14, "找不到资源", "[14] 找不到资源"),
        (
            14,
            "video/create_by_tts: error 14 resource not found",
            "video/create_by_tts: error 14 resource not found",
        ),
        (None, "timed out after 2h", "timed out after 2h"),
        (1002, None, "[1002]"),
    ],
)
def test_error_text_names_the_code_once(code: int | None, message: str | None, shown: str) -> None:
    record = make_record(
        "videos.v", ItemKind.VIDEO_BY_TTS, Status.FAILED, error_code=code, error_message=message
    )
    assert review.error_text(record) == shown


def test_report_command_writes_the_page_beside_its_csv(run_page: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "r.csv"
    result = cli("report", str(tmp_path / "review.yaml"), "-o", str(target))
    assert result.code == 0, result.stderr
    assert result.stdout.split() == [str(target), str(target.with_suffix(".html"))]
    page = parse(target.with_suffix(".html").read_text("utf-8"))
    sources = [m["src"] for card in page.cards.values() for m in card.media]
    assert len(sources) == 3
    for src in sources:
        assert src.startswith("../out/review.sandbox/") and (target.parent / unquote(src)).is_file()
