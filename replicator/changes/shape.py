"""The shape of a replica that differs from its source on purpose: projected attributes, filtered items, and
TTL expiries left out.

Every shell (the daemon, the Lambda) and every tool (copy-table, bootstrap, diff-tables, diff-record,
replicate-record, backup-table) builds one :class:`ReplicaShape` from its own input and asks it; none has a
rule of its own, so that a replica kept by a path is "equal" to its source in diff-tables run with the same
options. The rules:

* **Projection** (``include_attributes`` or ``exclude_attributes``, top-level names): an item written to the
  replica keeps only the named attributes, or loses the named ones. Its key attributes are always kept
  (an item without its key cannot be written), and so is the version attribute of a fenced path (the fence
  adds it after projection). Excluding a key attribute or the version attribute is refused: it cannot be
  done. Including one is allowed and changes nothing.
* **Filter** (``filter``): a JMESPath expression over the item's new image as plain JSON (:func:`plain`).
  It is compiled once, when the shape is built; an expression that does not compile is a one-line error.
  An item matches when the expression's value is true as JMESPath defines it (not false, null, "", [] or
  {}). It applies to an item's state, never to a record: after squash (the last change of a key in the
  batch is its state, and filtering that state is filtering the end of the batch) and after the read-through
  (a keys-only record's item is the one read from the source). A state that does not match becomes a
  delete, so an item that stops matching leaves the replica, and one that starts matching is written
  whole from its new image. With the version fence such a delete is a tombstone like any other, so a stale
  put of the item from before it left the filter cannot bring it back. A delete (REMOVE) stays a delete.
  An item the expression cannot evaluate (a function given the wrong type, say) does not match: for data
  residency, the safe side is not to send it; it is logged (at most once per distinct error).
* **TTL expiries** (``ttl_deletes``): a REMOVE record whose ``userIdentity`` is DynamoDB's service
  principal (:data:`TTL_IDENTITY`, as AWS documents it for TTL) is an expiry. With ``skip`` such a change is
  dropped before squash, as if the record were not there: the replica keeps the item as it was before it
  expired (an earlier change of the key in the same batch is still applied). The applier counts them.
  :func:`ttl_capability` says per source what can be recognised.
* **Expired items** (``skip_expired``, the table tools only): an item whose named attribute is a number of
  epoch seconds not after now is left out, as if DynamoDB's TTL had already deleted it.

Items are boto3 form throughout (binary as ``bytes``); the filter sees the plain JSON of :func:`plain`.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Literal

import jmespath
from jmespath.exceptions import JMESPathError

from replicator import log
from replicator.changes.codec import TTL_IDENTITY, AttributeValue, Change, Item, is_ttl_expiry
from replicator.errors import ReplicatorError

__all__ = ["TTL_IDENTITY", "is_ttl_expiry", "ReplicaShape", "KEEP_ALL", "plain", "plain_item", "ttl_capability"]
# TTL_IDENTITY and is_ttl_expiry live in codec, which decodes records; they are part of this module's rules.

TTL_DELETES = ("replicate", "skip")

_log = log.get("replicator.changes.shape")
_LOGGED_ERRORS_MAX = 20


def _number(text: str) -> int | float:
    value = Decimal(text)
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def plain(value: AttributeValue) -> Any:
    """One attribute value as the filter sees it: S a string; N an int when it is whole (exact at any size),
    else a float (JMESPath's own number literals are floats, so ``price > `9.99``` compares like with like,
    and its functions take no Decimal); BOOL a boolean; NULL null; M an object; L a list; SS and NS lists
    (of strings, of numbers) in the order DynamoDB returned them; B a base64 string, BS a list of them."""
    (tag, inner), = value.items()
    if tag == "S" or tag == "BOOL":
        return inner
    if tag == "N":
        return _number(inner)
    if tag == "M":
        return {name: plain(v) for name, v in inner.items()}
    if tag == "L":
        return [plain(v) for v in inner]
    if tag == "NULL":
        return None
    if tag == "SS":
        return list(inner)
    if tag == "NS":
        return [_number(n) for n in inner]
    if tag == "B":
        return base64.b64encode(bytes(inner)).decode("ascii")
    if tag == "BS":
        return [base64.b64encode(bytes(b)).decode("ascii") for b in inner]
    raise ValueError(f"unknown attribute type {tag!r}")


def plain_item(item: Item) -> dict[str, Any]:
    return {name: plain(value) for name, value in item.items()}


def is_true(value: Any) -> bool:
    """JMESPath's truth: false, null, the empty string, list and object are false; everything else (0 too) true."""
    return not (value is None or value is False or (isinstance(value, (str, list, dict)) and not value))


