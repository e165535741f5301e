"""What did not finish, and what to do about it: the end of a run, and ``status``.

Every failed, uncertain, blocked and pending item is named, grouped by its cause (an
API error code with its meaning in English and 中文, or the kind of a network fault),
with the command that deals with it. Pure: records in, lines of text out.
"""

from __future__ import annotations

import re
import shlex
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hifly_batch.apispec import ERROR_CODES
from hifly_batch.errors import plain_fault
from hifly_batch.reports.csv_report import report_status
from hifly_batch.runner.state import Record
from hifly_batch.runner.state_postgres import is_database, shown

WIDTH = 80  # item ids are wrapped to fit a terminal of this many columns

# The kinds of fault a request can meet below the API (no code): label -> (English, 中文).
FAULT_KINDS: dict[str, tuple[str, str]] = {
    "network": ("no usable connection to the service", "网络故障，无法连接服务"),
    "timeout": ("no answer in time", "请求超时"),
    "server error": ("the service answered with an HTTP error", "服务返回 HTTP 错误"),
    "rate limited": ("the service asked to wait (HTTP 429)", "请求过于频繁"),
    "bad answer": ("the service's answer could not be read", "服务的应答无法读取"),
    # A task the service ended in status 4 (失败) without a documented code.
    "task failed": ("the service could not make it (its task ended failed)", "任务失败"),
}
DELIVERIES = ("not sent", "sent, no answer", "answered with a server error")  # api Delivery
_TRANSPORT = re.compile(
    rf"(?P<what>[\w/]+): (?P<delivery>{'|'.join(DELIVERIES)}): (?P<detail>.*)", re.S
)
ANSWER_LOST = "may have been submitted, answer lost"  # (runner.jobs)
_ANSWER_LOST = re.compile(rf"{ANSWER_LOST}(?:: (?P<detail>.*)| \((?P<old>.*)\))", re.S)
_REQUEST_ID = re.compile(r"\s*\[request_id [^\]]*\]")
_HTTP = re.compile(r"\bHTTP (\d{3})\b")


@dataclass(frozen=True)
class Cause:
    """Why an item did not finish: ``label`` is the code (``"2015"``) or the kind of fault
    (``"network"``); meanings are empty where none is known (an undocumented code, or an
    error of this machine's own)."""

    label: str
    en: str = ""
    zh: str = ""
    code: int | None = None

    def __str__(self) -> str:
        """``code 2015: avatar clone failed (数字人克隆失败)``, ``network: … (…)``."""
        name = f"code {self.code}" if self.code is not None else self.label
        return f"{name}: {self.en} ({self.zh})" if self.en else name


@dataclass(frozen=True)
class Commands:
    """How to run this campaign again: its manifest as the user named it, and the options
    the run was given that a rerun needs too (``--sandbox``, ``--state PATH``)."""

    manifest: str
    options: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        manifest: object,
        *,
        sandbox: bool = False,
        state: str | None = None,
        base_url: str | None = None,
        env_state: str | None = None,
    ) -> Commands:
        """The rerun of a command given these options: ``--state`` only when given on the
        command line (not from ``$HIFLY_STATE``, which a paste finds set again), a
        database's as messages show it (never its password)."""
        options: list[str] = ["--sandbox"] if sandbox else []
        if state and state != env_state:
            options += ["--state", shown(state) if is_database(state) else state]
        if base_url:
            options += ["--base-url", base_url]
        return cls(str(manifest), tuple(options))

    def run(self, *flags: str) -> str:
        """A command to copy and paste, e.g. ``hifly-batch run --retry-failed c.yaml``."""
        return shlex.join(("hifly-batch", "run", *flags, self.manifest, *self.options))

    def plan(self) -> str:
        """``hifly-batch plan c.yaml`` with the same options."""
        return shlex.join(("hifly-batch", "plan", self.manifest, *self.options))


def meaning(code: int | None) -> tuple[str, str] | None:
    """The API document's meaning of ``code`` (English, 中文); None when it has none."""
    return ERROR_CODES.get(code) if code is not None else None


def cause_of(record: Record) -> Cause:
    """The cause of a record's error: its code's, else the kind of its network fault."""
    code = record.error_code
    if code is not None:
        en, zh = meaning(code) or ("", "")
        return Cause(str(code), en, zh, code)
    detail = _transport_detail(record.error_message or "")
    if detail is None and record.task_id is not None and not record.work_exists:
        return Cause("task failed", *FAULT_KINDS["task failed"])  # (status 4, no code)
    if detail is None:
        return Cause("other errors")
    kind = fault_kind(detail)
    return Cause(kind, *FAULT_KINDS[kind])


def fault_kind(detail: str) -> str:
    """The kind (a key of FAULT_KINDS) of a request's failure below the API, from its words."""
    status = _HTTP.search(detail)
    if status:
        return "rate limited" if status[1] == "429" else "server error"
    if "timed out" in detail or "timeout=" in detail:
        return "timeout"
    if any(words in detail for words in ("not valid JSON", "not an object", "no task_id")):
        return "bad answer"
    return "network"


