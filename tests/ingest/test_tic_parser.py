"""Linky TIC frames, historique and standard, from published examples and built ones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ingest_helpers import RECEIVED, ctx, frame, hist_group, std_group

from maillage.envelope import Envelope, SourceFormat
from maillage.errors import DlqReason, PayloadError
from maillage.ingest.formats import parse_message

TIC = ctx("up/tic", "meter")


def parse(payload: bytes) -> Envelope:
    envelopes = parse_message(payload, TIC)
    assert len(envelopes) == 1
    return envelopes[0]


# A historique HC/HP frame as published (kalemena/iot-tools, interop-teleinfo.adoc; ADCO masked
# there, so left out). Note the PTEC group: its checksum character is a space.
PUBLISHED_HISTORIQUE = [
    "OPTARIF HC.. <", "ISOUSC 45 ?", "HCHC 010956910 %", "HCHP 016779643 >", "PTEC HP..  ",
    "IINST 021 Z", "IMAX 047 J", "PAPP 04860 3", "HHPHC A ,", "MOTDETAT 000000 B",
]

# A standard frame as published (TeleinfoMySensors README, "Exemple de trames teleinfo").
PUBLISHED_STANDARD = [
    "VTIC\t02\tJ", "DATE\tE200426181830\t\tA", "EAST\t006231973\t.", "EASF02\t000000000\t#",
    "EASF03\t000000000\t$", "EASF04\t000000000\t%", "EASF05\t000000000\t&",
    "EASF07\t000000000\t(", "EASF08\t000000000\t)", "EASF09\t000000000\t*",
    "EASD02\t000000000\t!", "EASD03\t000000000\t\"", "EASD04\t000000000\t#", "URMS1\t235\tD",
    "PREF\t09\tH", "PCOUP\t09\t\"", "SINSTS\t01163\tQ", "SMAXSN\tE200426132229\t06100\t2",
    "SMAXSN-1\tE200425151325\t04700\tQ", "CCASN\tE200426180000\t02120\t4",
    "CCASN-1\tE200426173000\t02662\t_", "UMOY1\tE200426181000\t234\t,", "STGE\t003A0001\t:",
    "MSG1\t     PAS DE          MESSAGE    \t<", "PRM\t01332272002530\t_", "RELAIS\t000\tB",
    "NTARF\t01\tN", "NJOURF\t00\t&", "NJOURF+1\t00\tB",
]


def published(lines: list[str]) -> bytes:
    return frame([f"\n{line}\r".encode("ascii") for line in lines])


def test_published_historique_frame() -> None:
    """HC/HP registers, their sum, ISOUSC x 200, texts as attributes, receive time."""
    env = parse(published(PUBLISHED_HISTORIQUE))
    assert env.source_format is SourceFormat.TIC
    assert env.ts == RECEIVED
    assert env.values == {
        "energy_import_hc_wh": 10956910.0,
        "energy_import_hp_wh": 16779643.0,
        "energy_import_wh": 10956910.0 + 16779643.0,
        "subscribed_power_va": 9000.0,
        "current_a": 21.0,
        "apparent_power_va": 4860.0,
    }
    assert env.attrs == {"tic_mode": "historique", "OPTARIF": "HC..", "PTEC": "HP..",
                         "IMAX": "047", "HHPHC": "A", "MOTDETAT": "000000"}
    assert env.unknown_metrics == ()


def test_published_standard_frame() -> None:
    """Standard mode: DATE in summer time (UTC+2), EAST, registers, PREF in kVA."""
    env = parse(published(PUBLISHED_STANDARD))
    assert env.ts == datetime(2020, 4, 26, 16, 18, 30, tzinfo=UTC)
    assert env.received_at == RECEIVED
    assert env.values["energy_import_wh"] == 6231973.0
    assert env.values["energy_import_f02_wh"] == 0.0
    assert env.values["energy_import_d04_wh"] == 0.0
    assert env.values["voltage_v"] == 235.0
    assert env.values["apparent_power_va"] == 1163.0
    assert env.values["subscribed_power_va"] == 9000.0
    assert "current_a" not in env.values
    assert env.attrs["tic_mode"] == "standard"
    assert env.attrs["PRM"] == "01332272002530"
    assert env.attrs["MSG1"] == "PAS DE          MESSAGE"
    assert env.attrs["STGE"] == "003A0001"
    assert env.attrs["SMAXSN"] == "06100"
    assert env.attrs["SMAXSN_at"] == "2020-04-26T11:22:29+00:00"
    assert env.unknown_metrics == ()


def test_historique_base_single_phase() -> None:
    """A BASE option meter without STX/ETX (a modem that strips them)."""
    env = parse(frame([
        hist_group("ADCO", "022164996259"), hist_group("OPTARIF", "BASE"),
        hist_group("ISOUSC", "30"), hist_group("BASE", "007191269"), hist_group("PTEC", "TH.."),
        hist_group("IINST", "001"), hist_group("IMAX", "090"), hist_group("PAPP", "00430"),
        hist_group("HHPHC", "A"), hist_group("MOTDETAT", "000000"),
    ], stx=False))
    assert env.values == {"energy_import_wh": 7191269.0, "subscribed_power_va": 6000.0,
                          "current_a": 1.0, "apparent_power_va": 430.0}
    assert env.attrs["ADCO"] == "022164996259"
    assert env.attrs["OPTARIF"] == "BASE"


def test_historique_three_phase_uses_600_va_per_amp() -> None:
    """Three-phase: ISOUSC x 600, per-phase currents, phase 1 as current_a."""
    env = parse(frame([
        hist_group("ADCO", "031428097115"), hist_group("OPTARIF", "BASE"),
        hist_group("ISOUSC", "20"), hist_group("BASE", "003459812"), hist_group("PTEC", "TH.."),
        hist_group("IINST1", "003"), hist_group("IINST2", "004"), hist_group("IINST3", "005"),
        hist_group("IMAX1", "060"), hist_group("IMAX2", "060"), hist_group("IMAX3", "060"),
        hist_group("PMAX", "03695"), hist_group("PAPP", "02780"), hist_group("HHPHC", "A"),
        hist_group("MOTDETAT", "000000"), hist_group("PPOT", "00"),
    ]))
    assert env.values == {
        "energy_import_wh": 3459812.0, "subscribed_power_va": 12000.0,
        "current_a": 3.0, "current_l1_a": 3.0, "current_l2_a": 4.0, "current_l3_a": 5.0,
        "apparent_power_va": 2780.0,
    }
    assert env.attrs["PPOT"] == "00"


@pytest.mark.parametrize(("groups", "registers"), [
    pytest.param(
        [("BBRHCJB", "000012340"), ("BBRHPJB", "000023450"), ("BBRHCJW", "000001000"),
         ("BBRHPJW", "000002000"), ("BBRHCJR", "000000100"), ("BBRHPJR", "000000200")],
        {"energy_import_hc_blue_wh": 12340.0, "energy_import_hp_blue_wh": 23450.0,
         "energy_import_hc_white_wh": 1000.0, "energy_import_hp_white_wh": 2000.0,
         "energy_import_hc_red_wh": 100.0, "energy_import_hp_red_wh": 200.0},
        id="tempo"),
    pytest.param(
        [("EJPHN", "001234567"), ("EJPHPM", "000012345")],
        {"energy_import_ejp_hn_wh": 1234567.0, "energy_import_ejp_hpm_wh": 12345.0},
        id="ejp"),
])
def test_historique_option_registers_sum_to_the_index(
        groups: list[tuple[str, str]], registers: dict[str, float]) -> None:
    """Each register is kept; energy_import_wh is their sum."""
    env = parse(frame([hist_group("ADCO", "021728123456")]
                      + [hist_group(label, data) for label, data in groups]))
    assert {k: v for k, v in env.values.items() if k != "energy_import_wh"} == registers
    assert env.values["energy_import_wh"] == sum(registers.values())
    assert env.unknown_metrics == ()


def test_standard_three_phase_winter_time() -> None:
    """Winter DATE is UTC+1; phases, export and injected power."""
    env = parse(frame([
        std_group("ADSC", "041876097411"), std_group("VTIC", "02"),
        std_group("DATE", "", horodate="H251123180500"),
        std_group("NGTF", "     TEMPO      "), std_group("LTARF", "    HP  BLEU    "),
        std_group("EAST", "012345678"), std_group("EASF01", "004000000"),
        std_group("EASF02", "008345678"), std_group("EAIT", "000123456"),
        std_group("IRMS1", "012"), std_group("IRMS2", "008"), std_group("IRMS3", "003"),
        std_group("URMS1", "231"), std_group("URMS2", "229"), std_group("URMS3", "233"),
        std_group("PREF", "12"), std_group("PCOUP", "12"),
        std_group("SINSTS", "05230"), std_group("SINSTS1", "02760"),
        std_group("SINSTS2", "01780"), std_group("SINSTS3", "00690"),
        std_group("SINSTI", "00000"), std_group("STGE", "013AC501"),
    ]))
    assert env.ts == datetime(2025, 11, 23, 17, 5, 0, tzinfo=UTC)
    assert env.values == {
        "energy_import_wh": 12345678.0, "energy_import_f01_wh": 4000000.0,
        "energy_import_f02_wh": 8345678.0, "energy_export_wh": 123456.0,
        "current_a": 12.0, "current_l1_a": 12.0, "current_l2_a": 8.0, "current_l3_a": 3.0,
        "voltage_v": 231.0, "voltage_l1_v": 231.0, "voltage_l2_v": 229.0, "voltage_l3_v": 233.0,
        "subscribed_power_va": 12000.0, "apparent_power_va": 5230.0,
        "apparent_power_l1_va": 2760.0, "apparent_power_l2_va": 1780.0,
        "apparent_power_l3_va": 690.0, "apparent_power_export_va": 0.0,
    }
    assert env.attrs["LTARF"] == "HP  BLEU"
    assert env.attrs["NGTF"] == "TEMPO"
    assert env.unknown_metrics == ()


@pytest.mark.parametrize("season", ["e", "h", " "])
def test_standard_degraded_clock_uses_receive_time(season: str) -> None:
    """A lower-case or blank season: the meter's clock is not trusted."""
    env = parse(frame([std_group("DATE", "", horodate=f"{season}251123180500"),
                       std_group("EAST", "000001000")]))
    assert env.ts == RECEIVED
    assert env.attrs["tic_clock"] == "degraded"


