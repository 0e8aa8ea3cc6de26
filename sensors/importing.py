"""Reading and checking a CSV of devices to register (``manage.py import_devices``).

Plain functions: ``read_rows`` parses text, ``load_directory`` reads what the
file is checked against (one query per table), ``plan_import`` checks every
row and returns a plan with every problem found. Nothing here writes; the plan
is applied by ``sensors.services.devices_import``.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.core.exceptions import ValidationError
from django.utils.text import slugify

from farm.models import Farm, Field
from sensors import selectors
from sensors.models import Device, DeviceKind, normalize_uid, validate_uid

COLUMNS = ("farm", "field", "uid", "name", "kind")
NAME_MAX = Device._meta.get_field("name").max_length or 120
FARM_SLUG_MAX = Farm._meta.get_field("slug").max_length or 60
FIELD_SLUG_MAX = Field._meta.get_field("slug").max_length or 60


class ImportFileError(Exception):
    """The file cannot be read as a device CSV at all (no header, wrong encoding, broken quoting)."""


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class CsvRow:
    line: int
    farm: str
    field: str
    uid: str
    name: str
    kind: str


@dataclass(frozen=True, slots=True)
class PlannedDevice:
    line: int
    uid: str
    name: str
    farm_slug: str
    field_slug: str | None
    kind: DeviceKind
    existing: Device | None = None  # with --update: the registered device this row changes


@dataclass(slots=True)
class ImportPlan:
    devices: list[PlannedDevice] = field(default_factory=list)
    new_farms: dict[str, str] = field(default_factory=dict)  # slug → name
    new_fields: dict[tuple[str, str], str] = field(default_factory=dict)  # (farm slug, field slug) → name
    errors: list[RowError] = field(default_factory=list)

    @property
    def sensor_count(self) -> int:
        return sum(len(device.kind.metrics.all()) for device in self.devices if device.existing is None)

    @property
    def new_devices(self) -> list[PlannedDevice]:
        return [device for device in self.devices if device.existing is None]

    @property
    def updated_devices(self) -> list[PlannedDevice]:
        return [device for device in self.devices if device.existing is not None]


@dataclass(slots=True)
class Directory:
    """Farms, fields, kinds and registered uids, indexed for lookups by slug or name."""

    farms: list[Farm]
    fields: list[Field]
    kinds: list[DeviceKind]
    registered: dict[str, Device]
    farm_by_slug: dict[str, Farm] = field(init=False)
    farms_by_name: dict[str, list[Farm]] = field(init=False)
    fields_by_farm: dict[int, list[Field]] = field(init=False)

    def __post_init__(self) -> None:
        self.farm_by_slug = {farm.slug: farm for farm in self.farms}
        self.farms_by_name = defaultdict(list)
        for farm in self.farms:
            self.farms_by_name[farm.name.casefold()].append(farm)
        self.fields_by_farm = defaultdict(list)
        for plot in self.fields:
            self.fields_by_farm[plot.farm_id].append(plot)


# --- Reading -------------------------------------------------------------------


def _header(reader: csv.DictReader) -> list[str]:
    try:
        names = reader.fieldnames
    except csv.Error as exc:
        raise ImportFileError(f"line 1: {exc}") from None
    if not names:
        raise ImportFileError(f"the file is empty; the first line must be the header {','.join(COLUMNS)}")
    reader.fieldnames = [name.strip().casefold() for name in names]
    missing = [column for column in COLUMNS if column not in reader.fieldnames]
    if missing:
        raise ImportFileError(
            f"line 1: missing column(s) {', '.join(missing)}; the first line must be a header "
            f"naming {','.join(COLUMNS)} (in any order)"
        )
    return reader.fieldnames


def _row_problem(raw: dict[str | None, str | None]) -> str | None:
    if raw.get(None):
        return "the row has more values than the header (a value containing a comma needs double quotes)"
    short = [column for column in COLUMNS if raw.get(column) is None]
    if short:
        return f"the row has fewer values than the header (missing column(s) {', '.join(short)})"
    return None


def read_rows(lines: Iterable[str]) -> tuple[list[CsvRow], list[RowError]]:
    """Parse CSV text with a header; rows that are blank (or only commas) are skipped."""
    reader = csv.DictReader(iter(lines), restkey=None)
    _header(reader)
    rows: list[CsvRow] = []
    errors: list[RowError] = []
    try:
        for raw in reader:
            line = reader.line_num
            if not any((value or "").strip() for value in raw.values() if isinstance(value, str)):
                continue
            problem = _row_problem(raw)
            if problem:
                errors.append(RowError(line, problem))
                continue
            values = {column: (raw[column] or "").strip() for column in COLUMNS}
            rows.append(CsvRow(line=line, **values))
    except csv.Error as exc:
        raise ImportFileError(f"line {reader.line_num}: {exc}") from None
    return rows, errors


def load_directory(*, uids: Iterable[str]) -> Directory:
    return Directory(
        farms=list(Farm.objects.all()),
        fields=list(Field.objects.select_related("farm")),
        kinds=selectors.kinds_with_metrics(),
        registered=selectors.devices_by_uid(uids={normalize_uid(uid) for uid in uids}),
    )


# --- Checking --------------------------------------------------------------------


def _find_farm(value: str, directory: Directory) -> tuple[Farm | None, str | None]:
    if value in directory.farm_by_slug:
        return directory.farm_by_slug[value], None
    named = directory.farms_by_name.get(value.casefold(), [])
    if len(named) > 1:
        slugs = ", ".join(farm.slug for farm in named)
        return None, f"farm name {value!r} matches {len(named)} farms; use its slug ({slugs})"
    return (named[0], None) if named else (None, None)


def _new_slug(kind: str, value: str, taken: dict[str, str], max_length: int) -> tuple[str | None, str | None]:
    """A slug for a farm or field to create; ``taken`` maps existing slugs to their names."""
    slug = slugify(value)
    if not slug:
        return None, f"cannot create {kind} {value!r}: its name gives no usable slug"
    if len(slug) > max_length or len(value) > NAME_MAX:
        return None, f"cannot create {kind} {value!r}: the name is too long"
    if slug in taken and value != slug and taken[slug].casefold() != value.casefold():
        return None, f"cannot create {kind} {value!r}: its slug {slug!r} is taken by {kind} {taken[slug]!r}"
    return slug, None


def resolve_farm(
    value: str, directory: Directory, plan: ImportPlan, create_missing: bool
) -> tuple[str | None, str | None]:
    """The slug of the row's farm (existing or to be created), or an error."""
    farm, error = _find_farm(value, directory)
    if farm or error:
        return (farm.slug if farm else None), error
    if not create_missing:
        return None, f"unknown farm {value!r} (no farm has this slug or name; --create-missing creates it)"
    taken = {**{f.slug: f.name for f in directory.farms}, **plan.new_farms}
    slug, error = _new_slug("farm", value, taken, FARM_SLUG_MAX)
    if slug:
        plan.new_farms.setdefault(slug, value)
    return slug, error


