"""Render one workstation's softphone files from the Jinja2 templates.

:func:`render_machine` turns a :class:`~provision.model.Machine` into the files
each of its clients reads (:data:`~provision.model.CLIENT_FILES` names the
template and the output path of each). Templates come from ``templates/`` in
the package, or first from a site folder, which may

* override a packaged template by giving one of the same name
  (``baresip/accounts.j2``), or extend it with
  ``{% extends "builtin:baresip/config.j2" %}`` and replace its blocks;
* add files for a client: every other ``<client>/NAME.j2`` in the site folder
  renders to ``NAME`` next to that client's other files (``baresip/contacts.j2``
  → ``baresip/contacts``, ``linphone/friends.xml.j2`` → ``friends.xml``). Names
  starting with ``_`` are partials (macros, includes) and render to nothing.

Each output format has its own quoting rules, and nothing a person typed into
the inventory may break a file or smuggle a setting into it; so autoescaping is
off and templates quote every value with the filter of its format (see
:data:`FILTERS`). A filter that cannot carry a value faithfully refuses it,
and the render fails naming the template and line, never the value (it may be
the password).

The password reaches templates only as ``{{ password.reveal() }}``; a file
whose template revealed it is ``secret`` (the output stage writes it 0600).
With ``redact=True`` it renders as ``***`` (dry runs) and the flags stay the
same.
"""

from __future__ import annotations

import importlib
import re
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import jinja2
from jinja2.sandbox import SandboxedEnvironment

import templates as _templates_package
from diagnostics.errors import UsageError
from diagnostics.profile import parse_host_port
from diagnostics.report import phonekit_version
from diagnostics.secret import Secret
from provision.model import CLIENT_FILES, Client, Machine

__all__ = [
    "CODECS",
    "FILTERS",
    "PACKAGED_TEMPLATES",
    "REGISTER_INTERVAL_S",
    "Codec",
    "DialPlanView",
    "Rejected",
    "RenderedFile",
    "TemplateFailure",
    "baresip_account_line",
    "baresip_conf",
    "baresip_param",
    "clear_caches",
    "codec_rows",
    "ini_value",
    "lpc_value",
    "parse_linphonerc",
    "render_machine",
    "sip_escape",
    "sip_hostport",
    "sip_quote",
    "toml_str",
    "toml_value",
    "xml",
]

PACKAGED_TEMPLATES = Path(_templates_package.__file__).resolve().parent
#: Registration interval every client is given (seconds); phones re-register before it runs out.
REGISTER_INTERVAL_S = 600
REDACTED = "***"


# ----------------------------------------------------------------------------------------------- results


Encoding = Literal["utf-8", "utf-16"]


@dataclass(frozen=True)
class RenderedFile:
    """One output file. ``path`` is relative to the machine's output folder, with ``/``.

    ``encoding`` and ``newline`` are how the file must be written (use
    :meth:`encode`): ``"utf-16"`` means UTF-16LE with a byte-order mark,
    what Windows calls "Unicode" and what MicroSIP needs to read non-ASCII
    text (an INI file without the mark is read in the ANSI code page).
    """

    path: str
    content: str
    secret: bool
    """The file holds the password: write it readable by its owner only."""
    encoding: Encoding = "utf-8"
    newline: str = "\n"

    def encode(self) -> bytes:
        text = self.content if self.newline == "\n" else self.content.replace("\n", self.newline)
        if self.encoding == "utf-16":
            return b"\xff\xfe" + text.encode("utf-16-le")
        return text.encode("utf-8")


class TemplateFailure(UsageError):
    """A template could not be rendered: names the template, the line and what went wrong.

    ``template 'baresip/accounts.j2' line 3: 'extensoin' is undefined``
    """

    def __init__(self, template: str, line: int | None, detail: str, machine: Machine | None = None) -> None:
        where = f"template '{template}'" + (f" line {line}" if line else "")
        text = f"{where}: {detail}"
        if machine is not None:
            row = f", inventory row {machine.row}" if machine.row else ""
            text += f" (machine '{machine.hostname}'{row})"
        super().__init__(text)
        self.template = template
        self.line = line
        self.detail = detail


