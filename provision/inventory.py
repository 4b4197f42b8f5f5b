"""The inventory: which workstations to provision, read from CSV or TOML and validated row by row.

Both forms are read as a stream: one machine at a time is parsed, checked and handed on, so 10,000
machines cost no more memory than ten, except the keys that find duplicates (hostname; domain and
extension). Every error is one line naming the file, the row and the field, e.g.
``fleet.csv row 14: field 'extension' must be digits (got '10a2')``.

TOML inventory::

    [site]                        # defaults for every machine
    domain = "example.com"
    registrar = "sip.example.com:5061"
    transport = "tls"
    clients = ["phonekit", "baresip"]

    [groups.sales]                # overrides for the machines whose group is "sales"
    codecs = ["opus", "G722", "PCMA"]
    clients = ["linphone", "baresip"]

    [[machines]]                  # one table per machine: machines[0], machines[1], ...
    hostname = "ws-001"
    user = "alice"
    display_name = "Alice Example"
    extension = "1001"
    group = "sales"

``[site]`` and ``[groups.*]`` come before the first ``[[machines]]`` (each ``[[machines]]`` header on
a line of its own): the reader parses one machine table at a time. Values are strings, list fields
are arrays of strings; an empty string unsets an optional field the site or group set.

CSV inventory: a header row names the fields (any order, any case), then one row per machine. The
delimiter is the one the header uses (``,``, ``;`` or tab); list fields separate their items with
``;`` or ``|`` (only ``|`` when ``;`` delimits the columns). Empty cells take the group's or site's
value. Lines starting with ``#`` and blank lines are skipped; a UTF-8 byte order mark is allowed.
Site defaults and groups come from a TOML file given alongside (``--site FILE``: ``[site]`` and
``[groups.*]`` as above, no machines); a TOML inventory may take its defaults from ``--site`` too, but
not from both places.

A machine's value wins over its group's, the group's over the site's, the site's over the model's
defaults (:class:`provision.model.Machine`). ``hostname``, ``user``, ``display_name``, ``extension``
and ``auth_user`` belong to one machine and cannot be defaults; ``group`` may be a site default.
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import io
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from diagnostics.errors import UsageError
from diagnostics.profile import Transport, parse_host_port
from diagnostics.secret import Secret
from provision.dialplan import DialPlan, check_allow, load_dialplan
from provision.model import Client, Machine, SrtpMode

__all__ = [
    "CODECS",
    "FIELDS",
    "MAX_ERRORS",
    "Entry",
    "Field",
    "Inventory",
    "InventoryError",
    "Scan",
    "Validation",
    "is_hostname",
    "open_inventory",
    "validate",
]

MAX_ERRORS = 20
"""How many errors a run shows before it only counts the rest."""

_ALL_CLIENTS = frozenset(Client)
_PJSIP = frozenset({Client.PHONEKIT, Client.MICROSIP})

# Codec name as written in an inventory (matched without regard to case) → the clients that carry it.
# phonekit: the pjsua2 wheel (speex 8/16/32 kHz, iLBC, GSM, G.711, G.722; no Opus). linphone:
# Debian's mediastreamer2 (Opus, Speex, GSM, G.711, G.722; iLBC only with a plugin). baresip 1.0:
# its g711, g722, gsm and opus modules (speex and ilbc were dropped). MicroSIP: pjsip with Opus.
CODECS: dict[str, frozenset[Client]] = {
    "opus": frozenset({Client.LINPHONE, Client.BARESIP, Client.MICROSIP}),
    "G722": _ALL_CLIENTS,
    "PCMA": _ALL_CLIENTS,
    "PCMU": _ALL_CLIENTS,
    "GSM": _ALL_CLIENTS,
    "iLBC": _PJSIP,
    "speex/8000": _PJSIP | {Client.LINPHONE},
    "speex/16000": _PJSIP | {Client.LINPHONE},
    "speex/32000": _PJSIP | {Client.LINPHONE},
}
_CODEC_NAMES = {name.lower(): name for name in CODECS}

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
_LOGIN = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")
_DIGITS = re.compile(r"^[0-9]{1,32}$")
_DIAL = re.compile(r"^[0-9*#+]{1,32}$")
_NUMBER = re.compile(r"^\+?[0-9]{1,32}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SIP_USER = re.compile(r"^[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MACHINES_HEADER = re.compile(r"^\s*\[\[\s*machines\s*\]\]\s*(?:#.*)?$")
_TOML_AT = re.compile(r"\(at line (\d+), column (\d+)\)$")


class InventoryError(UsageError):
    """The inventory (or its site file) is wrong; ``errors`` holds the first lines, ``count`` all of them."""

    def __init__(self, errors: Sequence[str], count: int | None = None) -> None:
        self.errors = tuple(errors)
        self.count = len(self.errors) if count is None else count
        more = self.count - len(self.errors)
        super().__init__("\n".join(self.errors) + (f"\n... and {more} more errors" if more > 0 else ""))


@dataclass(frozen=True)
class _Ctx:
    """What a value parser may need besides the text: where relative paths start."""

    base: Path


def _text(text: str, ctx: _Ctx) -> str:
    if _CONTROL.search(text):
        raise ValueError("must not contain control characters")
    return text


def _display(text: str, ctx: _Ctx) -> str:
    # Goes into a quoted SIP display-name and key=value config lines: no quotes, backslashes, line breaks.
    if _CONTROL.search(text) or '"' in text or "\\" in text:
        raise ValueError("must not contain '\"', '\\' or control characters")
    return text


def _pattern(regex: re.Pattern[str], why: str) -> Callable[[str, _Ctx], str]:
    def parse(text: str, ctx: _Ctx) -> str:
        if not regex.match(text):
            raise ValueError(why)
        return text

    return parse


def is_hostname(text: str) -> bool:
    """A host name as RFC 1123 allows it: labels of letters, digits and '-', joined by '.'."""
    return bool(_HOSTNAME.match(text))


def _domain(text: str, ctx: _Ctx) -> str:
    try:
        where = parse_host_port(text)
    except ValueError:
        where = None
    if where is None or where.port is not None or (":" not in where.host and not is_hostname(where.host)):
        raise ValueError("must be a domain name without a port")
    return str(where)


def _host_port(text: str, ctx: _Ctx) -> str:
    try:
        where = parse_host_port(text)
    except ValueError as exc:
        raise ValueError("must be host[:port] with a port 1..65535") from exc
    if ":" not in where.host and not is_hostname(where.host):
        raise ValueError("must be host[:port] with a port 1..65535")
    return str(where)


def _choice(kind: type[StrEnum]) -> Callable[[str, _Ctx], StrEnum]:
    names = [member.value for member in kind]
    why = "must be " + ", ".join(names[:-1]) + " or " + names[-1]

    def parse(text: str, ctx: _Ctx) -> StrEnum:
        try:
            return kind(text.lower())
        except ValueError as exc:
            raise ValueError(why) from exc

    return parse


def _codec(text: str, ctx: _Ctx) -> str:
    name = _CODEC_NAMES.get(text.lower())
    if name is None:
        raise ValueError(f"has {text!r}, not one of {', '.join(CODECS)}")
    return name


def _client(text: str, ctx: _Ctx) -> Client:
    try:
        return Client(text.lower())
    except ValueError as exc:
        raise ValueError(f"has {text!r}, not one of {', '.join(Client)}") from exc


def _profile_ref(text: str, ctx: _Ctx) -> str:
    """A built-in profile's name, or a file (relative to the file that names it), stored as an absolute path."""
    if "/" not in text and not text.endswith(".toml"):
        if not _NAME.match(text):
            raise ValueError("must be a profile name (letters, digits, '.', '_', '-') or a .toml file")
        return text
    path = (ctx.base / text).resolve()
    if not path.is_file():
        raise ValueError("names no file")
    return str(path)