def _find_field(value: str, candidates: Iterable[Field]) -> Field | None:
    candidates = list(candidates)
    by_slug = [plot for plot in candidates if plot.slug == value]
    by_name = [plot for plot in candidates if plot.name.casefold() == value.casefold()]
    matches = by_slug or by_name
    return matches[0] if matches else None


def resolve_field(
    value: str, farm_slug: str, directory: Directory, plan: ImportPlan, create_missing: bool
) -> tuple[str | None, str | None]:
    """The slug of the row's field on its farm (existing or to be created), or an error; empty means none."""
    farm = directory.farm_by_slug.get(farm_slug)
    on_farm = directory.fields_by_farm.get(farm.pk, []) if farm else []
    found = _find_field(value, on_farm)
    if found:
        return found.slug, None
    if not create_missing:
        elsewhere = _find_field(value, directory.fields)
        if elsewhere:
            farm_name = farm.name if farm else farm_slug
            return None, f"field {value!r} is on farm {elsewhere.farm.name!r}, not on farm {farm_name!r}"
        return None, f"unknown field {value!r} on farm {farm_slug!r} (--create-missing creates it)"
    taken = {plot.slug: plot.name for plot in on_farm}
    taken.update({slug: name for (f_slug, slug), name in plan.new_fields.items() if f_slug == farm_slug})
    slug, error = _new_slug("field", value, taken, FIELD_SLUG_MAX)
    if slug:
        plan.new_fields.setdefault((farm_slug, slug), value)
    return slug, error