def test_unknown_well_formed_label_is_kept() -> None:
    """A label this parser does not know, well formed, is kept as an attribute."""
    env = parse(frame([hist_group("BASE", "000001000"), hist_group("NEWLBL2", "ABC")]))
    assert env.attrs["NEWLBL2"] == "ABC"


def _bad_checksum() -> bytes:
    good = hist_group("PAPP", "00430")
    wrong = chr(good[-2] + 1 if good[-2] < 0x5F else 0x20).encode()
    return frame([hist_group("BASE", "000001000"), good[:-2] + wrong + b"\r"])


def _bad_std_checksum() -> bytes:
    # The historique rule (last TAB excluded) applied to a standard group must fail.
    body = "EAST\t000001000"
    char = chr(sum(map(ord, body)) % 64 + 32)
    return frame([std_group("ADSC", "041876097411"), f"\n{body}\t{char}\r".encode()])


@pytest.mark.parametrize(("payload", "reason", "detail"), [
    pytest.param(_bad_checksum(), DlqReason.BAD_CHECKSUM, "PAPP", id="bad-checksum"),
    pytest.param(_bad_std_checksum(), DlqReason.BAD_CHECKSUM, "EAST", id="std-checksum-rule"),
    pytest.param(frame([hist_group("BASE", "000001000")])[:-1], DlqReason.TRUNCATED, "ETX",
                 id="stx-without-etx"),
    pytest.param(frame([hist_group("BASE", "000001000")])[1:], DlqReason.TRUNCATED, "STX",
                 id="etx-without-stx"),
    pytest.param(hist_group("BASE", "000001000") + b"\nPAPP 00430", DlqReason.TRUNCATED, "CR",
                 id="group-without-cr"),
    pytest.param(b"\nBASE 000001000\nPAPP 00430 (\r", DlqReason.TRUNCATED, "CR",
                 id="lf-before-cr"),
    pytest.param(frame([hist_group("BASE", "000001000"), b"\nIINST Z\r"]), DlqReason.TRUNCATED,
                 "no data", id="missing-data-field"),
    pytest.param(frame([b"\nAB\r"]), DlqReason.TRUNCATED, "short", id="tiny-group"),
    pytest.param(b"", DlqReason.TRUNCATED, "empty", id="empty"),
    pytest.param(b"\x02\x03", DlqReason.TRUNCATED, "no group", id="no-group"),
    pytest.param(b"\x02" + hist_group("BASE", "000001000") + b"\x04", DlqReason.TRUNCATED, "EOT",
                 id="eot"),
    pytest.param(frame([hist_group("Base", "000001000")]), DlqReason.UNKNOWN_LABEL, "Base",
                 id="lowercase-label"),
    pytest.param(frame([hist_group("BA_SE", "000001000")]), DlqReason.UNKNOWN_LABEL, "BA_SE",
                 id="underscore-label"),
    pytest.param(frame([hist_group("BASE", "000001000")]).replace(b"BASE", b"B\xc1SE"),
                 DlqReason.MALFORMED, "non-ASCII", id="non-ascii"),
    pytest.param(hist_group("BASE", "000001000") + b"xx" + hist_group("PAPP", "00430"),
                 DlqReason.MALFORMED, "outside a group", id="garbage-between-groups"),
    pytest.param(frame([hist_group("BASE", "0000\x0701000")]), DlqReason.MALFORMED, "control",
                 id="control-character"),
    pytest.param(frame([hist_group("BASE", "000001000"), hist_group("BASE", "000001001")]),
                 DlqReason.INVALID_SCHEMA, "twice", id="duplicate-label"),
    pytest.param(frame([hist_group("PAPP", "0O430")]), DlqReason.BAD_VALUE, "PAPP",
                 id="non-numeric-power"),
    pytest.param(frame([std_group("DATE", "", horodate="X251123180500")]),
                 DlqReason.BAD_TIMESTAMP, "season", id="bad-season"),
    pytest.param(frame([std_group("DATE", "", horodate="H251323180500")]),
                 DlqReason.BAD_TIMESTAMP, "DATE", id="month-13"),
    pytest.param(frame([std_group("DATE", "", horodate="H2511231805")]),
                 DlqReason.BAD_TIMESTAMP, "SAAMMJJhhmmss", id="short-horodate"),
])
def test_rejected_frames(payload: bytes, reason: DlqReason, detail: str) -> None:
    """Each defect maps to its DLQ reason, and the detail names the culprit."""
    with pytest.raises(PayloadError) as err:
        parse_message(payload, TIC)
    assert err.value.reason is reason
    assert detail in err.value.detail