@dataclass(frozen=True)
class Field:
    """One inventory field: how a value is read, and where it may be given."""

    name: str
    parse: Callable[[str, _Ctx], object]
    """Reads one text value (one item for a list field); raises ValueError('must be …')."""
    required: bool = False
    is_list: bool = False
    shared: bool = True
    """May be a [site] or [groups.*] default (False: belongs to one machine)."""
    empty_ok: bool = False
    """An empty value is allowed and means 'not set'."""
    doc: str = ""


# In the model's order. Enums and lists are parsed here; cross-field rules are in Inventory._check.
FIELDS: tuple[Field, ...] = (
    Field("hostname", _pattern(_HOSTNAME, "must be a host name: letters, digits, '-' and '.'"), required=True,
          shared=False, doc="the workstation; its files go to OUT/<hostname>/ (unique, without regard to case)"),
    Field("user", _pattern(_LOGIN, "must be a login name: letters, digits, '.', '_', '-', '@'"), required=True,
          shared=False, doc="the person's login name"),
    Field("display_name", _display, required=True, shared=False, doc="shown to the called party"),
    Field("extension", _pattern(_DIGITS, "must be digits"), required=True, shared=False,
          doc="SIP user and number; unique per domain"),
    Field("domain", _domain, required=True, doc="SIP domain"),
    Field("registrar", _host_port, required=True, doc="host[:port] of the registrar/proxy"),
    Field("transport", _choice(Transport), doc="udp, tcp or tls (default udp)"),
    Field("srtp", _choice(SrtpMode), doc="disabled, optional or mandatory (default disabled)"),
    Field("codecs", _codec, is_list=True, doc="in order of preference, from CODECS (default G722, PCMA, PCMU)"),
    Field("stun_server", _host_port, empty_ok=True, doc="host[:port]"),
    Field("echo_extension", _pattern(_DIAL, "must be digits, '*', '#' or '+'"), empty_ok=True,
          doc="a number that answers and echoes"),
    Field("dial_profile", _profile_ref, doc="built-in dial plan name or .toml file (default de-default)"),
    Field("barring_profile", _profile_ref, doc="built-in barring profile name or .toml file (default de-default)"),
    Field("allow_numbers", _pattern(_NUMBER, "must hold numbers or prefixes: digits with an optional leading '+'"),
          is_list=True, empty_ok=True, doc="exceptions to the barring profile"),
    Field("input_device", _text, empty_ok=True, doc="capture device: index or name substring"),
    Field("output_device", _text, empty_ok=True, doc="playback device: index or name substring"),
    Field("clients", _client, is_list=True, doc="phonekit, linphone, baresip, microsip (default phonekit)"),
    Field("group", _pattern(_NAME, "must be a group name: letters, digits, '.', '_', '-'"), empty_ok=True,
          doc="a [groups.<name>] whose values apply"),
    Field("auth_user", _pattern(_SIP_USER, "has characters a SIP URI cannot carry unescaped"), shared=False,
          empty_ok=True, doc="digest user name, when it differs from the extension"),
)
_BY_NAME = {f.name: f for f in FIELDS}
_MODEL_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(Machine) if f.default is not dataclasses.MISSING
}