def message(record: Record, *, request_id: bool = True) -> str:
    """The record's error in readable words, without what its cause says already: the
    service's own message for a code (``""`` when it only repeats the meaning), the failed
    request and its fault in plain words for a network fault. ``request_id``: keep the
    ``[request_id …]`` the service gave (for support), or leave it out."""
    text = record.error_message or ""
    code = record.error_code
    if code is not None:
        text = _after_code(text, code)
    text = readable(text)
    if not request_id:
        text = _REQUEST_ID.sub("", text).strip()
    known = meaning(code)
    if known:  # a task's message may begin with the meaning: "数字人克隆失败: 未检测到人脸"
        text = re.sub(rf"^(?:{re.escape(known[1])}|{re.escape(known[0])})\s*[:：]\s*", "", text)
    return "" if known and text in known else text


def readable(text: str) -> str:
    """A stored error message with any transport library's words made plain (records
    written before messages were worded so read like new ones); others as they are."""
    found = _TRANSPORT.fullmatch(text)
    if found:
        return f"{found['what']}: {found['delivery']}: {plain_fault(found['detail'])}"
    lost = _ANSWER_LOST.fullmatch(text)
    if lost:
        return f"{ANSWER_LOST}: {plain_fault(lost['detail'] or lost['old'])}"
    return plain_fault(text)


def error_text(record: Record) -> str:
    """One line for a table: ``2015 avatar clone failed: <the service's message>``,
    ``network: upload: not sent: could not resolve hfw-api.hifly.cc (DNS)``; ``""`` for none."""
    if record.error_code is None and not record.error_message:
        return ""
    cause = cause_of(record)
    said = message(record)
    if cause.code is None and cause.label == "other errors":
        return said
    head = f"{cause.code} {cause.en}".strip() if cause.code is not None else cause.label
    return f"{head}: {said}" if said else head


def nothing_to_do(records: Sequence[Record], scope: set[str] | None) -> str:
    """The one line of a run that had nothing to do (every item in ``scope`` done and
    unchanged; ``scope`` None: every item)."""
    if scope is None:
        return f"Nothing to do: all {_items(len(records))} are done and unchanged."
    if not scope:
        return "Nothing to do: none of the items selected needs work."
    selected = _items(len(scope))
    verb = "is" if len(scope) == 1 else "are"
    return f"Nothing to do: the {selected} selected {verb} done and unchanged."


def unfinished(
    records: Sequence[Record],
    deps: Mapping[str, Sequence[str]],
    commands: Commands,
    scope: set[str] | None = None,
    held: Sequence[str] = (),
    again: Sequence[str] = (),
) -> list[str]:
    """The lines naming every item in ``scope`` (None: all) that did not finish, by status
    and then by cause, each group with what to do; ``[]`` when every one is done or
    skipped. ``deps``: each item's direct inputs, to say what a blocked item waits for.
    ``held``: items whose create ``--max-credits`` held back (whatever their record says:
    one made again keeps its earlier work's record); ``again``: the options a run that
    continues must repeat (``--recreate PATTERN``)."""
    by_status: dict[str, list[Record]] = {}
    for record in records:
        if (scope is None or record.item in scope) and record.item not in held:
            by_status.setdefault(report_status(record.status), []).append(record)
    statuses = {r.item: report_status(r.status) for r in records}
    lines: list[str] = []
    if "failed" in by_status:
        lines += _failed(by_status["failed"], commands)
    if "uncertain" in by_status:
        lines += _uncertain(by_status["uncertain"], commands)
    if "blocked" in by_status:
        lines += _blocked(by_status["blocked"], deps, statuses)
    if "pending" in by_status:
        lines += _pending(by_status["pending"], commands, again)
    if held:
        lines += _held(held, commands, again)
    return lines[1:] if lines else []  # (each part begins with a blank line)


def _failed(records: Sequence[Record], commands: Commands) -> list[str]:
    lines = ["", f"{_items(len(records))} failed:"]
    lines += _by_cause(records)
    lines += [
        "To try them again (after fixing any input the service refused):",
        f"  {commands.run('--retry-failed')}",
    ]
    return lines


def _uncertain(records: Sequence[Record], commands: Commands) -> list[str]:
    lines = [
        "",
        *_para(
            f"{_items(len(records))} uncertain: the create was sent but its answer was lost, "
            "so the work may already have been made, and paid for:"
        ),
    ]
    lost = {
        said.removeprefix(f"{ANSWER_LOST}: "): items for said, items in _messages(records).items()
    }
    lines += _listed(lost)
    lines += [
        *_para(
            "Look for them in the HiFly web console first; only if they are not there, "
            "send them again (this may pay twice):"
        ),
        f"  {commands.run('--resubmit-uncertain')}",
    ]
    return lines