LABELS = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-", min_size=1, max_size=8)
# Data of text groups: printable, without the separator of the mode nor leading/trailing blanks.
HIST_DATA = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12)
STD_DATA = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=16)
NUMBERS = st.integers(min_value=0, max_value=999_999_999)
NUMERIC_LABELS = {"BASE": "energy_import_wh", "PAPP": "apparent_power_va",
                  "EAST": "energy_import_wh", "SINSTS": "apparent_power_va",
                  "EAIT": "energy_export_wh"}


_RESERVED = frozenset({
    "BASE", "PAPP", "EAST", "SINSTS", "EAIT", "SINSTI", "PREF", "ISOUSC", "IINST", "DATE",
    "IINST1", "IINST2", "IINST3", "IRMS1", "IRMS2", "IRMS3", "URMS1", "URMS2", "URMS3",
    "SINSTS1", "SINSTS2", "SINSTS3", "HCHC", "HCHP", "EJPHN", "EJPHPM", "BBRHCJB", "BBRHPJB",
    "BBRHCJW", "BBRHPJW", "BBRHCJR", "BBRHPJR",
}) | {f"EASF{i:02d}" for i in range(1, 11)} | {f"EASD{i:02d}" for i in range(1, 5)}


@st.composite
def valid_frames(draw: st.DrawFn) -> tuple[bytes, dict[str, float], dict[str, str]]:
    """A well-formed frame in either mode, its numeric values and its text attributes."""
    standard = draw(st.booleans())
    texts = draw(st.dictionaries(LABELS.filter(lambda s: s not in _RESERVED),
                                 STD_DATA if standard else HIST_DATA, max_size=8))
    label = draw(st.sampled_from(["EAST", "SINSTS", "EAIT"] if standard else ["BASE", "PAPP"]))
    number = draw(NUMBERS)
    group = std_group if standard else hist_group
    groups = [group(k, v) for k, v in texts.items()] + [group(label, f"{number:09d}")]
    groups = draw(st.permutations(groups))
    return (frame(groups, stx=draw(st.booleans())), {NUMERIC_LABELS[label]: float(number)},
            texts)