@dataclass(frozen=True)
class _Value:
    parsed: Any
    shown: str
    """The value as the user wrote it (repr), for messages."""


def _effective(values: Mapping[str, _Value], name: str) -> Any:
    """A field's value after defaults: the machine's, group's or site's, else the model's."""
    return values[name].parsed if name in values else _MODEL_DEFAULTS[name]


@dataclass(frozen=True)
class Entry:
    """One machine of the inventory: a valid Machine, or the errors that stop it."""

    row: int
    where: str
    machine: Machine | None
    errors: tuple[str, ...] = ()


def _unknown(name: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    return f"unknown field {name!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


class _Source:
    """How values of one file are written: typed TOML, or text cells with list separators."""

    def __init__(self, base: Path, typed: bool, list_separators: str = ";|") -> None:
        self.ctx = _Ctx(base)
        self.typed = typed
        self._split = re.compile("[" + re.escape(list_separators) + "]")

    def parse(self, f: Field, raw: object) -> _Value:
        """One field's value; raises ValueError(why) with the reason, the caller adds where and what."""
        shown = repr(raw)
        if f.is_list:
            if self.typed:
                if not isinstance(raw, list) or not all(isinstance(item, str) for item in raw):
                    raise ValueError("must be an array of strings, e.g. [\"a\", \"b\"]")
                items = [item.strip() for item in raw]
            else:
                assert isinstance(raw, str)
                items = [item.strip() for item in self._split.split(raw) if item.strip()]
            if not items and not f.empty_ok:
                raise ValueError("must not be empty")
            parsed = tuple(f.parse(item, self.ctx) for item in items)
            seen: set[object] = set()
            for item, value in zip(items, parsed, strict=True):
                if value in seen:
                    raise ValueError(f"lists {item!r} twice")
                seen.add(value)
            return _Value(parsed, shown)
        if not isinstance(raw, str):
            example = f'"{raw}"' if isinstance(raw, int) else '"…"'
            raise ValueError(f"must be a string, e.g. {example}")
        text = raw.strip()
        if not text:
            if not f.empty_ok:
                raise ValueError("must not be empty")
            return _Value("", shown)
        return _Value(f.parse(text, self.ctx), shown)


@dataclass(frozen=True)
class _Defaults:
    site: dict[str, _Value]
    groups: dict[str, dict[str, _Value]]
    path: Path | None
    """The file they came from (None: no defaults)."""


def _read_defaults(path: Path, data: Mapping[str, Any], where_prefix: str) -> tuple[_Defaults, list[str]]:
    """[site] and [groups.*] of a TOML document, each value checked."""
    errors: list[str] = []
    source = _Source(path.parent, typed=True)

    def table(values: object, where: str, allow_group: bool) -> dict[str, _Value]:
        out: dict[str, _Value] = {}
        if not isinstance(values, dict):
            errors.append(f"{where}: must be a table")
            return out
        for name, raw in values.items():
            f = _BY_NAME.get(name)
            if f is None:
                errors.append(f"{where}: {_unknown(name, list(_BY_NAME))}")
            elif not f.shared or (name == "group" and not allow_group):
                errors.append(f"{where}: field {name!r} belongs to each machine, not to a default")
            else:
                try:
                    out[name] = source.parse(f, raw)
                except ValueError as exc:
                    errors.append(f"{where}: field {name!r} {exc} (got {raw!r})")
        return out

    site = table(data.get("site", {}), f"{where_prefix} [site]", allow_group=True)
    groups: dict[str, dict[str, _Value]] = {}
    raw_groups = data.get("groups", {})
    if not isinstance(raw_groups, dict):
        errors.append(f"{where_prefix} [groups]: must hold tables [groups.<name>]")
    else:
        for name, values in raw_groups.items():
            if not _NAME.match(name):
                errors.append(f"{where_prefix} [groups.{name}]: must be a group name: letters, digits, '.', '_', '-'")
            groups[name] = table(values, f"{where_prefix} [groups.{name}]", allow_group=False)
    if "group" in site and site["group"].parsed and site["group"].parsed not in groups:
        errors.append(f"{where_prefix} [site]: field 'group' names no [groups.<name>] (got {site['group'].shown})")
    return _Defaults(site, groups, path), errors


def _load_toml(path: Path, text: str, line_offset: int = 0) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = _TOML_AT.sub(lambda m: f"(at line {int(m[1]) + line_offset}, column {m[2]})", str(exc))
        raise UsageError(f"{path}: not valid TOML: {message}") from exc


def _read_text(path: Path, what: str) -> io.TextIOWrapper:
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except FileNotFoundError as exc:
        raise UsageError(f"{path}: no such {what} file") from exc
    except IsADirectoryError as exc:
        raise UsageError(f"{path}: is a folder, not a file") from exc
    except OSError as exc:
        raise UsageError(f"{path}: cannot read the {what} file ({exc.strerror})") from exc


def _lines(handle: io.TextIOWrapper, path: Path) -> Iterator[str]:
    try:
        yield from handle
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text ({exc.reason})") from exc


@dataclass(frozen=True)
class _Record:
    row: int
    values: dict[str, object]
    errors: tuple[str, ...] = ()


class Scan:
    """One pass over the machines. Iterate it for :class:`Entry` records in file order; afterwards it
    knows every hostname (lower case → row) and the counts."""

    def __init__(self, inventory: Inventory) -> None:
        self._inventory = inventory
        self.hostnames: dict[str, int] = {}
        self.extensions: dict[str, int] = {}
        """'extension@domain' (domain in lower case) → row."""
        self.machine_count = 0
        self.error_count = 0

    def __iter__(self) -> Iterator[Entry]:
        inv = self._inventory
        for record in inv._records():
            where = inv.where(record.row)
            errors = [f"{where}: {e}" for e in record.errors]
            machine = None
            if not errors:
                machine, problems = inv._machine(record)
                errors = [f"{where}: {p}" for p in problems]
                if machine is not None:
                    errors += [f"{where}: {p}" for p in self._duplicates(machine)]
            if errors:
                self.error_count += len(errors)
                machine = None
            else:
                self.machine_count += 1
            yield Entry(record.row, where, machine, tuple(errors))

    def _duplicates(self, machine: Machine) -> list[str]:
        inv = self._inventory
        problems = []
        first = self.hostnames.setdefault(machine.hostname.lower(), machine.row)
        if first != machine.row:
            problems.append(f"field 'hostname' duplicates {inv.row_name(first)} (got {machine.hostname!r})")
        first = self.extensions.setdefault(f"{machine.extension}@{machine.domain.lower()}", machine.row)
        if first != machine.row:
            problems.append(
                f"field 'extension' duplicates {inv.row_name(first)} in domain {machine.domain!r} "
                f"(got {machine.extension!r})"
            )
        return problems


@dataclass(frozen=True)
class Validation:
    """What one validating pass found."""

    inventory: Path
    machines: int
    errors: tuple[str, ...]
    """The first ``max_errors`` errors, one line each."""
    error_count: int
    hostnames: frozenset[str]
    """Every valid machine's hostname, in lower case."""

    @property
    def ok(self) -> bool:
        return self.error_count == 0


class Inventory:
    """An opened inventory: its format, defaults and groups are read; machines are read on demand.

    Use :meth:`scan` for one validating pass (errors as data) and :meth:`machines` for a pass that
    expects a validated, unchanged file. Each pass reads the file again: nothing per machine is kept.
    """

    def __init__(self, path: Path, site: Path | None = None) -> None:
        self.path = path
        suffix = path.suffix.lower()
        if suffix in {".yaml", ".yml"}:
            raise UsageError(f"{path}: YAML inventories are not supported: use CSV or TOML")
        if suffix not in {".csv", ".toml"}:
            raise UsageError(f"{path}: an inventory ends in .csv or .toml (got {path.suffix!r})")
        self.format = suffix[1:]
        self._inline_machines: list[Any] | None = None
        self._source = _Source(path.parent, typed=self.format == "toml")
        self._dialplans: dict[tuple[str, str], tuple[DialPlan | None, str]] = {}
        errors: list[str] = []
        defaults = _Defaults({}, {}, None)
        if site is not None:
            with _read_text(site, "site") as handle:
                data = _load_toml(site, "".join(_lines(handle, site)))
            extra = sorted(set(data) - {"site", "groups"})
            if extra:
                raise UsageError(f"{site}: a site file holds [site] and [groups.<name>] only (got [{extra[0]}])")
            defaults, errors = _read_defaults(site, data, str(site))
        if self.format == "toml":
            header = self._toml_header()
            if site is not None and ({"site", "groups"} & set(header)):
                raise UsageError(f"{path}: has [site] or [groups] and --site was given: keep the defaults in one place")
            if site is None:
                defaults, errors = _read_defaults(path, header, str(path))
        self.defaults = defaults
        if errors:
            raise InventoryError(errors[:MAX_ERRORS], len(errors))
        self._stat = self._identity()

    # -- where -------------------------------------------------------------------------------------

    def row_name(self, row: int) -> str:
        return f"row {row}" if self.format == "csv" else f"machines[{row}]"

    def where(self, row: int) -> str:
        """How a message names a machine: ``fleet.csv row 14`` (the line as an editor shows it) or
        ``fleet.toml machines[3]`` (counted from 0, as a TOML or JSON path)."""
        return f"{self.path} {self.row_name(row)}"

    # -- passes ------------------------------------------------------------------------------------

    def scan(self) -> Scan:
        return Scan(self)

    def machines(self) -> Iterator[Machine]:
        """Every machine of an inventory that :func:`validate` passed; raises if it changed since."""
        if self._identity() != self._stat:
            raise UsageError(f"{self.path}: changed while phonekit was using it: run again")
        for entry in self.scan():
            if entry.machine is None:
                raise InventoryError(entry.errors)
            yield entry.machine

    def _identity(self) -> tuple[int, int, int]:
        try:
            st = self.path.stat()
        except FileNotFoundError as exc:
            raise UsageError(f"{self.path}: no such inventory file") from exc
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot read the inventory file ({exc.strerror})") from exc
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _records(self) -> Iterator[_Record]:
        yield from (self._csv_records() if self.format == "csv" else self._toml_records())

    # -- TOML --------------------------------------------------------------------------------------

    def _toml_header(self) -> dict[str, Any]:
        """The part before the first [[machines]]: defaults (and machines written inline, if any)."""
        lines: list[str] = []
        with _read_text(self.path, "inventory") as handle:
            for line in _lines(handle, self.path):
                if _MACHINES_HEADER.match(line):
                    break
                lines.append(line)
        data = _load_toml(self.path, "".join(lines))
        extra = sorted(set(data) - {"site", "groups", "machines"})
        if extra:
            raise UsageError(f"{self.path}: unknown table [{extra[0]}] (known: site, groups, machines)")
        if "machines" in data:
            if not isinstance(data["machines"], list):
                raise UsageError(f"{self.path}: 'machines' must be an array of tables [[machines]]")
            self._inline_machines = data["machines"]
        return data

    def _toml_records(self) -> Iterator[_Record]:
        if self._inline_machines is not None:
            for index, values in enumerate(self._inline_machines):
                if isinstance(values, dict):
                    yield _Record(index, values)
                else:
                    yield _Record(index, {}, ("must be a table",))
        index = -1
        chunk: list[str] = []
        start = 0

        def record() -> _Record:
            try:
                data = _load_toml(self.path, "".join(chunk), line_offset=start)
            except UsageError as exc:
                text = str(exc).removeprefix(f"{self.path}: ")
                return _Record(index, {}, (text,))
            tables = [k for k, v in data.items() if isinstance(v, dict)]
            if tables:
                return _Record(index, {}, (f"[{tables[0]}] must come before the first [[machines]]",))
            return _Record(index, data)

        with _read_text(self.path, "inventory") as handle:
            for number, line in enumerate(_lines(handle, self.path), start=1):
                if _MACHINES_HEADER.match(line):
                    if index >= 0:
                        yield record()
                    index, chunk, start = index + 1, [], number
                elif index >= 0:
                    chunk.append(line)
        if index >= 0:
            yield record()

    # -- CSV ---------------------------------------------------------------------------------------

    def _csv_records(self) -> Iterator[_Record]:
        with _read_text(self.path, "inventory") as handle:
            lines = _lines(handle, self.path)
            number = 0
            header_line = ""
            for line in lines:
                number += 1
                if line.strip() and not line.lstrip().startswith("#"):
                    header_line = line
                    break
            if not header_line:
                raise InventoryError([f"{self.path}: no header row (the first row names the fields)"])
            counts = {d: header_line.count(d) for d in ",;\t"}
            delimiter = max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","
            header = self._csv_fields(next(csv.reader([header_line], delimiter=delimiter)), number)
            source_separators = "|" if delimiter == ";" else ";|"
            self._source = _Source(self.path.parent, typed=False, list_separators=source_separators)
            offset = number
            reader = csv.reader(lines, delimiter=delimiter, strict=True)
            while True:
                start = offset + reader.line_num + 1
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise InventoryError([f"{self.path} row {start}: not valid CSV ({exc})"]) from exc
                if not any(cell.strip() for cell in cells) or cells[0].lstrip().startswith("#"):
                    continue
                if len(cells) > len(header):
                    yield _Record(start, {}, (f"has {len(cells)} values but the header names {len(header)} fields",))
                    continue
                yield _Record(start, {name: cell for name, cell in zip(header, cells, strict=False) if cell.strip()})

    def _csv_fields(self, names: list[str], line: int) -> tuple[str, ...]:
        fields = tuple(name.strip().lower() for name in names)
        errors = []
        for column, name in enumerate(fields, start=1):
            if name not in _BY_NAME:
                errors.append(f"{self.path} row {line}: {_unknown(name, list(_BY_NAME))}")
            elif fields.index(name) + 1 != column:
                errors.append(
                    f"{self.path} row {line}: field {name!r} appears twice (columns {fields.index(name) + 1} "
                    f"and {column})"
                )
        if errors:
            raise InventoryError(errors[:MAX_ERRORS], len(errors))
        return fields

    # -- one machine -------------------------------------------------------------------------------

    def _machine(self, record: _Record) -> tuple[Machine | None, list[str]]:
        """A machine from one record and the defaults; or the problems (without the where)."""
        source = self._source
        problems: list[str] = []
        own: dict[str, _Value] = {}
        for name, raw in record.values.items():
            f = _BY_NAME.get(name)
            if f is None:
                problems.append(_unknown(name, list(_BY_NAME)))
                continue
            try:
                own[name] = source.parse(f, raw)
            except ValueError as exc:
                problems.append(f"field {name!r} {exc} (got {raw!r})")
        site, groups = self.defaults.site, self.defaults.groups
        group_value = own.get("group") or site.get("group")
        group: dict[str, _Value] = {}
        if group_value is not None and group_value.parsed:
            if group_value.parsed in groups:
                group = groups[group_value.parsed]
            elif groups:
                problems.append(
                    f"field 'group' names no [groups.<name>] (known: {', '.join(sorted(groups))}) "
                    f"(got {group_value.shown})"
                )
        values = {**site, **group, **own}
        for f in FIELDS:
            if f.required and f.name not in values and f.name not in record.values:
                problems.append(f"field {f.name!r} is missing")
        if problems:
            return None, problems
        problems = self._check(values)
        if problems:
            return None, problems
        kwargs = {name: value.parsed for name, value in values.items()}
        return Machine(**kwargs, password=Secret(""), row=record.row), []

    def _check(self, values: Mapping[str, _Value]) -> list[str]:
        """Rules across fields, on the values after defaults."""
        problems = []
        clients, codecs = _effective(values, "clients"), _effective(values, "codecs")
        for codec in codecs:
            missing = [c for c in clients if c not in CODECS[codec]]
            if missing:
                shown = values["codecs"].shown if "codecs" in values else repr(", ".join(codecs))
                problems.append(f"field 'codecs' has {codec!r}, which client {missing[0].value!r} does not support "
                                f"(got {shown})")
                break
        problems += self._dial_problems(values)
        return problems

    def _dial_problems(self, values: Mapping[str, _Value]) -> list[str]:
        """The dial plan and barring profile load together, and the allow entries are numbers of that plan."""
        dial, barring = _effective(values, "dial_profile"), _effective(values, "barring_profile")
        key = (dial, barring)
        if key not in self._dialplans:
            plan: DialPlan | None = None
            problem = ""
            try:
                load_dialplan(dial)
            except UsageError as exc:
                problem = f"field 'dial_profile' does not load: {exc} (got {dial!r})"
            else:
                try:
                    plan = load_dialplan(dial, barring=barring)
                except UsageError as exc:
                    problem = f"field 'barring_profile' does not load: {exc} (got {barring!r})"
            self._dialplans[key] = (plan, problem)
        plan, problem = self._dialplans[key]
        if plan is None:
            return [problem]
        allow = values.get("allow_numbers")
        if allow is not None:
            try:
                check_allow(allow.parsed, plan)
            except ValueError as exc:
                return [f"field 'allow_numbers' {exc}"]
        return []


def open_inventory(path: Path, site: Path | None = None) -> Inventory:
    """Open an inventory (reads its defaults and groups; machines are read by each pass)."""
    return Inventory(path, site)


def validate(inventory: Inventory, max_errors: int = MAX_ERRORS) -> Validation:
    """One streaming pass: every machine checked, the first ``max_errors`` errors kept, all counted."""
    scan = inventory.scan()
    errors: list[str] = []
    for entry in scan:
        if entry.errors and len(errors) < max_errors:
            errors.extend(entry.errors[: max_errors - len(errors)])
    if scan.machine_count == 0 and scan.error_count == 0:
        errors.append(f"{inventory.path}: lists no machines")
        scan.error_count = 1
    return Validation(inventory.path, scan.machine_count, tuple(errors), scan.error_count,
                      frozenset(scan.hostnames))

