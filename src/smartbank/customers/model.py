"""Customer rules in plain Python: no database, no web framework.

Contact details are validated and normalised here (phone numbers to E.164 with ``phonenumbers``,
e-mail addresses by syntax with ``email-validator``, never a DNS lookup); so are the KYC profile
(legal name, adult date of birth, national ID with the GB 11643 checksum for PRC resident IDs,
structured address), the KYC state machine, one-time verification codes and cursors.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Final
from zoneinfo import ZoneInfo

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from stdnum.cn import ric
from stdnum.exceptions import InvalidChecksum, InvalidComponent, InvalidFormat, InvalidLength, ValidationError

from smartbank.customers.errors import CustomerErrorCode
from smartbank.kernel.errors import DomainError, ErrorCode

#: Phone numbers without a country prefix are read as numbers of this region.
DEFAULT_PHONE_REGION: Final = "CN"
#: The bank's calendar: ages are counted in this time zone.
BANK_TIMEZONE: Final = ZoneInfo("Asia/Shanghai")
ADULT_AGE_YEARS: Final = 18
OLDEST_BIRTH_DATE: Final = date(1900, 1, 1)

MAX_PHONE_INPUT_CHARS: Final = 32
MAX_EMAIL_CHARS: Final = 254
MAX_NAME_CHARS: Final = 100
MAX_REASON_CHARS: Final = 500
MAX_TERMS_VERSION_CHARS: Final = 32
MAX_ADDRESS_LINES: Final = 3
MAX_ADDRESS_LINE_CHARS: Final = 128
MAX_REGION_CHARS: Final = 64
MAX_POSTAL_CODE_CHARS: Final = 16
MAX_SEARCH_CHARS: Final = 100
#: Pinyin readings of a Chinese name stored for search (the surname's readings times the rest).
MAX_NAME_KEYS: Final = 8

CODE_DIGITS: Final = 6
VERIFICATION_TTL: Final = timedelta(minutes=10)
MAX_CODE_ATTEMPTS: Final = 5
#: A new code for the same verification no sooner than this after the last one, and at most
#: ``MAX_SENDS`` codes per verification.
RESEND_INTERVAL: Final = timedelta(seconds=60)
MAX_SENDS: Final = 5
#: Verifications started for one address within ``START_WINDOW``.
MAX_STARTS_PER_ADDRESS: Final = 5
START_WINDOW: Final = timedelta(hours=1)

#: Verifications are deleted this long after they expired (well past the rate-limit window).
VERIFICATION_RETENTION: Final = timedelta(days=1)
PURGE_BATCH: Final = 1000

DEFAULT_PAGE: Final = 20
MAX_PAGE: Final = 100


def _invalid(code: CustomerErrorCode, message: str, **details: object) -> DomainError:
    return DomainError(code, message, **details)


# -- contact details -----------------------------------------------------------------------------


class ContactKind(StrEnum):
    """What a verification proves the customer holds."""

    PHONE = "phone"
    EMAIL = "email"


def normalise_phone(text: str) -> str:
    """A mobile number in E.164 (``+8613912345678``). National numbers are read as Chinese."""
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_PHONE_INPUT_CHARS:
        raise _invalid(CustomerErrorCode.INVALID_PHONE, "phone number is missing or too long", field="phone")
    try:
        number = phonenumbers.parse(text, DEFAULT_PHONE_REGION)
    except phonenumbers.NumberParseException:
        raise _invalid(CustomerErrorCode.INVALID_PHONE, "not a phone number", field="phone") from None
    if not phonenumbers.is_valid_number(number):
        raise _invalid(CustomerErrorCode.INVALID_PHONE, "not a valid phone number", field="phone")
    kind = phonenumbers.number_type(number)
    if kind not in (phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE):
        raise _invalid(
            CustomerErrorCode.INVALID_PHONE,
            "the number cannot receive text messages",
            field="phone",
            reason="not_mobile",
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(text: str) -> str:
    """An e-mail address checked by syntax only (no DNS), lower-cased so that it works as a login."""
    if not isinstance(text, str) or not 3 <= len(text.strip()) <= MAX_EMAIL_CHARS:
        raise _invalid(CustomerErrorCode.INVALID_EMAIL, "e-mail address is missing or too long", field="email")
    try:
        checked = validate_email(text.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise _invalid(CustomerErrorCode.INVALID_EMAIL, str(exc), field="email") from None
    normalised = checked.normalized.lower()
    if len(normalised) > MAX_EMAIL_CHARS:
        raise _invalid(CustomerErrorCode.INVALID_EMAIL, "e-mail address is too long", field="email")
    return normalised


def normalise_contact(kind: ContactKind, text: str) -> str:
    return normalise_phone(text) if kind is ContactKind.PHONE else normalise_email(text)


def mask_phone(e164: str) -> str:
    """``+8613912345678`` → ``+86139****5678``: enough for a person to recognise, not to dial."""
    if len(e164) <= 8:
        return "*" * len(e164)
    prefix = 6 if len(e164) > 11 else 3
    return e164[:prefix] + "*" * (len(e164) - prefix - 4) + e164[-4:]


def mask_email(address: str) -> str:
    """``alice@example.com`` → ``a***@example.com``."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}***@{domain}" if local else "***"