@settings(max_examples=200, deadline=None)
@given(valid_frames())
def test_valid_frames_always_parse(case: tuple[bytes, dict[str, float], dict[str, str]]) -> None:
    """Any well-formed frame parses, with its value and its texts."""
    payload, values, texts = case
    env = parse(payload)
    assert env.values == values
    assert {k: v for k, v in env.attrs.items() if k != "tic_mode"} == texts


@settings(max_examples=200, deadline=None)
@given(valid_frames(), st.data())
def test_mutated_frames_raise_only_payload_errors(
        case: tuple[bytes, dict[str, float], dict[str, str]], data: st.DataObject) -> None:
    """Flipping, inserting or dropping bytes never raises anything but PayloadError."""
    payload = bytearray(case[0])
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(payload)))
        op = data.draw(st.sampled_from(["flip", "insert", "drop"]))
        byte = data.draw(st.integers(0, 255))
        if op == "insert":
            payload.insert(pos, byte)
        elif pos < len(payload):
            if op == "flip":
                payload[pos] = byte
            else:
                del payload[pos]
    try:
        parse_message(bytes(payload), TIC)
    except PayloadError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_raise_only_payload_errors(payload: bytes) -> None:
    """Garbage is rejected with a reason, never an exception of another type."""
    try:
        parse_message(payload, TIC)
    except PayloadError:
        pass
