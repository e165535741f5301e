"""The review page: pure rendering (escaping, relative media links, summary, dates, the
status filter, rows left out by ``when``), and the page a real run writes, loaded from
disk in a headless Chromium."""

from __future__ import annotations

import os
import re
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from hifly_batch.core.graph import Item, ItemKind
from hifly_batch.core.lifecycle import Status
from hifly_batch.manifest.diagnostics import Location
from hifly_batch.manifest.model import SkippedRow
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
    hidden: bool = False
    section: str = ""


class PageParser(HTMLParser):
    """Cards (``<article data-item>``) with their text and players, in page order; summary
    counts; the rows left out by ``when`` (``<li data-item>``), the filter's buttons, and
    what is hidden."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, Card] = {}
        self.counts: dict[str, int] = {}
        self.left_out: dict[str, bool] = {}  # item id -> hidden
        self.buttons: dict[str, str] = {}  # filter -> aria-pressed
        self.hidden_sections: set[str] = set()
        self.nav_hidden: bool | None = None
        self._card: Card | None = None
        self._count: str | None = None
        self._section = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "section":
            self._section = values["data-section"]
            if "hidden" in values:
                self.hidden_sections.add(self._section)
        elif tag == "nav":
            self.nav_hidden = "hidden" in values
        elif tag == "button":
            self.buttons[values["data-filter"]] = values["aria-pressed"]
        elif tag == "li" and "data-item" in values:
            self.left_out[values["data-item"]] = "hidden" in values
        if tag == "article":
            self._card = Card(values["data-item"], values["data-status"], hidden="hidden" in values)
            self._card.section = self._section
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
    assert "<script>alert" not in html and "&lt;script&gt;" in html
    cards = parse(html).cards
    assert HOSTILE in "".join(cards["videos.welcome[c 1#?]"].text)
    assert "c 1#?" in "".join(cards["videos.welcome[c 1#?]"].text)
    broken = "".join(cards["videos.broken"].text)
    assert "[14] 找不到资源" in broken and HOSTILE in broken and "失败" in broken


def test_page_needs_nothing_from_the_network() -> None:
    records, items = sample()
    html = review.render(records, items, title="t", skipped=LEFT_OUT)
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert html.count("<script") == 1 and "<script>" in html  # the filter's, inline


def test_failed_uncertain_and_blocked_cards_come_first_in_their_section() -> None:
    records, items = sample()
    records.append(make_record("videos.unsure", ItemKind.VIDEO_BY_TTS, Status.SUBMITTING))
    cards = parse(review.render(records, items, title="t")).cards.values()
    videos = [(c.item, c.status) for c in cards if c.section == "videos"]
    assert videos == [
        ("videos.broken", "failed"),
        ("videos.unsure", "uncertain"),
        ("videos.later", "blocked"),
        ("videos.welcome[c 1#?]", "done"),
    ]
    assert [c.section for c in cards] == ["videos"] * 4 + ["audios", "avatars"]


LEFT_OUT = (
    SkippedRow("videos", "welcome", "c004", Location("data/customers.csv", 5, 1)),
    SkippedRow("videos", "welcome", HOSTILE, Location("data/customers.csv", 6, 1)),
    SkippedRow("audios", "promo", None, None),
)


def test_rows_left_out_by_when_are_listed_apart_not_as_cards() -> None:
    records, items = sample()
    html = review.render(records, items, title="t", skipped=LEFT_OUT)
    page = parse(html)
    assert list(page.left_out) == [
        "videos.welcome[c004]",
        f"videos.welcome[{HOSTILE}]",
        "audios.promo",
    ]
    assert not set(page.left_out) & set(page.cards)
    assert "c004 (data/customers.csv:5) — videos.welcome: when was false" in html
    assert "audios.promo — when was false" in html
    assert HOSTILE not in html and html.count("<script") == 1
    assert "filtered out by when" not in review.render(records, items, title="t")


def test_filter_offers_each_status_present_and_shows_everything_without_scripts() -> None:
    records, items = sample()
    page = parse(review.render(records, items, title="t", skipped=LEFT_OUT))
    assert page.buttons == {
        "all": "true",
        "failed": "false",
        "blocked": "false",
        "done": "false",
        "when-false": "false",
    }
    # Hidden until the script shows it; nothing else is hidden in the page as written.
    assert page.nav_hidden is True
    assert not page.hidden_sections and not any(c.hidden for c in page.cards.values())
    assert not any(page.left_out.values())
    labels = re.findall(r"<button[^>]*>([^<]*)</button>", review.filter_control(records))
    assert labels == ["all (5)", "failed (1)", "blocked (1)", "done (3)"]


CHINA = timezone(timedelta(hours=8))


@pytest.mark.parametrize(
    ("started", "shown"),
    [
        (
            datetime(2025, 6, 1, 14, 0, 1, tzinfo=CHINA),
            "Written <time datetime='2025-06-01T14:03:07+08:00'>2025-06-01 14:03:07 UTC+08:00"
            "</time> · run <time datetime='2025-06-01T14:00:01+08:00'>2025-06-01 14:00:01 "
            "UTC+08:00</time> – <time datetime='2025-06-01T14:03:07+08:00'>14:03:07</time> "
            "(3 min 6 s)",
        ),
        (
            datetime(2025, 5, 31, 23, 0, 0, tzinfo=CHINA),
            "run <time datetime='2025-05-31T23:00:00+08:00'>2025-05-31 23:00:00 UTC+08:00"
            "</time> – <time datetime='2025-06-01T14:03:07+08:00'>2025-06-01 14:03:07 "
            "UTC+08:00</time> (15 h 3 min)",
        ),
        # Not written by a run (the report command): the recorded work's span, 1000-1010 s.
        (
            None,
            "work recorded <time datetime='1970-01-01T08:16:40+08:00'>1970-01-01 08:16:40 "
            "UTC+08:00</time> – <time datetime='1970-01-01T08:16:50+08:00'>08:16:50</time> "
            "(10 s)",
        ),
    ],
)
def test_page_says_when_it_was_written_and_the_runs_span(
    started: datetime | None, shown: str
) -> None:
    records, items = sample()
    written = datetime(2025, 6, 1, 14, 3, 7, tzinfo=CHINA)
    html = review.render(records, items, title="t", written=written, run_started=started)
    assert shown in html
    elapsed = re.search(r"<li class='elapsed'><b>([^<]+)</b>", html)
    assert elapsed is not None and elapsed.group(1) == shown.rsplit("(", 1)[1].rstrip(")")
    assert "class='dates'" not in review.render(records, items, title="t")


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
      - {id: "c 1#a", name: 张伟, opt_in: "yes"}
      - {id: c2, name: Alice, opt_in: "yes"}
      - {id: c3, name: Bob, opt_in: "no"}
    key: "{{ row.id }}"
avatars:
  founder: {video: clip}
  ghost: {id: av_does_not_exist}
voices:
  announcer: {public: 公共声音1}
videos:
  welcome:
    for_each: customers
    when: "{{ row.opt_in }}"
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

# Added to a copy of the page by the test only: notes the cards the address's filter
# shows, then the reviewer's click on "failed".
CLICK_FAILED = """<script>
var shown = document.querySelectorAll('article:not([hidden])');
document.body.setAttribute('data-first', Array.from(shown, a => a.dataset.item).join('|'));
document.querySelector("nav.filter button[data-filter='failed']").click();
</script>"""


def chromium(page: Path, profile: Path, *args: str, fragment: str = "") -> str:
    # Chromium puts a Unix socket in TMPDIR, whose path must stay short (108 bytes).
    url = page.as_uri() + fragment
    proc = subprocess.run(
        [str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url],
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
def test_browser_shows_players_that_load_the_failed_items_error_and_filters(
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
    assert page.nav_hidden is False and page.buttons["all"] == "true"
    assert not page.hidden_sections and page.left_out == {"videos.welcome[c3]": False}
    # The page opens on the filter its address names; the reviewer then asks for the failed
    # items only.
    clicked = run_page.with_name("clicked.html")
    clicked.write_text(
        run_page.read_text("utf-8").replace("</body>", CLICK_FAILED + "</body>"), "utf-8"
    )
    dom = chromium(clicked, tmp_path / "profile", "--dump-dom", fragment="#when-false")
    assert re.search(r"<body data-first=\"\"", dom)  # the address's filter: no card shown
    page = parse(dom)
    assert page.buttons["failed"] == "true" and page.buttons["all"] == "false"
    assert [c.item for c in page.cards.values() if not c.hidden] == ["videos.lost"]
    assert page.left_out == {"videos.welcome[c3]": True}
    assert page.hidden_sections == {"assets", "avatars", "voices", "audios", "when-false"}


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
    html = target.with_suffix(".html").read_text("utf-8")
    assert "c3 (review.yaml:11) — videos.welcome: when was false" in html
    assert "work recorded <time" in html  # (no run: the span of the recorded work)
    page = parse(html)
    sources = [m["src"] for card in page.cards.values() for m in card.media]
    assert len(sources) == 3
    for src in sources:
        assert src.startswith("../out/review.sandbox/") and (target.parent / unquote(src)).is_file()