def mask_contact(kind: ContactKind, address: str) -> str:
    return mask_phone(address) if kind is ContactKind.PHONE else mask_email(address)


# -- legal name ----------------------------------------------------------------------------------


class NameScript(StrEnum):
    CHINESE = "chinese"
    LATIN = "latin"


#: Separators allowed between the parts of a name: space, hyphen, apostrophes, full stop, and the
#: middle dots used in Chinese transcriptions of foreign and minority names.
_NAME_SEPARATORS: Final = frozenset(" -'’.·•・")


def _char_script(ch: str) -> NameScript | None:
    name = unicodedata.name(ch, "")
    if name.startswith(("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH")):
        return NameScript.CHINESE
    if name.startswith("LATIN") and unicodedata.category(ch).startswith("L"):
        return NameScript.LATIN
    if unicodedata.category(ch) == "Mn":  # a combining accent left after NFC: belongs to a Latin letter
        return NameScript.LATIN
    return None


def normalise_legal_name(text: str) -> tuple[str, NameScript]:
    """The name as given, NFC-normalised with runs of spaces collapsed; in Chinese or Latin script."""
    if not isinstance(text, str):
        raise _invalid(CustomerErrorCode.INVALID_NAME, "legal name is required", field="legal_name")
    name = " ".join(unicodedata.normalize("NFC", text).split())
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise _invalid(
            CustomerErrorCode.INVALID_NAME, f"legal name must be 1..{MAX_NAME_CHARS} characters", field="legal_name"
        )
    scripts: set[NameScript] = set()
    for ch in name:
        if ch in _NAME_SEPARATORS:
            continue
        script = _char_script(ch)
        if script is None:
            raise _invalid(
                CustomerErrorCode.INVALID_NAME,
                "legal name may hold only Chinese characters or Latin letters",
                field="legal_name",
            )
        scripts.add(script)
    if not scripts:
        raise _invalid(CustomerErrorCode.INVALID_NAME, "legal name has no letters", field="legal_name")
    if len(scripts) > 1:
        raise _invalid(CustomerErrorCode.INVALID_NAME, "legal name mixes Chinese and Latin script", field="legal_name")
    (script,) = scripts
    if script is NameScript.LATIN and not name[0].isalpha():
        raise _invalid(CustomerErrorCode.INVALID_NAME, "legal name must start with a letter", field="legal_name")
    return name, script