# Files that are not UTF-8 with LF line ends, by template name.
_FILE_FORMATS: dict[str, tuple[Encoding, str]] = {
    # MicroSIP (Windows GetPrivateProfileString) reads UTF-16LE with BOM; anything else as the ANSI code page.
    "microsip/MicroSIP.ini.j2": ("utf-16", "\r\n"),
}


# ----------------------------------------------------------------------------------------------- filters


class Rejected(ValueError):
    """A filter cannot write this value faithfully in its format (the message never quotes the value)."""


def _text(value: object, what: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        hint = ": use password.reveal()" if isinstance(value, _PasswordView | Secret) else ""
        raise Rejected(f"{what} needs text (got a {type(value).__name__}{hint})")
    return str(value)


def _check_chars(text: str, forbidden: str, what: str) -> None:
    bad = sorted({ch for ch in text if ch in forbidden})
    if bad:
        names = ", ".join(repr(ch) for ch in bad)
        raise Rejected(f"{what} cannot carry {names} in a value")


_CONTROL = "".join(map(chr, range(0x20))) + "\x7f"
_CONTROL_BUT_TAB = _CONTROL.replace("\t", "")
_LINE_BREAKS = "\r\n\0"

# TOML 1.0 basic strings: quote, backslash and control characters (but tab) must be escaped.
_TOML_ESCAPES = {ord(ch): f"\\u{ord(ch):04X}" for ch in _CONTROL}
_TOML_ESCAPES |= {ord('"'): '\\"', ord("\\"): "\\\\", ord("\b"): "\\b", ord("\t"): "\\t", ord("\n"): "\\n",
                  ord("\f"): "\\f", ord("\r"): "\\r"}  # fmt: skip


def toml_str(value: object) -> str:
    """A TOML basic string (TOML 1.0 §String): ``"..."`` with every character that must be escaped escaped."""
    return '"' + _text(value, "toml_str").translate(_TOML_ESCAPES) + '"'


def toml_value(value: object) -> str:
    """A TOML value for text, integers, booleans and lists of them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    return toml_str(value)


def ini_value(value: object, max_chars: int | None = None) -> str:
    """A value for a Windows INI file as ``GetPrivateProfileString`` reads it (MicroSIP).

    Windows trims blanks around the value and then removes one pair of
    enclosing quotes; there is no escape. So a value with blanks at either end,
    or that is itself enclosed in quotes, is written enclosed in quotes; a line
    break cannot be written at all. ``max_chars``: the reader's buffer (MicroSIP
    reads at most 255 characters of most keys and silently cuts the rest).
    """
    text = _text(value, "ini_value")
    _check_chars(text, _LINE_BREAKS, "an INI file")
    if max_chars is not None and len(text) > max_chars:
        raise Rejected(f"value too long for this key: {len(text)} characters, the reader keeps {max_chars}")
    if text != text.strip() or (len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'"):
        return f'"{text}"'
    return text


def lpc_value(value: object) -> str:
    """A value for a Linphone configuration file (``key=value``, liblinphone ``coreapi/lpconfig.c``).

    liblinphone takes everything after the first ``=`` to the end of the line
    and drops trailing blanks; it has no quoting. So a line break or a
    trailing blank cannot be written.
    """
    text = _text(value, "lpc_value")
    _check_chars(text, _LINE_BREAKS, "linphonerc")
    if text != text.rstrip(" "):
        raise Rejected("linphonerc drops blanks at the end of a value and has no quoting")
    if len(text) > 16000:  # lpconfig.c reads lines of at most MAX_LEN = 16384 bytes
        raise Rejected(f"linphonerc lines hold at most 16384 bytes (value has {len(text)} characters)")
    return text


_XML_ESCAPES = {ord("&"): "&amp;", ord("<"): "&lt;", ord(">"): "&gt;", ord('"'): "&quot;", ord("'"): "&apos;",
                ord("\t"): "&#9;", ord("\n"): "&#10;", ord("\r"): "&#13;"}  # fmt: skip
# XML 1.0 §2.2 Char: no other C0 control, no surrogates, no U+FFFE/U+FFFF.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml(value: object) -> str:
    """Text for XML element content or a quoted attribute (markup and whitespace that parsers normalise escaped)."""
    text = _text(value, "xml")
    if _XML_FORBIDDEN.search(text):
        raise Rejected("XML 1.0 cannot carry control characters")
    return text.translate(_XML_ESCAPES)


def sip_escape(value: object) -> str:
    """The inside of a SIP quoted-string (RFC 3261 §25.1): ``\\`` and ``"`` as quoted-pairs."""
    text = _text(value, "sip_escape")
    _check_chars(text, _CONTROL_BUT_TAB, "a SIP display name")
    return text.replace("\\", "\\\\").replace('"', '\\"')


