"""Linky/CBE TIC framing: bytes -> checked groups, for both modes (Enedis NOI-CPT_02E, _54E).

A frame is `[STX] (LF group CR)+ [ETX]`; STX and ETX are optional, but one without the other is
a frame cut at one end. The mode is read from the first group: a TAB means *standard*.

- historique: `LABEL SP DATA SP CHECKSUM`; checksum over `LABEL SP DATA` (the last SP excluded).
- standard: `LABEL HT [HORODATE HT] DATA HT CHECKSUM`; checksum over everything up to and
  including the last HT.

Checksum = (sum of the bytes & 0x3F) + 0x20. Errors: bytes above 0x7F, control characters or
stray bytes between groups -> `malformed`; a cut frame, a group without CR or with missing
fields -> `truncated`; a wrong checksum -> `bad_checksum` (naming the label); a label outside
`[A-Z0-9+-]` with a correct checksum -> `unknown_label`.

`fast_groups` reads a sound frame with a few whole-frame operations; any doubt (a defect, a
repeated label) returns None and `split_groups` / `parse_group` find and name the error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from maillage.errors import DlqReason, PayloadError

STX, ETX, EOT, LF, CR = 0x02, 0x03, 0x04, 0x0A, 0x0D
LABEL = re.compile(r"[A-Z0-9+-]{1,16}")
_PRINTABLE = re.compile(r"[\t\x20-\x7e]*")

Mode = Literal["historique", "standard"]


@dataclass(frozen=True, slots=True)
class Group:
    """One information group of a frame."""

    label: str
    data: str
    horodate: str | None = None


def checksum(text: str) -> str:
    """The TIC checksum character of `text`."""
    return chr((sum(text.encode("ascii")) & 0x3F) + 0x20)


def split_groups(payload: bytes) -> list[str]:
    """The text of each group (between LF and CR), after checking the framing."""
    if not payload:
        raise PayloadError(DlqReason.TRUNCATED, "empty frame")
    high = next((i for i, b in enumerate(payload) if b > 0x7F), None)
    if high is not None:
        raise PayloadError(DlqReason.MALFORMED,
                           f"non-ASCII byte 0x{payload[high]:02x} at offset {high}")
    if EOT in payload:
        raise PayloadError(DlqReason.TRUNCATED, "frame interrupted by the meter (EOT)")
    body = payload
    if body[0] == STX:
        if body[-1] != ETX or len(body) == 1:
            raise PayloadError(DlqReason.TRUNCATED, "frame starts with STX but has no ETX")
        body = body[1:-1]
    elif body[-1] == ETX:
        raise PayloadError(DlqReason.TRUNCATED, "frame ends with ETX but has no STX")
    groups: list[str] = []
    pos = 0
    while pos < len(body):
        if body[pos] != LF:
            raise PayloadError(DlqReason.MALFORMED,
                               f"byte 0x{body[pos]:02x} outside a group at offset {pos}")
        end = body.find(CR, pos + 1)
        nxt = body.find(LF, pos + 1)
        if end < 0 or 0 <= nxt < end:
            raise PayloadError(DlqReason.TRUNCATED, f"group {len(groups)} has no CR")
        text = body[pos + 1:end].decode("ascii")
        if not _PRINTABLE.fullmatch(text):
            raise PayloadError(DlqReason.MALFORMED, f"control character in group {len(groups)}")
        groups.append(text)
        pos = end + 1
    if not groups:
        raise PayloadError(DlqReason.TRUNCATED, "no group in the frame")
    return groups


Parts = list[str]
"""A group's fields: `[label, data]` or `[label, horodate, data]`."""

_TEXT_BYTES = b"\t" + bytes(range(0x20, 0x7F))
_LABELS_OK: set[str] = set()
_SOUND: dict[bool, dict[bytes, Parts]] = {True: {}, False: {}}
"""Groups already read and found sound, by mode (standard or not): a meter repeats most of its
groups frame after frame (its tariff, status word, subscribed power...)."""
SOUND_GROUPS = 8192
"""How many groups `_SOUND` keeps per mode before starting over."""


