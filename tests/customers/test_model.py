"""Pure rules: contact normalisation, names, dates of birth, national IDs, addresses, KYC, codes."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from stdnum.cn import ric

from smartbank.customers.model import (
    MAX_CODE_ATTEMPTS,
    Address,
    ContactKind,
    IdType,
    KycDecision,
    KycStatus,
    NameScript,
    Verification,
    VerificationPurpose,
    check_birth_date,
    check_can_decide,
    check_can_submit,
    check_resend,
    check_usable,
    code_digest,
    code_matches,
    decode_cursor,
    decode_queue_cursor,
    encode_cursor,
    encode_queue_cursor,
    mask_email,
    mask_id_number,
    mask_phone,
    name_search_keys,
    normalise_address,
    normalise_email,
    normalise_id_number,
    normalise_legal_name,
    normalise_phone,
    search_key,
)
from smartbank.kernel.errors import DomainError

from .helpers import make_ric

KEY = b"k" * 32
NOW = datetime(2026, 11, 27, 4, 0, tzinfo=UTC)  # 12:00 in Beijing


def code_of(exc: pytest.ExceptionInfo[DomainError]) -> str:
    return exc.value.code


# -- phone numbers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_text", "e164"),
    [
        ("13912345678", "+8613912345678"),
        ("139 1234 5678", "+8613912345678"),
        ("139-1234-5678", "+8613912345678"),
        ("+86 139 1234 5678", "+8613912345678"),
        ("008613912345678", "+8613912345678"),
        ("+1 650-253-0000", "+16502530000"),
        ("+44 7911 123456", "+447911123456"),
        ("+852 5123 4567", "+85251234567"),
    ],
)
def test_phone_numbers_normalise_to_e164_with_china_as_default_region(given_text: str, e164: str) -> None:
    assert normalise_phone(given_text) == e164


@pytest.mark.parametrize(
    ("given_text", "reason"),
    [
        ("", None),
        ("123", None),
        ("1391234567", None),  # one digit short
        ("not a number", None),
        ("+999 1234 5678", None),
        ("1" * 40, None),
        ("010 8888 8888", "not_mobile"),  # a Beijing landline cannot receive a code
    ],
)
def test_bad_phone_numbers_are_refused_with_invalid_phone(given_text: str, reason: str | None) -> None:
    with pytest.raises(DomainError) as exc:
        normalise_phone(given_text)
    assert exc.value.code == "invalid_phone"
    assert exc.value.details.get("reason") == reason


# -- e-mail --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_text", "normalised"),
    [
        ("Alice@Example.COM", "alice@example.com"),
        ("  bob.smith+bank@mail.example.cn ", "bob.smith+bank@mail.example.cn"),
        ("用户@例子.中国", "用户@例子.中国"),
    ],
)
def test_email_addresses_normalise_to_lower_case_without_dns(given_text: str, normalised: str) -> None:
    assert normalise_email(given_text) == normalised


@pytest.mark.parametrize(
    "given_text",
    [
        "",
        "plainaddress",
        "a@b",
        "two@@example.com",
        "bob@localhost",
        "x@test",
        "a b@example.com",
        "a" * 250 + "@ex.com",
    ],
)
def test_bad_email_addresses_are_refused_with_invalid_email(given_text: str) -> None:
    with pytest.raises(DomainError) as exc:
        normalise_email(given_text)
    assert exc.value.code == "invalid_email"


def test_masks_show_only_enough_to_recognise() -> None:
    assert mask_phone("+8613912345678") == "+86139****5678"
    assert mask_phone("+16502530000") == "+16502**0000"
    assert mask_email("alice@example.com") == "a***@example.com"
    assert mask_id_number("11010119900517001X") == "**************001X"


# -- names ---------------------------------------------------------------------------------------


def test_legal_names_in_chinese_or_latin_are_stored_as_given_in_nfc() -> None:
    assert normalise_legal_name("  张伟 ") == ("张伟", NameScript.CHINESE)
    assert normalise_legal_name("阿依古丽·买买提") == ("阿依古丽·买买提", NameScript.CHINESE)
    decomposed = "Jose\u0301  María O'Neil-Smith"
    assert normalise_legal_name(decomposed) == ("José María O'Neil-Smith", NameScript.LATIN)


@pytest.mark.parametrize("name", ["", "   ", "张 Wei", "R2D2", "Иван", "Bob <script>", "·", "x" * 101, "-Bob"])
def test_bad_legal_names_are_refused(name: str) -> None:
    with pytest.raises(DomainError) as exc:
        normalise_legal_name(name)
    assert exc.value.code == "invalid_name"


def test_chinese_names_get_pinyin_search_keys_with_every_surname_reading() -> None:
    assert name_search_keys("张伟", NameScript.CHINESE) == ["张伟", "zhangwei", "zw"]
    keys = name_search_keys("曾小明", NameScript.CHINESE)
    assert keys[0] == "曾小明"
    assert sorted(keys[1:]) == ["cengxiaoming", "cxm", "zengxiaoming", "zxm"]
    assert name_search_keys("José O'Neil", NameScript.LATIN) == ["joséoneil"]
    assert search_key(" Zhang  Wei ") == "zhangwei"


# -- dates of birth ------------------------------------------------------------------------------


def test_customers_must_be_eighteen_on_the_bank_calendar() -> None:
    check_birth_date(date(2008, 11, 27), NOW)  # 18 today in Beijing
    with pytest.raises(DomainError) as exc:
        check_birth_date(date(2008, 11, 28), NOW)
    assert exc.value.code == "customer_underage"
    # 2026-11-26 20:00 UTC is already the 27th in Beijing.
    check_birth_date(date(2008, 11, 27), datetime(2026, 11, 26, 20, 0, tzinfo=UTC))
    with pytest.raises(DomainError):
        check_birth_date(date(2008, 11, 27), datetime(2026, 11, 26, 15, 59, tzinfo=UTC))


def test_a_leap_day_birthday_comes_of_age_on_the_first_of_march() -> None:
    with pytest.raises(DomainError):
        check_birth_date(date(2008, 2, 29), datetime(2026, 2, 28, 4, 0, tzinfo=UTC))
    check_birth_date(date(2008, 2, 29), datetime(2026, 3, 1, 4, 0, tzinfo=UTC))


@pytest.mark.parametrize("birth", [date(2030, 1, 1), date(1899, 12, 31)])
def test_impossible_birth_dates_are_refused(birth: date) -> None:
    with pytest.raises(DomainError) as exc:
        check_birth_date(birth, NOW)
    assert exc.value.code == "invalid_birth_date"


# -- national IDs --------------------------------------------------------------------------------

VALID_RIC = "11010519491231002X"  # the GB 11643 example: Beijing Chaoyang, 1949-12-31, check X


def test_prc_resident_id_with_valid_checksum_is_accepted_and_compacted() -> None:
    assert normalise_id_number(IdType.PRC_RESIDENT_ID, VALID_RIC, date(1949, 12, 31)) == VALID_RIC
    assert normalise_id_number(IdType.PRC_RESIDENT_ID, "110105 19491231 002x", date(1949, 12, 31)) == VALID_RIC


def test_prc_resident_id_with_wrong_check_digit_is_refused() -> None:
    with pytest.raises(DomainError) as exc:
        normalise_id_number(IdType.PRC_RESIDENT_ID, VALID_RIC[:-1] + "3", date(1949, 12, 31))
    assert (exc.value.code, exc.value.details["reason"]) == ("invalid_id_number", "checksum")


def test_prc_resident_id_whose_birth_date_differs_from_the_profile_is_refused() -> None:
    with pytest.raises(DomainError) as exc:
        normalise_id_number(IdType.PRC_RESIDENT_ID, VALID_RIC, date(1949, 12, 30))
    assert exc.value.code == "id_birth_date_mismatch"


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        (VALID_RIC[:-1], "length"),
        (VALID_RIC + "1", "length"),
        ("110105194912310", "length"),  # the old 15-digit form is not accepted
        ("11010519491231A02X", "format"),
        ("990105194912310023", "component"),  # right check digit, no such region
        ("110105194913310021", "component"),  # right check digit, no 13th month
    ],
)
def test_malformed_prc_resident_ids_are_refused(number: str, reason: str) -> None:
    with pytest.raises(DomainError) as exc:
        normalise_id_number(IdType.PRC_RESIDENT_ID, number, date(1949, 12, 31))
    assert (exc.value.code, exc.value.details["reason"]) == ("invalid_id_number", reason)


@pytest.mark.parametrize(
    ("id_type", "number", "expected"),
    [
        (IdType.PASSPORT, "e 1234 5678", "E12345678"),
        (IdType.HK_MACAU_PERMIT, "H12345678", "H12345678"),
        (IdType.TAIWAN_PERMIT, "12345678", "12345678"),
        (IdType.FOREIGN_PERMANENT_RESIDENT_ID, "USA123456789012", "USA123456789012"),
    ],
)
def test_other_documents_are_checked_by_shape(id_type: IdType, number: str, expected: str) -> None:
    assert normalise_id_number(id_type, number, date(1980, 1, 1)) == expected


@pytest.mark.parametrize(
    ("id_type", "number"),
    [(IdType.PASSPORT, "E1"), (IdType.HK_MACAU_PERMIT, "X12345678"), (IdType.TAIWAN_PERMIT, "1234")],
)
def test_documents_of_the_wrong_shape_are_refused(id_type: IdType, number: str) -> None:
    with pytest.raises(DomainError) as exc:
        normalise_id_number(id_type, number, date(1980, 1, 1))
    assert exc.value.code == "invalid_id_number"


# -- addresses -----------------------------------------------------------------------------------


def test_addresses_are_normalised_and_bounded() -> None:
    clean = normalise_address(Address("cn", " 上海市 ", "上海市", ("浦东新区  世纪大道 100 号", "1 楼"), "200120"))
    assert clean == Address("CN", "上海市", "上海市", ("浦东新区 世纪大道 100 号", "1 楼"), "200120")
    for bad in (
        Address("CHN", "x", "y", ("z",)),
        Address("CN", "", "y", ("z",)),
        Address("CN", "x", "y", ()),
        Address("CN", "x", "y", ("a", "b", "c", "d")),
        Address("CN", "x", "y", ("z" * 129,)),
        Address("CN", "x", "y", ("z",), "12345"),
        Address("CN", "x", "y", ("line\x00",)),
    ):
        with pytest.raises(DomainError) as exc:
            normalise_address(bad)
        assert exc.value.code == "invalid_address"


# -- KYC state machine ---------------------------------------------------------------------------


def test_kyc_can_be_submitted_except_once_verified_and_decided_only_when_pending() -> None:
    for status in (KycStatus.NOT_SUBMITTED, KycStatus.PENDING, KycStatus.REJECTED):
        check_can_submit(status)
    with pytest.raises(DomainError, match="verified"):
        check_can_submit(KycStatus.VERIFIED)
    check_can_decide(KycStatus.PENDING)
    with pytest.raises(DomainError) as missing:
        check_can_decide(KycStatus.NOT_SUBMITTED)
    assert missing.value.code == "kyc_profile_missing"
    for status in (KycStatus.VERIFIED, KycStatus.REJECTED):
        with pytest.raises(DomainError) as exc:
            check_can_decide(status)
        assert exc.value.code == "invalid_kyc_transition"
    assert KycDecision.VERIFY.status is KycStatus.VERIFIED
    assert KycDecision.REJECT.status is KycStatus.REJECTED


# -- verification codes and cursors --------------------------------------------------------------


def _verification(**changes: object) -> Verification:
    vid = uuid.UUID(int=7)
    fields: dict[str, object] = {
        "id": vid,
        "purpose": VerificationPurpose.REGISTRATION,
        "kind": ContactKind.PHONE,
        "address": "+8613912345678",
        "customer_id": None,
        "code_hash": code_digest(KEY, vid, "123456"),
        "attempts": 0,
        "sends": 1,
        "last_sent_at": NOW,
        "expires_at": NOW + timedelta(minutes=10),
        "consumed_at": None,
    }
    fields.update(changes)
    return Verification(**fields)  # type: ignore[arg-type]


def test_codes_match_only_exactly_and_only_under_the_same_key() -> None:
    v = _verification()
    assert code_matches(KEY, v, "123456")
    for wrong in ("123457", "12345", "1234567", "١٢٣٤٥٦", " 23456", ""):
        assert not code_matches(KEY, v, wrong)
    assert not code_matches(b"x" * 32, v, "123456")


def test_a_verification_is_unusable_once_used_exhausted_or_expired() -> None:
    check_usable(_verification(), NOW + timedelta(minutes=9, seconds=59))
    cases = [
        (_verification(consumed_at=NOW), NOW, "verification_already_used"),
        (_verification(attempts=MAX_CODE_ATTEMPTS), NOW, "verification_attempts_exhausted"),
        (_verification(), NOW + timedelta(minutes=10), "verification_expired"),
    ]
    for v, at, code in cases:
        with pytest.raises(DomainError) as exc:
            check_usable(v, at)
        assert exc.value.code == code


def test_resend_waits_a_minute_and_stops_after_five_codes() -> None:
    with pytest.raises(DomainError) as exc:
        check_resend(_verification(), NOW + timedelta(seconds=20))
    assert (exc.value.code, exc.value.details) == ("verification_rate_limited", {"retry_after_s": 40})
    check_resend(_verification(), NOW + timedelta(seconds=60))
    with pytest.raises(DomainError) as limit:
        check_resend(_verification(sends=5), NOW + timedelta(hours=1))
    assert limit.value.code == "verification_rate_limited"


def test_cursors_round_trip_and_garbage_is_refused() -> None:
    cid = uuid.uuid4()
    assert decode_cursor(encode_cursor(cid)) == cid
    at = datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)
    assert decode_queue_cursor(encode_queue_cursor(at, cid)) == (at, cid)
    for garbage in ("", "abc", "!!!", encode_cursor(cid) + "AA", "x" * 100, encode_queue_cursor(at, cid)[:-4]):
        for decode in (decode_cursor, decode_queue_cursor):
            with pytest.raises(DomainError) as exc:
                decode(garbage)
            assert exc.value.code == "invalid_cursor"
    with pytest.raises(DomainError):
        decode_cursor(encode_queue_cursor(at, cid))
    with pytest.raises(DomainError):
        decode_queue_cursor(encode_cursor(cid))


# -- properties ----------------------------------------------------------------------------------

MOBILE_PREFIXES = ["130", "135", "139", "150", "177", "186", "199"]


@given(
    prefix=st.sampled_from(MOBILE_PREFIXES),
    subscriber=st.integers(0, 10**8 - 1),
    style=st.sampled_from(["{p}{s}", "+86{p}{s}", "+86 {p} {a} {b}", "{p}-{a}-{b}", "0086{p}{s}", " ({p}) {a} {b} "]),
)
def test_property_phone_normalisation_is_format_independent_and_idempotent(
    prefix: str, subscriber: int, style: str
) -> None:
    s = f"{subscriber:08d}"
    e164 = f"+86{prefix}{s}"
    assert normalise_phone(style.format(p=prefix, s=s, a=s[:4], b=s[4:])) == e164
    assert normalise_phone(e164) == e164


@given(
    local=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,20}[A-Za-z0-9]", fullmatch=True).filter(lambda s: ".." not in s),
    domain=st.from_regex(r"[A-Za-z0-9]{1,20}\.(com|cn|org|net)", fullmatch=True),
)
def test_property_email_normalisation_is_idempotent_and_lower_case(local: str, domain: str) -> None:
    normalised = normalise_email(f"{local}@{domain}")
    assert normalised == f"{local}@{domain}".lower()
    assert normalise_email(normalised) == normalised


@given(
    birth=st.dates(min_value=date(1930, 1, 1), max_value=date(2007, 12, 31)),
    position=st.integers(0, 16),
    delta=st.integers(1, 9),
)
def test_property_any_single_digit_change_of_a_valid_resident_id_is_refused(
    birth: date, position: int, delta: int
) -> None:
    number = make_ric(birth)
    assert normalise_id_number(IdType.PRC_RESIDENT_ID, number, birth) == number
    assert ric.is_valid(number)
    digit = (int(number[position]) + delta) % 10
    changed = number[:position] + str(digit) + number[position + 1 :]
    with pytest.raises(DomainError) as exc:
        normalise_id_number(IdType.PRC_RESIDENT_ID, changed, birth)
    # GB 11643's MOD 11-2 check catches every single-digit substitution.
    assert (exc.value.code, exc.value.details["reason"]) == ("invalid_id_number", "checksum")


@given(st.text(alphabet=st.characters(min_codepoint=48, max_codepoint=90), min_size=4, max_size=30))
def test_property_masked_id_numbers_keep_only_the_last_four(number: str) -> None:
    masked = mask_id_number(number)
    assert len(masked) == len(number)
    assert masked[-4:] == number[-4:]
    assert set(masked[:-4]) <= {"*"}


@given(
    st.lists(
        st.sampled_from(list("张王李赵伟芳娜敏静丽强磊军洋") + list("abcXYZéÉñ ·-'") + ["e\u0301", "\u0301"]),
        min_size=1,
        max_size=40,
    ).map("".join)
)
def test_property_legal_name_normalisation_is_idempotent(text: str) -> None:
    try:
        name, script = normalise_legal_name(text)
    except DomainError as exc:
        assert exc.code == "invalid_name"
        return
    assert normalise_legal_name(name) == (name, script)
    assert unicodedata.is_normalized("NFC", name)
    assert name == name.strip() and "  " not in name
    assert 1 <= len(name) <= 100