def sip_quote(value: object) -> str:
    """A SIP quoted-string (RFC 3261 §25.1), e.g. a display name: ``"Alice \\"Al\\" Example"``."""
    return f'"{sip_escape(value)}"'


def baresip_param(value: object) -> str:
    """A parameter value in a baresip 1.0 account line (``;name=value``).

    libre's ``msg_param_decode`` reads ``[~ \\t\\r\\n;]+``: up to a blank or
    ``;`` except inside double quotes, which it strips; a backslash skips the
    next character but stays in the value. It looks for ``;name=`` anywhere in
    the line, so a ``;`` inside any value could plant a parameter: refused, as
    are quotes and a final backslash (it would swallow the next ``;``).
    """
    text = _text(value, "baresip_param")
    _check_chars(text, _CONTROL_BUT_TAB + '";', "a baresip account line")
    if not text:
        raise Rejected("a baresip account parameter cannot be empty")
    if text.endswith("\\"):
        raise Rejected("a baresip account parameter cannot end with a backslash")
    return f'"{text}"' if re.search(r"[ \t]", text) else text


def baresip_conf(value: object) -> str:
    """A value in baresip's ``config`` (libre ``conf_get``: ``name value`` to the first blank, quotes stripped)."""
    text = _text(value, "baresip_conf")
    _check_chars(text, _CONTROL_BUT_TAB + '"', "baresip's config")
    if not text or text.endswith("\\"):
        raise Rejected("a baresip config value cannot be empty or end with a backslash")
    return f'"{text}"' if re.search(r"[ \t]", text) else text


def sip_hostport(value: object) -> str:
    """``host[:port]`` (a name, IPv4 or ``[IPv6]``) as a SIP URI carries it; anything else is refused."""
    text = _text(value, "sip_hostport")
    try:
        return str(parse_host_port(text))
    except ValueError as exc:
        raise Rejected(f"must be host[:port] (got {text!r})") from exc


#: The longest account line baresip 1.0 reads (``modules/account/account.c``: ``char buf[512]``).
BARESIP_MAX_ACCOUNT_LINE = 511


def baresip_account_line(block: object) -> str:
    """Join a ``{% filter %}`` block into one baresip account line (each line stripped), checked for length.

    Returns the line with its newline.
    """
    line = "".join(part.strip(" \t\r") for part in _text(block, "baresip_account_line").split("\n"))
    size = len(line.encode("utf-8"))
    if size > BARESIP_MAX_ACCOUNT_LINE:
        raise Rejected(f"baresip reads account lines of at most {BARESIP_MAX_ACCOUNT_LINE} bytes (this one: {size})")
    return line + "\n"


# --------------------------------------------------------------------------------------------- codecs