def fast_groups(payload: bytes, uncached: frozenset[str] = frozenset()) -> tuple[
        Mode, dict[str, Parts]] | None:
    """The mode and `label -> parts` of a sound frame (no defect, no repeated label), in frame
    order; None when anything is off. Groups labelled in `uncached` (values that change every
    frame) are not remembered."""
    if not payload.isascii() or EOT in payload:
        return None
    body = payload
    if body[:1] == b"\x02":
        if body[-1:] != b"\x03" or len(body) == 1:
            return None
        body = body[1:-1]
    elif body[-1:] == b"\x03":
        return None
    if body[:1] != b"\n" or body[-1:] != b"\r":
        return None
    raw = body[1:-1].split(b"\r\n")
    if body.translate(None, _TEXT_BYTES) != b"\n\r" * len(raw):
        return None  # a control character, or a CR or LF inside a group
    standard = b"\t" in raw[0]
    sound = _SOUND[standard]
    groups: dict[str, Parts] = {}
    try:
        for group in raw:
            parts = sound.get(group)
            if parts is None:
                # The checksum covers, in standard mode, everything up to and including the last
                # TAB; in historique mode `LABEL SP DATA`.
                text = group.decode("ascii")
                last = group[-1]
                if standard:
                    if text[-2] != "\t" or ((sum(group) - last) & 0x3F) + 0x20 != last:
                        return None
                    parts = text[:-2].split("\t")
                    if not 1 < len(parts) < 4:
                        return None
                else:
                    if text[-2] != " " or ((sum(group) - 0x20 - last) & 0x3F) + 0x20 != last:
                        return None
                    parts = text[:-2].split(" ", 1)
                    if len(parts) != 2:
                        return None
                label = parts[0]
                if label not in uncached and len(parts) == 2 and label in _LABELS_OK:
                    if len(sound) >= SOUND_GROUPS:
                        sound.clear()
                    sound[group] = parts
            groups[parts[0]] = parts
    except IndexError:  # a group of one character or none
        return None
    if len(groups) != len(raw) or not (_LABELS_OK.issuperset(groups) or _good_labels(groups)):
        return None  # a repeated or malformed label
    return ("standard" if standard else "historique"), groups


def _good_labels(labels: dict[str, Parts]) -> bool:
    """Every label matches LABEL (remembered: a frame's labels come from a small vocabulary)."""
    for label in labels:
        if label not in _LABELS_OK:
            if LABEL.fullmatch(label) is None:
                return False
            if len(_LABELS_OK) < 4096:
                _LABELS_OK.add(label)
    return True


def detect_mode(groups: list[str]) -> Mode:
    """Standard mode uses TAB separators, historique mode spaces."""
    return "standard" if "\t" in groups[0] else "historique"


def parse_group(text: str, mode: Mode, index: int) -> Group:
    """Split and check one group."""
    if len(text) < 4:
        raise PayloadError(DlqReason.TRUNCATED, f"group {index} is too short: {text!r}")
    sep = "\t" if mode == "standard" else " "
    if text[-2] != sep:
        raise PayloadError(DlqReason.TRUNCATED,
                           f"group {index} ({text[:16]!r}): no separator before the checksum")
    if mode == "standard":
        covered = text[:-1]
        parts = text[:-2].split("\t")
    else:
        covered = text[:-2]
        parts = covered.split(" ", 1)
    if len(parts) < 2:
        raise PayloadError(DlqReason.TRUNCATED, f"group {index} ({text[:16]!r}): no data field")
    if len(parts) > 3:
        raise PayloadError(DlqReason.MALFORMED, f"group {index} ({parts[0][:16]!r}): too many fields")
    label = parts[0]
    expected = checksum(covered)
    if text[-1] != expected:
        raise PayloadError(DlqReason.BAD_CHECKSUM,
                           f"group {label[:16]!r}: checksum {text[-1]!r}, expected {expected!r}")
    if not LABEL.fullmatch(label):
        raise PayloadError(DlqReason.UNKNOWN_LABEL, f"group {index}: malformed label {label[:16]!r}")
    if len(parts) == 3:
        return Group(label, parts[2], horodate=parts[1])
    return Group(label, parts[1])
