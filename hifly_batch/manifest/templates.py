"""Jinja2 templates in a sandbox: compiled once, rendered per row, faults located.

Templates come from manifests that may have been shared, so they render in
:class:`~jinja2.sandbox.SandboxedEnvironment` (no attribute escapes), with
undefined names as errors and as plain text (no HTML escaping).
"""

from __future__ import annotations

import functools
import hashlib
import json
import posixpath
import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from hifly_batch.manifest import bounds, budget, plain


class TemplateFault(Exception):
    """A template failed to compile or render; ``line`` is within the template."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


class _Environment(SandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+", "-"})
    # Every block that captures its output (``{% set %}``, a macro, ``caller()``, a
    # recursive loop) joins it here: counted as the render's own output is.
    concat = staticmethod(budget.joined)

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        bounds.check_binop(operator_name, left, right)
        result = super().call_binop(context, operator_name, left, right)
        if operator_name == "-":  # dict keys minus a list: a set, in no stable order
            return plain.ordered_difference(left, right, result)
        return result

    def join_path(self, template: str, parent: str) -> str:
        # An include inside an included file finds a file beside that file first.
        sibling = posixpath.join(posixpath.dirname(parent), template)
        if sibling != template and isinstance(self.loader, _CampaignLoader):
            try:
                self.loader.get_source(self, sibling)
            except jinja2.TemplateNotFound:
                return template
            return sibling
        return template

    def getattr(self, obj: Any, attribute: str) -> Any:
        # ``row.items`` is the column "items", not dict.items: a data value before a
        # method of its container, or a key would be a method's address, new every run.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        budget.tick()  # every call, macros too: recursion meets the clock
        args = bounds.check_call(__obj, args)
        return super().call(__context, __obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Any:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        spec, mapping = value.__self__, value.__name__ == "format_map"

        def checked(*args: Any, **kwargs: Any) -> Any:
            # Sized (and its values checked) from the arguments, before it is built.
            named = args[0] if mapping and args else kwargs
            size = bounds.format_size(spec, () if mapping else args, named, "str.format")
            budget.check_size(size, "str.format")
            return wrapped(*args, **kwargs)

        return checked


Null = plain.Null  # (a JSON null; defined beside the checks that refuse to speak it)
NULL = plain.NULL


def without_nulls(value: Any) -> Any:
    """``value`` (JSON) with every ``null``, at any depth, made :data:`NULL`."""
    if value is None:
        return NULL
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items()}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def _spoken(value: Any) -> Any:
    """Every ``{{ }}`` output passes here: a null would be spoken as "None", an object
    as its memory address (SPEC §3)."""
    return plain.check_spoken(value, "this output")


_ENV = _Environment(
    undefined=jinja2.StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    trim_blocks=True,  # a block tag on its own line leaves no blank line (SPEC §3)
    lstrip_blocks=True,
    finalize=_spoken,
)


@jinja2.pass_context
def _random(context: jinja2.runtime.Context, seq: Any) -> Any:
    """Jinja's ``random``, but the same pick for the same row and sequence on every run
    and machine: a pick that changed would change the text, and each run would make (and
    pay for) the video again."""
    items = list(bounds.bounded_iter(seq))
    if not items:
        return context.environment.undefined("random of an empty sequence")
    seed = json.dumps(
        [context.get("row"), context.get("vars"), items],
        sort_keys=True,
        ensure_ascii=False,
        default=lambda value: None if isinstance(value, Null) else str(value),
    )
    digest = hashlib.sha256(seed.encode("utf-8")).digest()
    return items[int.from_bytes(digest[:8], "big") % len(items)]


def _lipsum(*args: Any, **kwargs: Any) -> Any:
    """Jinja's ``lipsum``, refused: its text is new on every run (as ``random``'s was)."""
    raise TemplateFault(
        "refused: lipsum makes a different text on every run, so every run would make "
        "(and pay for) the video again"
    )


_ENV.tests["none"] = lambda value: value is None or isinstance(value, Null)
_ENV.filters["random"] = _random
_ENV.globals["lipsum"] = _lipsum
_ENV.globals[bounds.LOOP_NAME] = bounds.bounded_iter
_ENV.globals[bounds.CONCAT_NAME] = bounds.bounded_concat
_ENV.filters.update(bounds.FILTERS)
_ENV.filters.update({name: bounds.checked_filter(name, f) for name, f in _ENV.filters.items()})
# Version 1.0's blocks, to recognise the work it made (see ``Template.legacy``).
_LEGACY_ENV = _ENV.overlay(trim_blocks=False, lstrip_blocks=False)


@dataclass(frozen=True)
class Template:
    """A compiled template and the name its faults are reported under."""

    source: str
    name: str
    compiled: jinja2.Template
    literal: bool = False  # no template syntax: renders to itself
    # The same source as version 1.0 compiled it (without trim_blocks/lstrip_blocks),
    # where that can render differently: only a block tag is trimmed.
    legacy: jinja2.Template | None = None
    # Its renders' time over all rows, shared with the legacy renders: once out of time
    # it is not run again, so that validating many rows stays within seconds.
    spend: budget.Spend = field(default_factory=budget.Spend, compare=False)

    def render_legacy(self, context: Mapping[str, Any]) -> str:
        """What version 1.0 rendered, before any strip (a fault: as :meth:`render`)."""
        if self.legacy is None:
            return self.render(context)
        return replace(self, compiled=self.legacy, legacy=None).render(context)

    def render(self, context: Mapping[str, Any]) -> str:
        """Render with ``context`` (made by :func:`base_context`); raise
        :class:`TemplateFault` on any fault."""
        if self.literal:
            return self.source
        if self.spend.fault is not None:
            raise self.spend.fault
        try:
            # Template.render would copy the globals (a ChainMap) into a new
            # dict for every row; the context already holds them.
            ctx = self.compiled.new_context(dict(context), shared=True)
            try:
                with budget.rendering(self.spend):  # (the check of the text is its cost too)
                    render = self.compiled.root_render_func  # type: ignore[attr-defined]
                    return _without_address(budget.joined(render(ctx)))
            except Exception:
                _ENV.handle_exception()  # re-raises with template line numbers
        except TemplateFault as exc:
            raise TemplateFault(exc.message, _template_line(exc, self.name)) from None
        except plain.Unspoken as exc:
            raise TemplateFault(str(exc), _template_line(exc, self.name)) from None
        except budget.RenderLimit as exc:
            fault = TemplateFault(f"refused: {exc}", _template_line(exc, self.name))
            if isinstance(exc, budget.OutOfTime):
                self.spend.fault = fault
            raise fault from None
        except RecursionError:
            raise TemplateFault("refused: the template calls itself without end") from None
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateFault(f"template syntax error: {exc.message}", exc.lineno) from None
        except jinja2.UndefinedError as exc:
            line = _template_line(exc, self.name)
            raise TemplateFault(f"undefined in template: {exc.message}", line) from None
        except jinja2.TemplateNotFound as exc:
            line = _template_line(exc, self.name)
            message = (
                f"no template file {exc.name!r} in the manifest's folder (files outside it "
                "are not read)"
            )
            raise TemplateFault(message, line) from None
        except jinja2.exceptions.SecurityError as exc:
            line = _template_line(exc, self.name)
            raise TemplateFault(f"refused by the template sandbox: {exc}", line) from None
        except Exception as exc:  # any fault of user-written code is reported, not raised
            line = _template_line(exc, self.name)
            message = f"template error: {type(exc).__name__}: {exc}"
            if isinstance(exc, TypeError) and "str" in str(exc):
                message += " (CSV cells and vars are text: for arithmetic add `| int` or `| float`)"
            raise TemplateFault(message, line) from None


# An object's text that names where it lies in memory: ``<function f at 0x7f...>``.
_ADDRESS = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def _without_address(text: str) -> str:
    """``text``, refused when it holds an object's memory address (new on every run,
    so every run would pay again): a backstop behind the checks of every route to text."""
    if " at 0x" in text and (found := _ADDRESS.search(text)):
        raise TemplateFault(
            f"the text holds a Python object's memory address ({found[0][:60]}), which "
            "changes from run to run; render one of its values instead"
        )
    return text


# Spaces or tabs after a block tag at the end of its line (invisible in an editor) would
# keep trim_blocks from taking the line break: they go first.
_BLANKS_AFTER_TAG = re.compile(r"(%\})[ \t]+(\r?\n)")


def compile_template(
    source: str, name: str, root: Path | None = None, near: Path | None = None
) -> Template:
    """Compile once; raise :class:`TemplateFault` with the line of a syntax error.
    ``root``: the manifest's folder, from which ``{% include %}`` and ``{% import %}``
    read template files (none outside it); ``near``: the folder of the template file
    itself, searched first, so a footer beside it is found by its name."""
    env, legacy_env = _environments(root, near)
    compiled = _compiled(env, _BLANKS_AFTER_TAG.sub(r"\1\2", source), name)
    legacy = _compiled(legacy_env, source, name) if "{%" in source else None
    literal = not any(mark in source for mark in ("{{", "{%", "{#"))
    return Template(source, name, compiled, literal, legacy)


class _CampaignLoader(jinja2.FileSystemLoader):
    """Template files in the manifest's folder and below: a ``..`` or a link that leads
    out of it is not found (SPEC §3)."""

    def __init__(self, root: Path, near: Path | None) -> None:
        folders = [near, root] if near is not None and near != root else [root]
        super().__init__([str(f) for f in folders])
        self.root = root.resolve()

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        source, filename, uptodate = super().get_source(environment, template)
        if not Path(filename).resolve().is_relative_to(self.root):
            raise jinja2.TemplateNotFound(template)
        return source, filename, uptodate


@functools.lru_cache(maxsize=32)
def _environments(root: Path | None, near: Path | None) -> tuple[_Environment, _Environment]:
    """The environment (and version 1.0's) that reads included files from ``near``, then
    ``root``, never outside ``root``."""
    if root is None:
        return _ENV, _LEGACY_ENV
    loader = _CampaignLoader(root, near)
    return _ENV.overlay(loader=loader), _LEGACY_ENV.overlay(loader=loader)


def _compiled(env: _Environment, source: str, name: str) -> jinja2.Template:
    try:
        tree = bounds.BoundLoops().visit(env.parse(source, name=name, filename=name))
        code = env.compile(tree, name=name, filename=name)
        return env.template_class.from_code(env, code, env.make_globals(None), None)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateFault(f"template syntax error: {exc.message}", exc.lineno) from None
    except Exception as exc:  # the compiler may reject odd input in other ways
        raise TemplateFault(f"template error: {exc}") from None


def base_context(**values: Any) -> dict[str, Any]:
    """A render context: the sandbox's globals (range, dict, ...) and ``values``."""
    return {**_ENV.globals, **values}


def _template_line(exc: BaseException, name: str) -> int | None:
    """The template line of the deepest traceback frame that belongs to ``name``."""
    line = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == name:
            line = frame.lineno
    return line