@dataclass(frozen=True)
class Codec:
    """One audio codec as each client names it (rows of :data:`CODECS`); None: the client lacks it."""

    name: str
    """The inventory's spelling, which the phonekit profile and phone use."""
    baresip: str | None
    """baresip 1.0 ``audio_codecs`` entry, name/sampling rate/channels (G.722: 16000)."""
    baresip_module: str | None
    linphone: tuple[str, int, int] | None
    """Linphone ``[audio_codec_N]`` mime, rate, channels: the RTP clock rate (G.722: 8000, RFC 3551 §4.5.2)."""
    microsip: str | None
    """MicroSIP ``audioCodecs`` entry (``mainDlg.cpp`` codec list)."""
    phonekit: bool = True


# Which codec each client has: the same support as provision.inventory.CODECS (a test holds them equal).
# Sources: baresip 1.0 modules g711, g722, gsm, opus (names as they register, in baresip's start-up log);
# liblinphone 5.1 with Debian's mediastreamer2 ("Supported codec ..." in linphonec's log); MicroSIP 3.20.5
# mainDlg.cpp; the pjsua2 wheel phonekit uses has no Opus.
CODECS: dict[str, Codec] = {
    c.name.lower(): c
    for c in (
        Codec("opus", "opus/48000/2", "opus.so", ("opus", 48000, 2), "opus/48000/2", phonekit=False),
        Codec("G722", "G722/16000/1", "g722.so", ("G722", 8000, 1), "G722/16000/1"),
        Codec("PCMA", "PCMA/8000/1", "g711.so", ("PCMA", 8000, 1), "PCMA/8000/1"),
        Codec("PCMU", "PCMU/8000/1", "g711.so", ("PCMU", 8000, 1), "PCMU/8000/1"),
        Codec("GSM", "GSM/8000/1", "gsm.so", ("GSM", 8000, 1), "GSM/8000/1"),
        Codec("iLBC", None, None, None, "iLBC/8000/1"),
        Codec("speex/8000", None, None, ("speex", 8000, 1), "speex/8000/1"),
        Codec("speex/16000", None, None, ("speex", 16000, 1), "speex/16000/1"),
        Codec("speex/32000", None, None, ("speex", 32000, 1), "speex/32000/1"),
    )
}


def codec_rows(names: object, client: str) -> list[Codec]:
    """The :class:`Codec` rows of a machine's codec names, in its order of preference, each one ``client`` has."""
    if not isinstance(names, list | tuple):
        raise Rejected(f"codec_rows needs a list of codec names (got a {type(names).__name__})")
    if client not in {c.value for c in Client}:
        raise Rejected(f"codec_rows needs a client name, one of {', '.join(c.value for c in Client)} (got {client!r})")
    rows = []
    for name in names:
        row = CODECS.get(str(name).lower())
        if row is None:
            raise Rejected(f"codec {name!r} is not one the templates know (known: {', '.join(CODECS_SPELLED)})")
        if not getattr(row, client):
            has = ", ".join(c.name for c in CODECS.values() if getattr(c, client))
            raise Rejected(f"codec {row.name!r} is not one {client} has (it has: {has})")
        rows.append(row)
    return rows


CODECS_SPELLED = tuple(c.name for c in CODECS.values())


def unique(items: object) -> list[Any]:
    """Items in first-seen order without repeats (e.g. baresip modules of several codecs)."""
    if not isinstance(items, list | tuple):
        raise Rejected(f"unique needs a list (got a {type(items).__name__})")
    return list(dict.fromkeys(items))


FILTERS: dict[str, Callable[..., Any]] = {
    "toml_str": toml_str,
    "toml_value": toml_value,
    "ini_value": ini_value,
    "lpc_value": lpc_value,
    "xml": xml,
    "sip_escape": sip_escape,
    "sip_quote": sip_quote,
    "sip_hostport": sip_hostport,
    "baresip_param": baresip_param,
    "baresip_conf": baresip_conf,
    "baresip_account_line": baresip_account_line,
    "codec_rows": codec_rows,
    "unique": unique,
}


