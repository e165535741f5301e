"""Media inputs of create requests: by file_id, by one of our own URLs, by any other URL.

A file_id is looked up in the world. A URL that this sandbox handed out is
read for real (its signature must hold). A URL on any other host is never
fetched: it stands for a valid file of the type its path's extension names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hifly_batch import apispec
from hifly_batch.sandbox import signing
from hifly_batch.sandbox.media_maker import read_duration
from hifly_batch.sandbox.records import FileRow
from hifly_batch.sandbox.rules import BusinessError, InputRole, check_media, url_extension
from hifly_batch.sandbox.world import World

FILES_PREFIX = "/files/"


@dataclass(frozen=True)
class Input:
    """A resolved input: what a task needs to know about it."""

    ext: str
    seconds: float | None = None  # readable duration, when there are bytes to read
    missing: bool = False  # a file_id whose bytes never arrived: the task will fail


@dataclass(frozen=True)
class InputContext:
    """What resolving needs from the running sandbox."""

    world: World
    own_netlocs: frozenset[str]  # "127.0.0.1:PORT" and the like
    secret: str
    now: float
    duration: Callable[[Path], float | None] = read_duration


def find_file(ctx: InputContext, params: dict[str, Any]) -> FileRow | None:
    """The uploaded file named by ``file_id``; BusinessError 14 when unknown. None for URLs."""
    file_id = params.get("file_id")
    if file_id is None:
        return None
    row = ctx.world.file(file_id)
    if row is None or row.kind != "upload":
        raise BusinessError(apispec.NOT_FOUND, f"file_id {file_id} 不存在")
    return row


def resolve(
    ctx: InputContext, role: InputRole, params: dict[str, Any], file: FileRow | None
) -> Input:
    """Check the input against the role's limits and describe it (BusinessError on refusal)."""
    if file is not None:
        return _from_file(ctx, role, file)
    url = params[role.url_field]
    parts = urlsplit(url)
    if parts.netloc in ctx.own_netlocs and parts.path.startswith(FILES_PREFIX):
        return _from_own_url(ctx, role, parts.path, parts.query)
    ext = url_extension(url)
    check_media(role, ext, None, None)
    return Input(ext=ext)


def _from_file(ctx: InputContext, role: InputRole, file: FileRow) -> Input:
    if not file.uploaded:
        check_media(role, file.ext, None, None)
        return Input(ext=file.ext, missing=True)
    return _measure(ctx, role, file)


def _from_own_url(ctx: InputContext, role: InputRole, path: str, query: str) -> Input:
    name = path[len(FILES_PREFIX) :]
    fetch_failed = BusinessError(role.fetch_code, "无法下载该地址 (签名无效或已过期)")
    if not signing.verify(ctx.secret, "GET", path, query, ctx.now):
        raise fetch_failed
    file = ctx.world.file_by_name(name)
    if file is None:
        raise fetch_failed
    return _measure(ctx, role, file)


def _measure(ctx: InputContext, role: InputRole, file: FileRow) -> Input:
    stored = ctx.world.files_dir / file.stored_name
    size = file.size if file.size is not None else _size(stored)
    check_media(role, file.ext, size, None)
    if role.seconds is None:
        return Input(ext=file.ext)
    seconds = ctx.duration(stored)
    check_media(role, file.ext, size, seconds)
    return Input(ext=file.ext, seconds=seconds)


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None