def resolve_kind(value: str, directory: Directory) -> tuple[DeviceKind | None, str | None]:
    by_slug = [kind for kind in directory.kinds if kind.slug == value]
    by_name = [kind for kind in directory.kinds if kind.name.casefold() == value.casefold()]
    if by_slug or by_name:
        return (by_slug or by_name)[0], None
    known = ", ".join(kind.slug for kind in directory.kinds)
    return None, f"unknown kind {value!r} (known kinds: {known})"


def check_uid(
    value: str, line: int, directory: Directory, seen: dict[str, int], *, update: bool = False
) -> tuple[str, list[str]]:
    """The normalised uid and what is wrong with it: format, repeated in the file, already registered.

    With ``update`` a registered uid is not a problem: the row updates that device.
    """
    uid = normalize_uid(value)
    try:
        validate_uid(uid)
    except ValidationError as exc:
        return uid, [f"bad uid {value!r}: {' '.join(exc.messages)}"]
    if uid in seen:
        return uid, [f"duplicate uid {uid!r} (already on line {seen[uid]})"]
    seen[uid] = line
    device = directory.registered.get(uid)
    if device and not update:
        return uid, [
            f"uid {uid!r} is already registered (device {device.name!r} on farm {device.farm.name!r}); "
            "--update changes registered devices"
        ]
    return uid, []


def check_name(value: str) -> list[str]:
    if not value:
        return ["empty name"]
    if len(value) > NAME_MAX:
        return [f"name is longer than {NAME_MAX} characters"]
    return []


def _plan_row(
    row: CsvRow, directory: Directory, plan: ImportPlan, seen: dict[str, int], create: bool, update: bool
) -> None:
    uid, problems = check_uid(row.uid, row.line, directory, seen, update=update)
    problems += check_name(row.name)
    kind, kind_error = resolve_kind(row.kind, directory) if row.kind else (None, "empty kind")
    farm_slug, farm_error = resolve_farm(row.farm, directory, plan, create) if row.farm else (None, "empty farm")
    field_slug, field_error = None, None
    if farm_slug and row.field:
        field_slug, field_error = resolve_field(row.field, farm_slug, directory, plan, create)
    problems += [error for error in (kind_error, farm_error, field_error) if error]
    if problems or kind is None or farm_slug is None:
        plan.errors.extend(RowError(row.line, problem) for problem in problems)
        return
    existing = directory.registered.get(uid) if update else None
    plan.devices.append(PlannedDevice(row.line, uid, row.name, farm_slug, field_slug, kind, existing))


def plan_import(
    rows: list[CsvRow], directory: Directory, *, create_missing: bool = False, update: bool = False
) -> ImportPlan:
    """Check every row; the plan lists what to create (with ``update``, what to change) and every problem, by line."""
    plan = ImportPlan()
    seen: dict[str, int] = {}
    for row in rows:
        _plan_row(row, directory, plan, seen, create_missing, update)
    if plan.errors:
        # Farms and fields are only created alongside devices; with errors nothing is.
        plan.new_farms.clear()
        plan.new_fields.clear()
    return plan