def search_key(text: str) -> str:
    """The form names and queries are compared in: compatibility-folded, case-folded, no separators."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if ch not in _NAME_SEPARATORS and not ch.isspace())


def name_search_keys(name: str, script: NameScript) -> list[str]:
    """Keys a staff search by name matches by prefix: the folded name and, for a Chinese name, its
    pinyin without tones (every reading of the surname, the usual reading of the rest)."""
    keys = [search_key(name)]
    if script is NameScript.CHINESE:
        from pypinyin import Style, lazy_pinyin, pinyin

        chars = [ch for ch in name if ch not in _NAME_SEPARATORS]
        rest = "".join(lazy_pinyin("".join(chars[1:]), style=Style.NORMAL))
        rest_initials = "".join(lazy_pinyin("".join(chars[1:]), style=Style.FIRST_LETTER))
        surname_readings = pinyin(chars[0], style=Style.NORMAL, heteronym=True)[0]
        # Full pinyin, then initials as people type them (张伟 → zhangwei, zw).
        for candidate in [r + rest for r in surname_readings] + [r[:1] + rest_initials for r in surname_readings]:
            key = search_key(candidate)
            if key and key not in keys and len(keys) < MAX_NAME_KEYS:
                keys.append(key)
    return keys


# -- date of birth -------------------------------------------------------------------------------


def bank_today(now: datetime) -> date:
    return now.astimezone(BANK_TIMEZONE).date()


def age_on(birth_date: date, today: date) -> int:
    return today.year - birth_date.year - ((today.month, today.day) < (birth_date.month, birth_date.day))


def check_birth_date(birth_date: date, now: datetime) -> None:
    """A plausible date of birth of an adult (18 or older today, in the bank's time zone)."""
    if not isinstance(birth_date, date) or isinstance(birth_date, datetime):
        raise _invalid(CustomerErrorCode.INVALID_BIRTH_DATE, "date of birth must be a date", field="date_of_birth")
    today = bank_today(now)
    if birth_date > today or birth_date < OLDEST_BIRTH_DATE:
        raise _invalid(
            CustomerErrorCode.INVALID_BIRTH_DATE, "date of birth is not a plausible date", field="date_of_birth"
        )
    if age_on(birth_date, today) < ADULT_AGE_YEARS:
        raise _invalid(
            CustomerErrorCode.CUSTOMER_UNDERAGE,
            f"customers must be {ADULT_AGE_YEARS} or older",
            field="date_of_birth",
        )


# -- national ID ---------------------------------------------------------------------------------


class IdType(StrEnum):
    PRC_RESIDENT_ID = "prc_resident_id"
    PASSPORT = "passport"
    HK_MACAU_PERMIT = "hk_macau_permit"
    TAIWAN_PERMIT = "taiwan_permit"
    FOREIGN_PERMANENT_RESIDENT_ID = "foreign_permanent_resident_id"
    OTHER = "other"


#: Shapes of the documents whose checksum we cannot verify (after removing spaces and hyphens and
#: upper-casing): Mainland Travel Permits for Hong Kong and Macau residents (H or M and 8 or 10
#: digits), for Taiwan residents (8 or 10 digits), foreign permanent resident ID cards (15 or 18).
_ID_SHAPES: Final[dict[IdType, re.Pattern[str]]] = {
    IdType.PASSPORT: re.compile(r"^[A-Z0-9]{5,20}$"),
    IdType.HK_MACAU_PERMIT: re.compile(r"^[HM][0-9]{8}(?:[0-9]{2})?$"),
    IdType.TAIWAN_PERMIT: re.compile(r"^[0-9]{8}(?:[0-9]{2})?$"),
    IdType.FOREIGN_PERMANENT_RESIDENT_ID: re.compile(r"^[A-Z0-9]{15}$|^[0-9]{17}[0-9X]$"),
    IdType.OTHER: re.compile(r"^[A-Z0-9]{4,30}$"),
}


def compact_id_number(number: str) -> str:
    return "".join(ch for ch in number if ch not in " -\t").upper()


def normalise_id_number(id_type: IdType, number: str, birth_date: date) -> str:
    """The ID number without separators, upper-cased; a PRC resident ID must pass the GB 11643
    check digit, name a known region, and carry the given date of birth."""
    if not isinstance(number, str) or not 1 <= len(number) <= 40:
        raise _invalid(CustomerErrorCode.INVALID_ID_NUMBER, "ID number is missing or too long", field="id_number")
    compact = compact_id_number(number)
    if id_type is IdType.PRC_RESIDENT_ID:
        try:
            compact = ric.validate(compact)
        except InvalidLength:
            raise _invalid(
                CustomerErrorCode.INVALID_ID_NUMBER,
                "a resident ID has 18 characters",
                field="id_number",
                reason="length",
            ) from None
        except InvalidFormat:
            raise _invalid(
                CustomerErrorCode.INVALID_ID_NUMBER,
                "a resident ID is 17 digits and a check character",
                field="id_number",
                reason="format",
            ) from None
        except InvalidChecksum:
            raise _invalid(
                CustomerErrorCode.INVALID_ID_NUMBER,
                "the resident ID's check digit is wrong",
                field="id_number",
                reason="checksum",
            ) from None
        except InvalidComponent:
            raise _invalid(
                CustomerErrorCode.INVALID_ID_NUMBER,
                "the resident ID has an impossible date or an unknown region",
                field="id_number",
                reason="component",
            ) from None
        except ValidationError:
            raise _invalid(CustomerErrorCode.INVALID_ID_NUMBER, "not a resident ID number", field="id_number") from None
        if ric.get_birth_date(compact) != birth_date:
            raise _invalid(
                CustomerErrorCode.ID_BIRTH_DATE_MISMATCH,
                "the resident ID's date of birth differs from the date of birth given",
                field="id_number",
            )
        return compact
    if not _ID_SHAPES[id_type].match(compact):
        raise _invalid(
            CustomerErrorCode.INVALID_ID_NUMBER,
            f"not a well-formed {id_type.value} number",
            field="id_number",
            reason="format",
        )
    return compact


def mask_id_number(number: str) -> str:
    """All but the last four characters hidden: ``**************001X``."""
    return "*" * max(len(number) - 4, 0) + number[-4:]


def keyed_digest(key: bytes, purpose: str, value: str) -> bytes:
    """HMAC-SHA256 of ``value`` for one ``purpose``: lookups without keeping a guessable plain hash."""
    return hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()


def id_number_digest(key: bytes, id_type: IdType, number: str) -> bytes:
    return keyed_digest(key, "national-id", f"{id_type.value}:{number}")


# -- address -------------------------------------------------------------------------------------

_COUNTRY_RE: Final = re.compile(r"^[A-Z]{2}$")
_CN_POSTAL_RE: Final = re.compile(r"^[0-9]{6}$")
_POSTAL_RE: Final = re.compile(r"^[A-Z0-9][A-Z0-9 -]{0,15}$")


@dataclass(frozen=True, slots=True)
class Address:
    country: str  # ISO 3166-1 alpha-2
    region: str  # province, autonomous region, municipality, state
    city: str
    lines: tuple[str, ...]
    postal_code: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "country": self.country,
            "region": self.region,
            "city": self.city,
            "lines": list(self.lines),
            "postal_code": self.postal_code,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Address:
        lines = data.get("lines")
        return cls(
            country=str(data["country"]),
            region=str(data["region"]),
            city=str(data["city"]),
            lines=tuple(str(line) for line in lines) if isinstance(lines, list) else (),
            postal_code=None if data.get("postal_code") is None else str(data["postal_code"]),
        )


def _address_text(value: object, field: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise _invalid(CustomerErrorCode.INVALID_ADDRESS, f"{field} is required", field=field)
    clean = " ".join(unicodedata.normalize("NFC", value).split())
    if not 1 <= len(clean) <= max_chars or any(unicodedata.category(ch).startswith("C") for ch in clean):
        raise _invalid(
            CustomerErrorCode.INVALID_ADDRESS, f"{field} must be 1..{max_chars} printable characters", field=field
        )
    return clean


def normalise_address(address: Address) -> Address:
    country = address.country.strip().upper() if isinstance(address.country, str) else ""
    if not _COUNTRY_RE.match(country):
        raise _invalid(CustomerErrorCode.INVALID_ADDRESS, "country is an ISO 3166 two-letter code", field="country")
    region = _address_text(address.region, "region", MAX_REGION_CHARS)
    city = _address_text(address.city, "city", MAX_REGION_CHARS)
    if not 1 <= len(address.lines) <= MAX_ADDRESS_LINES:
        raise _invalid(CustomerErrorCode.INVALID_ADDRESS, f"an address has 1..{MAX_ADDRESS_LINES} lines", field="lines")
    lines = tuple(_address_text(line, "lines", MAX_ADDRESS_LINE_CHARS) for line in address.lines)
    postal: str | None = None
    if address.postal_code is not None and address.postal_code.strip():
        postal = " ".join(address.postal_code.upper().split())
        pattern = _CN_POSTAL_RE if country == "CN" else _POSTAL_RE
        if len(postal) > MAX_POSTAL_CODE_CHARS or not pattern.match(postal):
            raise _invalid(CustomerErrorCode.INVALID_ADDRESS, "postal code is not well formed", field="postal_code")
    return Address(country, region, city, lines, postal)


# -- KYC -----------------------------------------------------------------------------------------


class KycStatus(StrEnum):
    NOT_SUBMITTED = "not_submitted"
    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"


class KycDecision(StrEnum):
    VERIFY = "verify"
    REJECT = "reject"

    @property
    def status(self) -> KycStatus:
        return KycStatus.VERIFIED if self is KycDecision.VERIFY else KycStatus.REJECTED


#: From which statuses a customer may (re)submit a KYC profile. A pending profile may be corrected
#: before a decision; a verified identity is not changed by the customer.
SUBMITTABLE: Final = frozenset({KycStatus.NOT_SUBMITTED, KycStatus.PENDING, KycStatus.REJECTED})


def check_can_submit(status: KycStatus) -> None:
    if status not in SUBMITTABLE:
        raise _invalid(
            CustomerErrorCode.INVALID_KYC_TRANSITION,
            f"a KYC profile cannot be submitted while the status is {status.value}",
            current=status.value,
        )


def check_can_decide(status: KycStatus) -> None:
    if status is KycStatus.NOT_SUBMITTED:
        raise _invalid(CustomerErrorCode.KYC_PROFILE_MISSING, "the customer has not submitted a KYC profile")
    if status is not KycStatus.PENDING:
        raise _invalid(
            CustomerErrorCode.INVALID_KYC_TRANSITION,
            f"only a pending KYC profile can be decided; it is {status.value}",
            current=status.value,
        )


def check_reason(reason: str) -> str:
    clean = " ".join(reason.split()) if isinstance(reason, str) else ""
    if not 1 <= len(clean) <= MAX_REASON_CHARS:
        raise _invalid(
            CustomerErrorCode.REASON_REQUIRED,
            f"a reason of 1..{MAX_REASON_CHARS} characters is required",
            field="reason",
        )
    return clean


@dataclass(frozen=True, slots=True)
class KycSubmission:
    legal_name: str
    date_of_birth: date
    id_type: IdType
    id_number: str
    address: Address


@dataclass(frozen=True, slots=True)
class CheckedKyc:
    """A submission after validation: what is stored."""

    legal_name: str
    name_script: NameScript
    name_keys: list[str]
    date_of_birth: date
    id_type: IdType
    id_number: str
    address: Address


def check_kyc(submission: KycSubmission, now: datetime) -> CheckedKyc:
    name, script = normalise_legal_name(submission.legal_name)
    check_birth_date(submission.date_of_birth, now)
    try:
        id_type = IdType(submission.id_type)
    except ValueError:
        raise _invalid(CustomerErrorCode.INVALID_ID_NUMBER, "unknown ID type", field="id_type") from None
    number = normalise_id_number(id_type, submission.id_number, submission.date_of_birth)
    address = normalise_address(submission.address)
    return CheckedKyc(name, script, name_search_keys(name, script), submission.date_of_birth, id_type, number, address)


# -- tiers and limits ----------------------------------------------------------------------------

DEFAULT_TIER: Final = "basic"
_TIER_RE: Final = re.compile(r"^[a-z][a-z0-9_]{1,31}$")


def check_tier_code(tier: str) -> str:
    if not isinstance(tier, str) or not _TIER_RE.match(tier):
        raise _invalid(CustomerErrorCode.UNKNOWN_TIER, "no such tier", field="tier")
    return tier


@dataclass(frozen=True, slots=True)
class Tier:
    code: str
    per_payment_limit_minor: int
    daily_limit_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class PaymentProfile:
    """What the banking domain needs to accept a payment from a customer."""

    customer_id: uuid.UUID
    kyc_status: KycStatus
    tier: str
    per_payment_limit_minor: int
    daily_limit_minor: int
    currency: str


# -- requests ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """Where a request came from, for the audit rows of the use case it calls (all optional)."""

    ip: str | None = None
    device: str | None = None
    request_id: str | None = None


# -- customers as others see them ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CustomerProfile:
    """A customer as shown to themselves or to staff: the ID number is masked."""

    id: uuid.UUID
    phone: str | None
    email: str | None
    legal_name: str | None
    date_of_birth: date | None
    id_type: IdType | None
    id_number_masked: str | None
    address: Address | None
    kyc_status: KycStatus
    kyc_submitted_at: datetime | None
    kyc_reason: str | None
    tier: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class CustomerPage:
    items: list[CustomerProfile]
    next_cursor: str | None


# -- verification codes --------------------------------------------------------------------------


class VerificationPurpose(StrEnum):
    REGISTRATION = "registration"
    CONTACT_CHANGE = "contact_change"
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a purpose name


def new_code() -> str:
    """A uniformly random 6-digit code from the operating system's CSPRNG."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def code_digest(key: bytes, verification_id: uuid.UUID, code: str) -> bytes:
    return keyed_digest(key, "verification-code", f"{verification_id}:{code}")


@dataclass(frozen=True, slots=True)
class Verification:
    id: uuid.UUID
    purpose: VerificationPurpose
    kind: ContactKind
    address: str
    customer_id: uuid.UUID | None
    code_hash: bytes
    attempts: int
    sends: int
    last_sent_at: datetime
    expires_at: datetime
    consumed_at: datetime | None


def check_usable(v: Verification, now: datetime) -> None:
    """Refuse a code check on a verification that is used, exhausted or expired (nothing written)."""
    if v.consumed_at is not None:
        raise _invalid(CustomerErrorCode.VERIFICATION_ALREADY_USED, "this verification has already been used")
    if v.attempts >= MAX_CODE_ATTEMPTS:
        raise _invalid(
            CustomerErrorCode.VERIFICATION_ATTEMPTS_EXHAUSTED, "too many wrong codes; start a new verification"
        )
    if now >= v.expires_at:
        raise _invalid(CustomerErrorCode.VERIFICATION_EXPIRED, "the code has expired; ask for a new one")


def code_matches(key: bytes, v: Verification, code: str) -> bool:
    if not isinstance(code, str) or len(code) != CODE_DIGITS or not code.isascii() or not code.isdigit():
        return False
    return hmac.compare_digest(code_digest(key, v.id, code), v.code_hash)


def check_resend(v: Verification, now: datetime) -> None:
    if v.consumed_at is not None:
        raise _invalid(CustomerErrorCode.VERIFICATION_ALREADY_USED, "this verification has already been used")
    if v.attempts >= MAX_CODE_ATTEMPTS:
        raise _invalid(
            CustomerErrorCode.VERIFICATION_ATTEMPTS_EXHAUSTED, "too many wrong codes; start a new verification"
        )
    if v.sends >= MAX_SENDS:
        raise _invalid(
            CustomerErrorCode.VERIFICATION_RATE_LIMITED, "no more codes for this verification; start a new one"
        )
    wait = v.last_sent_at + RESEND_INTERVAL - now
    if wait > timedelta(0):
        raise _invalid(
            CustomerErrorCode.VERIFICATION_RATE_LIMITED,
            "a new code can be sent a little later",
            retry_after_s=int(wait.total_seconds()) + (1 if wait.total_seconds() % 1 else 0),
        )


# -- cursors -------------------------------------------------------------------------------------


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def encode_cursor(customer_id: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(b"c" + customer_id.bytes).decode().rstrip("=")


def decode_cursor(cursor: str) -> uuid.UUID:
    try:
        if not isinstance(cursor, str) or len(cursor) > 64:
            raise ValueError(cursor)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if len(raw) != 17 or raw[:1] != b"c":
            raise ValueError(cursor)
        return uuid.UUID(bytes=raw[1:])
    except ValueError as exc:
        raise DomainError(CustomerErrorCode.INVALID_CURSOR, "cursor is not one this API gave out") from exc


def encode_queue_cursor(submitted_at: datetime, customer_id: uuid.UUID) -> str:
    """A position in the KYC review queue (oldest submission first)."""
    micros = (submitted_at - _EPOCH) // timedelta(microseconds=1)
    return base64.urlsafe_b64encode(b"q" + micros.to_bytes(8, "big", signed=True) + customer_id.bytes).decode()


def decode_queue_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        if not isinstance(cursor, str) or len(cursor) > 64:
            raise ValueError(cursor)
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if len(raw) != 25 or raw[:1] != b"q":
            raise ValueError(cursor)
        micros = int.from_bytes(raw[1:9], "big", signed=True)
        return _EPOCH + timedelta(microseconds=micros), uuid.UUID(bytes=raw[9:])
    except (ValueError, OverflowError) as exc:
        raise DomainError(CustomerErrorCode.INVALID_CURSOR, "cursor is not one this API gave out") from exc


def check_limit(limit: int) -> int:
    if type(limit) is not int or not 1 <= limit <= MAX_PAGE:
        raise DomainError(ErrorCode.VALIDATION_ERROR, f"limit must be 1..{MAX_PAGE}", field="limit")
    return limit


def check_terms(accepted_terms: bool, terms_version: str) -> str:
    if accepted_terms is not True:
        raise _invalid(CustomerErrorCode.TERMS_NOT_ACCEPTED, "the terms must be accepted", field="accepted_terms")
    version = terms_version.strip() if isinstance(terms_version, str) else ""
    if not 1 <= len(version) <= MAX_TERMS_VERSION_CHARS or not version.isprintable():
        raise DomainError(ErrorCode.VALIDATION_ERROR, "terms_version names the terms accepted", field="terms_version")
    return version