def _blocked(
    records: Sequence[Record], deps: Mapping[str, Sequence[str]], statuses: Mapping[str, str]
) -> list[str]:
    groups: dict[tuple[str, ...], list[str]] = {}
    order = {item: n for n, item in enumerate(statuses)}
    for record in records:
        roots = tuple(
            sorted(_waits_for(record.item, deps, statuses), key=lambda i: order.get(i, len(order)))
        )
        groups.setdefault(roots, []).append(record.item)
    lines = [
        "",
        *_para(
            f"{_items(len(records))} blocked, each waiting for an item that did not finish; "
            "each runs once that one is fixed:"
        ),
    ]
    for roots, items in groups.items():
        named = ", ".join(f"{root} ({statuses.get(root, 'pending')})" for root in roots)
        lines.append(f"  waiting for {named or 'an input that did not finish'}:")
        lines += _wrapped(items, "    ")
    return lines


def _held(held: Sequence[str], commands: Commands, again: Sequence[str]) -> list[str]:
    text = f"{_items(len(held))} held back by --max-credits (not sent, not paid for):"
    lines = ["", *_para(text), *_wrapped(held, "  ")]
    more = "with a higher --max-credits, or without it" + (
        ", and the same --recreate" if again else ""
    )
    return [*lines, *_para(f"To continue ({more}):"), f"  {commands.run(*again)}"]


def _pending(records: Sequence[Record], commands: Commands, again: Sequence[str] = ()) -> list[str]:
    """A count, not a list: nothing went wrong with these, they were not reached (the run
    was stopped, or the service said wait, as 1002 does until credits are added)."""
    said = {str(cause_of(r)) for r in records if r.error_code is not None}
    why = f", the service last answered {'; '.join(sorted(said))}" if said else ""
    text = f"{_items(len(records))} not made yet (pending){why}; a run makes them:"
    return ["", *_para(text), f"  {commands.run(*again)}"]


def _by_cause(records: Sequence[Record]) -> list[str]:
    """The records grouped by cause, in order of first appearance; within a cause, by
    message (many items failing for one reason name it once)."""
    groups: dict[Cause, list[Record]] = {}
    for record in records:
        groups.setdefault(cause_of(record), []).append(record)
    lines = []
    for cause, members in groups.items():
        lines.append(f"  {cause}, {_items(len(members))}")
        said = _messages(members)
        if cause.code is not None:  # the service's own words, beside the documented meaning
            said = {f"the service says: {m}" if m else m: ids for m, ids in said.items()}
        lines += _listed(said, indent="    ")
    return lines


def _messages(records: Sequence[Record]) -> dict[str, list[str]]:
    """Item ids by their message (request ids left out, so one cause reads as one)."""
    found: dict[str, list[str]] = {}
    for record in records:
        found.setdefault(message(record, request_id=False), []).append(record.item)
    return found


def _listed(by_message: Mapping[str, list[str]], indent: str = "  ") -> list[str]:
    lines = []
    for said, items in by_message.items():
        if said:
            lines += _para(said, indent)
            lines += _wrapped(items, indent + "  ")
        else:
            lines += _wrapped(items, indent)
    return lines


def _para(text: str, indent: str = "") -> list[str]:
    return textwrap.wrap(text, WIDTH, initial_indent=indent, subsequent_indent=indent)


def _wrapped(items: Sequence[str], indent: str) -> list[str]:
    """Item ids, comma-separated, wrapped at WIDTH (an id is never broken)."""
    return textwrap.wrap(
        ", ".join(items),
        WIDTH,
        initial_indent=indent,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def _waits_for(
    item: str, deps: Mapping[str, Sequence[str]], statuses: Mapping[str, str]
) -> tuple[str, ...]:
    """The items that hold ``item`` up: inputs, or inputs of blocked inputs, that failed,
    are uncertain or pending (none of them done), in the order found."""
    found: dict[str, None] = {}
    seen: set[str] = set()
    todo = list(deps.get(item, ()))
    while todo:
        dep = todo.pop(0)
        if dep in seen:
            continue
        seen.add(dep)
        status = statuses.get(dep, "pending")
        if status == "blocked":
            todo += deps.get(dep, ())
        elif status not in ("done", "skipped"):
            found[dep] = None
    return tuple(found)


def _transport_detail(text: str) -> str | None:
    """What went wrong below the API, from a stored message of a request's failure (or of
    a create whose answer was lost); None for any other message."""
    found = _TRANSPORT.fullmatch(text) or _ANSWER_LOST.fullmatch(text)
    if found is None:
        return None
    groups = found.groupdict()
    return str(groups.get("detail") or groups.get("old") or "")


def _after_code(text: str, code: int) -> str:
    """What an API error's stored text says after its code and meaning (the service's own
    message, and its request id): ``video/create_by_tts: error 11 bad parameter (参数不正确):
    text too long [request_id r1]`` gives ``text too long [request_id r1]``."""
    marker = re.search(rf"\berror {code}\b[^(]*\([^)]*\)(?::\s*)?", text)
    return text[marker.end() :] if marker else text


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"