class _SettingError(ValueError):
    """A rule across settings, naming them by field; :meth:`ReplicaShape.build` names them as the shell does."""

    def __init__(self, fields: tuple[str, ...], text: str) -> None:
        super().__init__(text)
        self.fields, self.text = fields, text


def _names(value: Any, field: str) -> tuple[str, ...] | None:
    """``a,b,c`` (or a sequence of names) to a tuple of names; None or blank is None."""
    if value is None:
        return None
    if not isinstance(value, (str, list, tuple)):
        raise _SettingError((field,), f"{value!r} is not a list of attribute names: give names separated by commas, "
                            "e.g. a,b,c")
    parts = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(str(p).strip() for p in parts)
    if not any(names):
        return None
    if not all(names):
        raise _SettingError((field,), f"{value!r} has an empty attribute name: give names separated by commas, "
                            "e.g. a,b,c")
    return names


def _text(value: Any) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else value


FIELDS = ("include_attributes", "exclude_attributes", "filter", "ttl_deletes", "skip_expired")


@dataclass(frozen=True)
class ReplicaShape:
    """What a replica keeps of its source. The default keeps everything (``is_identity``).

    A frozen dataclass checked on construction, not a pydantic model: the Lambda package carries no pydantic
    (``Makefile``, LAMBDA_DEPS), and these five settings need no more than :meth:`build` checks."""

    include_attributes: tuple[str, ...] | None = None
    exclude_attributes: tuple[str, ...] | None = None
    filter: str | None = None
    ttl_deletes: str = "replicate"
    skip_expired: str | None = None
    _compiled: Any = field(default=None, init=False, repr=False, compare=False)
    _logged: set[str] = field(default_factory=set, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.include_attributes is not None and self.exclude_attributes is not None:
            raise _SettingError(("include_attributes", "exclude_attributes"), "give one of them, not both")
        if self.ttl_deletes not in TTL_DELETES:
            raise _SettingError(("ttl_deletes",), f"is {self.ttl_deletes!r}: choose {' or '.join(TTL_DELETES)}")
        if self.filter is not None:
            try:
                object.__setattr__(self, "_compiled", jmespath.compile(self.filter))
            except JMESPathError as exc:
                detail = " ".join(str(exc).split())
                raise _SettingError(("filter",), f"{self.filter!r} is not a JMESPath expression ({detail}): e.g. "
                                    "\"tenant == 'eu'\" (strings in single quotes, numbers in backticks)") from None

    @classmethod
    def build(cls, values: Mapping[str, Any], names: Mapping[str, str] | None = None) -> "ReplicaShape":
        """The shape from a shell's settings, by field name, as text (blank is unset); a bad one is one line
        naming the setting as that shell's user knows it (``names``: field name to option, properties key or
        variable; by default the option, --filter)."""
        def named(field: str) -> str:
            return (names or {}).get(field, "--" + field.replace("_", "-"))

        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise ValueError(f"not a replica shape setting: {unknown[0]}")
        ttl = values.get("ttl_deletes")
        try:
            return cls(
                include_attributes=_names(values.get("include_attributes"), "include_attributes"),
                exclude_attributes=_names(values.get("exclude_attributes"), "exclude_attributes"),
                filter=_text(values.get("filter")),
                ttl_deletes=(ttl.strip().lower() or "replicate") if isinstance(ttl, str) else ttl or "replicate",
                skip_expired=_text(values.get("skip_expired")),
            )
        except _SettingError as exc:
            if len(exc.fields) > 1:
                raise ReplicatorError(f"{' and '.join(map(named, exc.fields))}: {exc.text}") from None
            text = exc.text if exc.fields != ("ttl_deletes",) else f"is {ttl!r}: choose {' or '.join(TTL_DELETES)}"
            raise ReplicatorError(f"{named(exc.fields[0])} {text}") from None

    @property
    def is_identity(self) -> bool:
        """True when the replica keeps every attribute of every item (TTL expiries aside)."""
        return self.include_attributes is None and self.exclude_attributes is None and self.filter is None

    def as_settings(self) -> dict[str, str]:
        """The shape's settings that are set, by field name, as text (properties files, logs)."""
        out: dict[str, str] = {}
        for name in FIELDS:
            value = getattr(self, name)
            if value is None or (name == "ttl_deletes" and value == "replicate"):
                continue
            out[name] = ",".join(value) if isinstance(value, tuple) else str(value)
        return out

    def check_keys(self, key_names: Iterable[str], version_attribute: str | None = None,
                   names: Mapping[str, str] | None = None) -> None:
        """Refuse excluding a key attribute or the version attribute, which every replica item keeps."""
        if not self.exclude_attributes:
            return
        option = (names or {}).get("exclude_attributes", "--exclude-attributes")
        kept = {*key_names, *([version_attribute] if version_attribute else [])}
        for name in self.exclude_attributes:
            if name in kept:
                what = "the version attribute" if name == version_attribute else "a key attribute"
                raise ReplicatorError(f"{option} names {name!r}, {what}, which every replica item keeps: drop it "
                                      f"from {option}")

    def matches(self, item: Item) -> bool:
        """True when the item passes the filter (every item does without one)."""
        if self._compiled is None:
            return True
        try:
            return is_true(self._compiled.search(plain_item(item)))
        except (JMESPathError, TypeError, ValueError) as exc:
            message = f"{type(exc).__name__}: {exc}"
            if message not in self._logged and len(self._logged) < _LOGGED_ERRORS_MAX:
                self._logged.add(message)
                _log.warning("filter_not_evaluated", filter=self.filter, error=message,
                             note="the item is treated as not matching: it is not replicated")
            return False

    def project(self, item: Item, keep: Iterable[str] = ()) -> Item:
        """The item with only the attributes the replica keeps; ``keep`` (the key attributes) always stay."""
        if self.include_attributes is not None:
            wanted = {*self.include_attributes, *keep}
            return {name: value for name, value in item.items() if name in wanted}
        if self.exclude_attributes is not None:
            kept = set(keep)
            dropped = set(self.exclude_attributes) - kept
            return {name: value for name, value in item.items() if name not in dropped}
        return item

    def is_expired(self, item: Item, now_s: float) -> bool:
        """True when ``skip_expired`` names a number attribute of the item of epoch seconds not after now
        (DynamoDB's TTL ignores an attribute that is not a number, and so does this)."""
        if self.skip_expired is None:
            return False
        value = item.get(self.skip_expired)
        if not isinstance(value, dict) or "N" not in value:
            return False
        try:
            return Decimal(value["N"]) <= Decimal(str(now_s))
        except ArithmeticError:
            return False

    def view(self, item: Item | None, key_names: Sequence[str], now_s: float) -> Item | None:
        """What a replica with this shape holds for the source's ``item``: None when it holds nothing."""
        if item is None or self.is_expired(item, now_s) or not self.matches(item):
            return None
        return self.project(item, key_names)

    def views(self, items: Iterable[Item], key_names: Sequence[str], now_s: float) -> list[Item]:
        """:meth:`view` of each item, leaving out those the replica holds nothing for."""
        if self.is_identity and self.skip_expired is None:
            return list(items)
        return [v for item in items if (v := self.view(item, key_names, now_s)) is not None]

    @property
    def selects_items(self) -> bool:
        """True when some source items have no replica item (a filter, or expired items left out)."""
        return self.filter is not None or self.skip_expired is not None

    def drop_ttl_expiries(self, changes: Sequence[Change]) -> tuple[list[Change], int]:
        """With ``ttl_deletes`` skip, the changes without the TTL expiries, and how many there were."""
        if self.ttl_deletes != "skip":
            return list(changes), 0
        kept = [c for c in changes if not c.ttl_expiry]
        return kept, len(changes) - len(kept)

    def apply(self, changes: Sequence[Change]) -> list[Change]:
        """Each change's state as the replica keeps it: filtered out becomes a delete, the rest projected."""
        if self.is_identity:
            return list(changes)
        shaped = []
        for change in changes:
            image = change.new_image
            if image is not None:
                if not self.matches(image):
                    change = replace(change, new_image=None)
                elif self.include_attributes is not None or self.exclude_attributes is not None:
                    change = replace(change, new_image=self.project(image, change.keys))
            shaped.append(change)
        return shaped


KEEP_ALL = ReplicaShape()


def ttl_capability(shape: ReplicaShape, source: Literal["dynamodb", "dynamodb-cdc", "keys-only", "binlog"],
                   read_through: bool = False, setting: str = "--ttl-deletes") -> str | None:
    """What ``ttl_deletes skip`` can do on a source, as one line a shell logs at start-up; None when it is
    off or works fully. Raises where nothing can be recognised (binlog: a producer's own actions)."""
    if shape.ttl_deletes != "skip":
        return None
    if source == "binlog":
        raise ReplicatorError(f"{setting} skip: binlog records are a producer's own writes and carry no TTL "
                              f"expiries, so there is nothing to skip; drop {setting}")
    if source == "keys-only":
        return (f"{setting} skip on keys-only records: an expiry is recognised only in a record that is a whole "
                "DynamoDB stream record with its userIdentity (a bare key carries none), and any other record of "
                "the key read after the expiry finds the item gone and deletes it from the replica")
    if read_through:
        return (f"{setting} skip on a stream whose view carries no new image: expiries (REMOVE records with "
                "DynamoDB's userIdentity) are skipped, but any other record of the key read through after the "
                "expiry finds the item gone and deletes it from the replica; use NEW_IMAGE or "
                "NEW_AND_OLD_IMAGES to keep expired items")
    return None