# -------------------------------------------------------------------------------------- linphonerc parse


_C_SPACE = " \t\n\v\f\r"  # what C's sscanf("%s") stops at
_C_WORDS = re.compile(f"[{_C_SPACE}]+")


def parse_linphonerc(text: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Sections and entries of a linphonerc as liblinphone 5.1 reads it (``coreapi/lpconfig.c``).

    A line whose first non-blank is ``[`` opens a section (its name: the first
    word), ``#`` starts a comment, else ``key=value``: the key is the first word
    before ``=``, the value everything after it without trailing blanks; empty
    values are ignored and a repeated key or section continues the first.
    """
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.split("\n"):
        line = raw.lstrip(" ")
        if line.startswith("["):
            end = line.find("]")
            words = _C_WORDS.split(line[1:end].strip(_C_SPACE)) if end > 0 else []
            if words and words[0]:
                current = sections.setdefault(words[0], {})
            continue
        if line.startswith("#") or "=" not in line:
            continue
        key_part, value = line.split("=", 1)
        keys = _C_WORDS.split(key_part.strip(_C_SPACE))
        value = value.split("\r", 1)[0].rstrip(" ")
        if keys[0] and value and current is not None:
            current[keys[0]] = value
    return [(name, list(entries.items())) for name, entries in sections.items()]


# ---------------------------------------------------------------------------------------- dial plans


# Form of a dial plan → (function of provision.dialplan that renders a loaded plan in it, takes the allow list).
_DIALPLAN_FORMS = {
    "microsip": ("microsip_dial_plan", True),
    "linphone": ("linphone_dial", False),
    "phonekit_toml": ("phonekit_dialplan_toml", True),
}

_PlanKey = tuple[str, str]  # (dial_profile, barring_profile)


class _DialPlans:
    """Loaded dial plans and their client forms, from :mod:`provision.dialplan`, each computed once.

    10,000 machines share a handful of plans: a plan is loaded once per (dial profile, barring
    profile), a form computed once per plan and per-user allow list.
    """

    def __init__(self) -> None:
        self._plans: dict[_PlanKey, Any] = {}
        self._forms: dict[tuple[_PlanKey, tuple[str, ...], str], Any] = {}

    @staticmethod
    def _module() -> Any:
        try:
            return importlib.import_module("provision.dialplan")
        except ModuleNotFoundError as exc:
            if exc.name != "provision.dialplan":
                raise
            raise Rejected("dial plans need provision/dialplan.py, which is not installed") from exc

    def form(self, plan_key: _PlanKey, allow: tuple[str, ...], form: str) -> Any:
        function, takes_allow = _DIALPLAN_FORMS[form]
        key = (plan_key, allow if takes_allow else (), form)
        if key not in self._forms:
            module = self._module()
            if plan_key not in self._plans:
                dial, barring = plan_key
                self._plans[plan_key] = module.load_dialplan(dial, barring=barring or None)
            plan = self._plans[plan_key]
            render = getattr(module, function)
            self._forms[key] = render(plan, allow) if takes_allow else render(plan)
        return self._forms[key]

    def clear(self) -> None:
        self._plans.clear()
        self._forms.clear()


_DIALPLANS = _DialPlans()


class DialPlanView:
    """What templates see as ``dialplan``: the machine's dial plan in each client's form, computed on first use.

    The plan is the machine's ``dial_profile`` with the barring rules of its ``barring_profile``
    and its ``allow_numbers`` (``provision.dialplan.load_dialplan`` and the renderers there).
    """

    __slots__ = ("_allow", "_key", "name")

    def __init__(self, dial_profile: str, barring_profile: str, allow: tuple[str, ...]) -> None:
        self.name = dial_profile
        self._key = (dial_profile, barring_profile)
        self._allow = allow

    @property
    def microsip(self) -> str:
        """MicroSIP ``dialPlan`` (``provision.dialplan.microsip_dial_plan``)."""
        return str(_DIALPLANS.form(self._key, self._allow, "microsip"))

    @property
    def linphone(self) -> Mapping[str, Any]:
        """``dial_prefix`` and ``dial_escape_plus`` for Linphone's proxy section."""
        value = _DIALPLANS.form(self._key, self._allow, "linphone")
        assert isinstance(value, Mapping)
        return value

    @property
    def phonekit_toml(self) -> str:
        """The ``[dialplan]`` table of the phonekit profile."""
        return str(_DIALPLANS.form(self._key, self._allow, "phonekit_toml"))


# ------------------------------------------------------------------------------------------ rendering


class _Tracker:
    """Records whether the template being rendered revealed the password (directly or through derived data)."""

    __slots__ = ("revealed",)

    def __init__(self) -> None:
        self.revealed = False


class _PasswordView:
    """``password`` in templates: only ``reveal()`` opens it, and that marks the file secret."""

    __slots__ = ("_redact", "_secret", "_tracker")

    def __init__(self, secret: Secret, tracker: _Tracker, redact: bool) -> None:
        self._secret = secret
        self._tracker = tracker
        self._redact = redact

    def reveal(self) -> str:
        self._tracker.revealed = True
        return REDACTED if self._redact else self._secret.reveal()

    def __repr__(self) -> str:
        return REDACTED

    __str__ = __repr__


class _SecretSections:
    """Parsed sections of an earlier file that held the password: using them makes this file secret too."""

    __slots__ = ("_sections", "_tracker")

    def __init__(self, sections: list[tuple[str, list[tuple[str, str]]]], tracker: _Tracker) -> None:
        self._sections = sections
        self._tracker = tracker

    def __iter__(self) -> Iterator[tuple[str, list[tuple[str, str]]]]:
        self._tracker.revealed = True
        return iter(self._sections)


# Context that later templates of a client get from an earlier file: template → (variable, parser).
_DERIVED: dict[str, tuple[str, Callable[[str], list[tuple[str, list[tuple[str, str]]]]]]] = {
    "linphone/linphonerc.j2": ("linphonerc", parse_linphonerc),
}


@lru_cache(maxsize=16)
def _environment(site: Path | None) -> SandboxedEnvironment:
    packaged = jinja2.FileSystemLoader(str(PACKAGED_TEMPLATES))
    loaders: list[jinja2.BaseLoader] = [packaged, jinja2.PrefixLoader({"builtin": packaged}, delimiter=":")]
    if site is not None:
        loaders.insert(0, jinja2.FileSystemLoader(str(site)))
    env = SandboxedEnvironment(
        loader=jinja2.ChoiceLoader(loaders),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # no stat() per file: 10,000 machines render from memory
        cache_size=400,
    )
    env.filters.update(FILTERS)
    return env


def clear_caches() -> None:
    """Forget compiled templates, site folder listings and loaded dial plans (after editing them)."""
    _environment.cache_clear()
    _plan.cache_clear()
    _DIALPLANS.clear()


def _roots(site: Path | None) -> list[Path]:
    return [site, PACKAGED_TEMPLATES] if site is not None else [PACKAGED_TEMPLATES]


def _template_name(filename: str, roots: Sequence[Path]) -> str:
    path = Path(filename)
    for root in roots:
        if path.is_relative_to(root):
            return path.relative_to(root).as_posix()
    return filename


def _failure(exc: Exception, name: str, roots: Sequence[Path], machine: Machine | None) -> TemplateFailure:
    """Where in which template ``exc`` happened (the innermost template frame), and what it was."""
    if isinstance(exc, jinja2.TemplateSyntaxError):
        template = exc.name or (_template_name(exc.filename, roots) if exc.filename else name)
        return TemplateFailure(template, exc.lineno, f"syntax error: {exc.message}")
    if isinstance(exc, jinja2.TemplateNotFound):
        return TemplateFailure(name, None, f"template '{exc.name}' not found (looked in {', '.join(map(str, roots))})")
    template, line = name, None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.endswith(".j2") or any(frame.filename.startswith(str(r)) for r in roots):
            template, line = _template_name(frame.filename, roots), frame.lineno
    known = isinstance(exc, jinja2.TemplateError | Rejected | UsageError)
    detail = str(exc) if known else f"{type(exc).__name__}: {exc}"
    # Template bugs are the same for every machine; bad values belong to one.
    owner = machine if isinstance(exc, Rejected | UsageError) else None
    return TemplateFailure(template, line, detail, owner)


@lru_cache(maxsize=64)
def _plan(site: Path | None, client: Client) -> tuple[tuple[str, str], ...]:
    """(template, output path) of every file ``client`` gets: CLIENT_FILES, then what the site folder adds.

    Read once per process like the templates themselves (the caller renders one client at a time).
    """
    plan = CLIENT_FILES[client]
    folder = site / client.value if site is not None else None
    if folder is None or not folder.is_dir():
        return plan
    known = {name for name, _ in plan}
    first_output = PurePosixPath(plan[0][1])
    extras = []
    for path in sorted(folder.rglob("*.j2")):
        relative = path.relative_to(folder)
        template = f"{client.value}/{relative.as_posix()}"
        if template in known or any(part.startswith("_") for part in relative.parts):
            continue
        extras.append((template, str(first_output.parent / relative.with_suffix(""))))
    return plan + tuple(extras)


@lru_cache(maxsize=1)
def _generator() -> str:
    return f"phonekit {phonekit_version()}"  # reads package metadata: once, not per machine


def _base_context(machine: Machine) -> dict[str, Any]:
    context = machine.context()
    context.update(
        aor=f"sip:{machine.extension}@{machine.domain}",
        register_interval_s=REGISTER_INTERVAL_S,
        generator=_generator(),
        dialplan=DialPlanView(machine.dial_profile, machine.barring_profile, tuple(machine.allow_numbers)),
    )
    return context


def render_machine(
    machine: Machine,
    clients: Sequence[Client] | None = None,
    site_templates: Path | None = None,
    redact: bool = False,
) -> list[RenderedFile]:
    """The files of ``clients`` (default: the machine's own) for ``machine``, in :data:`CLIENT_FILES` order.

    Raises :class:`TemplateFailure` (a :class:`~diagnostics.errors.UsageError`)
    naming the template and line of a missing variable, a syntax error or a
    value a format cannot carry.
    """
    site = site_templates.resolve() if site_templates is not None else None
    if site is not None and not site.is_dir():
        raise UsageError(f"{site_templates}: site template folder does not exist")
    env = _environment(site)
    roots = _roots(site)
    base = _base_context(machine)
    files: list[RenderedFile] = []
    seen: dict[str, str] = {}
    for client in machine.clients if clients is None else clients:
        tracker = _Tracker()
        context = dict(base, password=_PasswordView(machine.password, tracker, redact))
        for name, output in _plan(site, client):
            if output in seen:
                raise TemplateFailure(name, None, f"writes {output!r}, which {seen[output]!r} already writes")
            seen[output] = name
            tracker.revealed = False
            try:
                content = env.get_template(name).render(context)
            except (jinja2.TemplateError, Rejected, UsageError, TypeError, ValueError) as exc:
                raise _failure(exc, name, roots, machine) from exc
            secret = tracker.revealed or (not redact and bool(machine.password) and
                                          machine.password.reveal() in content)  # fmt: skip
            encoding, newline = _FILE_FORMATS.get(name, ("utf-8", "\n"))
            files.append(RenderedFile(output, content, secret, encoding, newline))
            if name in _DERIVED:
                variable, parse = _DERIVED[name]
                sections = parse(content)
                context[variable] = _SecretSections(sections, tracker) if secret else sections
    return files
