//! Typed values of the ledger: money, ids, statuses, time.
//!
//! Every value that enters the ledger is bounded here, once, so that the arithmetic further in
//! cannot overflow: an amount is at most [`AMOUNT_MINOR_MAX`] in absolute value.

use std::fmt;

use sha2::{Digest, Sha256};

/// The largest absolute amount the ledger accepts, in minor units (10^15 − 1: above the 12-digit
/// ISO 8583 amount fields, far below `i64::MAX`, so a sum of 8,000 of them still fits an `i64`).
pub const AMOUNT_MINOR_MAX: i64 = 999_999_999_999_999;

/// An amount of money in minor units of its currency (cents). Always within ±[`AMOUNT_MINOR_MAX`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct AmountMinor(i64);

impl AmountMinor {
    pub const ZERO: AmountMinor = AmountMinor(0);

    /// `None` when `|value| > AMOUNT_MINOR_MAX`.
    pub const fn new(value: i64) -> Option<AmountMinor> {
        if value > AMOUNT_MINOR_MAX || value < -AMOUNT_MINOR_MAX {
            None
        } else {
            Some(AmountMinor(value))
        }
    }

    /// A non-negative amount (limits, holds). `None` when negative or too large.
    pub const fn new_non_negative(value: i64) -> Option<AmountMinor> {
        if value < 0 {
            None
        } else {
            AmountMinor::new(value)
        }
    }

    pub const fn minor(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: AmountMinor) -> Option<AmountMinor> {
        self.0.checked_add(other.0).and_then(AmountMinor::new)
    }

    pub fn checked_sub(self, other: AmountMinor) -> Option<AmountMinor> {
        self.0.checked_sub(other.0).and_then(AmountMinor::new)
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for AmountMinor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Open-to-buy of an account at one instant, in the account's minor units. May be negative
/// (advices and postings can take an account beyond its limit). Computed in `i128` so that it
/// never overflows whatever the number of holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct OpenToBuy(pub i128);

impl OpenToBuy {
    pub fn covers(self, amount: AmountMinor) -> bool {
        self.0 >= i128::from(amount.minor())
    }
}

/// ISO 4217 numeric currency code (e.g. 986 for BRL), 0..=999.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Currency(u16);

impl Currency {
    pub const fn new(code: u16) -> Option<Currency> {
        if code > 999 {
            None
        } else {
            Some(Currency(code))
        }
    }

    /// Parses exactly three ASCII digits ("986").
    pub fn parse(text: &str) -> Option<Currency> {
        let bytes = text.as_bytes();
        if bytes.len() != 3 || !bytes.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let code = bytes
            .iter()
            .fold(0u16, |acc, b| acc * 10 + u16::from(b - b'0'));
        Currency::new(code)
    }

    pub const fn code(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.0)
    }
}

/// Seconds since the Unix epoch, UTC. The only notion of time in the ledger: event time (`at`)
/// and the `now` a caller passes in. Never read from a clock here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixSeconds(pub i64);

impl UnixSeconds {
    /// Bounds accepted from outside: 2000-01-01 .. 2200-01-01.
    pub const MIN: UnixSeconds = UnixSeconds(946_684_800);
    pub const MAX: UnixSeconds = UnixSeconds(7_258_118_400);

    pub fn checked_add_s(self, seconds: i64) -> Option<UnixSeconds> {
        self.0.checked_add(seconds).map(UnixSeconds)
    }
}

impl fmt::Display for UnixSeconds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        super::time::write_rfc3339(f, *self)
    }
}

/// The 32-byte keyed hash of a PAN: HMAC-SHA256(pan_key, PAN digits as ASCII). Cards are keyed by
/// it; the PAN itself never enters the ledger. Uniformly distributed (it is a MAC under a secret
/// key), which is why [`PanHashBuildHasher`] may use 8 of its bytes as the hash-map hash.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PanHash(pub [u8; 32]);

impl PanHash {
    /// Parses the contract's 64 lower- or upper-case hex characters.
    pub fn parse_hex(text: &str) -> Option<PanHash> {
        if text.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(PanHash(bytes))
    }

    /// HMAC-SHA256(pan_key, PAN digits as ASCII), as the contract defines it. The network layer
    /// calls this with DE 2. Returns `None` when the PAN is not 12..=19 ASCII digits.
    pub fn of_pan(pan_key: &PanKey, pan_digits: &[u8]) -> Option<PanHash> {
        use hmac::{Hmac, Mac};
        if !(12..=19).contains(&pan_digits.len()) || !pan_digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&pan_key.0)
            .expect("HMAC-SHA256 accepts any key length");
        mac.update(pan_digits);
        Some(PanHash(mac.finalize().into_bytes().into()))
    }
}

impl std::hash::Hash for PanHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Already uniform: eight bytes are a perfect hash input.
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

impl fmt::Debug for PanHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A keyed hash is not the PAN, but there is no reason to print all of it either.
        write!(f, "PanHash({}…)", hex::encode(&self.0[..4]))
    }
}

/// The secret `pan_key` shared with the cloud (32 bytes). Debug never prints it.
#[derive(Clone)]
pub struct PanKey(pub [u8; 32]);

impl PanKey {
    /// Parses the 64 hex characters of the key file.
    pub fn parse_hex(text: &str) -> Option<PanKey> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
        Some(PanKey(bytes))
    }
}

impl fmt::Debug for PanKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PanKey(<secret>)")
    }
}

/// A hasher for keys that are already (nearly) uniformly random (pan hashes, hold ids, event
/// ids): it takes the one `u64` the key writes and mixes it once. Never use it for keys an
/// outsider chooses freely.
#[derive(Default, Clone, Copy)]
pub struct UniformHasher(u64);

impl std::hash::Hasher for UniformHasher {
    fn finish(&self) -> u64 {
        mix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only reached if a key type hashes bytes; fold them (FNV-1a) so that it still works.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, value: u64) {
        // `finish` mixes, so that structured input (UUIDv7 event ids) still spreads over the bits
        // hashbrown uses (the low bits pick the bucket, the top 7 the control byte).
        self.0 ^= value;
    }
}

/// A fast hasher for ids the cloud chooses (account ids, key-set names): FxHash-style, 8 bytes
/// per multiply. Not for text an outsider controls (no HashDoS resistance); the cloud is trusted.
#[derive(Default, Clone, Copy)]
pub struct TextHasher(u64);

impl std::hash::Hasher for TextHasher {
    fn finish(&self) -> u64 {
        // The multiply leaves the low bits (the bucket index) depending only on the input's low
        // bits: ids such as `acc-00000123` would pile into few buckets. Finish with splitmix64.
        mix64(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        let mut tail = [0u8; 8];
        let rest = chunks.remainder();
        tail[..rest.len()].copy_from_slice(rest);
        self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(tail) ^ (rest.len() as u64) << 59)
            .wrapping_mul(K);
    }
}

/// The splitmix64 finalizer: every output bit depends on every input bit.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `BuildHasher` for [`TextHasher`].
pub type TextBuildHasher = std::hash::BuildHasherDefault<TextHasher>;

/// `BuildHasher` for [`UniformHasher`].
pub type PanHashBuildHasher = std::hash::BuildHasherDefault<UniformHasher>;

/// Deterministic hold id: the first 16 bytes of SHA-256 over the network identity of the request
/// (PAN hash, DE 7, DE 11, DE 32 and DE 33 as numbers). A repeat computes the same id, and a
/// reversal finds it again from DE 90. Text form: `h-` followed by 32 lower-case hex characters
/// (the form `cleared_holds` carries).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HoldId(pub [u8; 16]);

impl HoldId {
    pub const TEXT_LEN: usize = 34;

    pub fn parse(text: &str) -> Option<HoldId> {
        let hex_part: &[u8; 32] = text.strip_prefix("h-")?.as_bytes().try_into().ok()?;
        // A table lookup per digit (the hex crate's decoder was a tenth of parsing an event).
        let mut bytes = [0u8; 16];
        let mut bad = 0u8;
        for (byte, pair) in bytes.iter_mut().zip(hex_part.chunks_exact(2)) {
            let (high, low) = (
                HEX_NIBBLE[usize::from(pair[0])],
                HEX_NIBBLE[usize::from(pair[1])],
            );
            bad |= high | low;
            *byte = high << 4 | (low & 0x0f);
        }
        (bad & 0x10 == 0).then_some(HoldId(bytes))
    }

    /// Lower-case text form (`h-` + 32 hex).
    pub fn to_text(self) -> String {
        format!("h-{}", hex::encode(self.0))
    }

    /// The id of the hold a request with this identity places.
    pub fn derive(identity: &NetworkIdentity) -> HoldId {
        // One SHA-256 block (at most 55 bytes of input) when every identifier fits its width,
        // which valid requests always do (DE 7 is 10 digits, DE 11 six, DE 32/33 eleven); the
        // long form, under its own prefix, keeps the id injective for any other value.
        let NetworkIdentity {
            pan_hash,
            transmission,
            stan,
            acquirer,
            forwarder,
        } = *identity;
        const INSTITUTION_MAX: u64 = (1 << 40) - 1;
        let digest = if transmission.0 <= u64::from(u32::MAX)
            && stan.0 < 1 << 24
            && acquirer.0 <= INSTITUTION_MAX
            && forwarder.0 <= INSTITUTION_MAX
        {
            let mut input = [0u8; 54];
            input[..5].copy_from_slice(b"hold2");
            input[5..37].copy_from_slice(&pan_hash.0);
            input[37..41].copy_from_slice(&(transmission.0 as u32).to_be_bytes());
            input[41..44].copy_from_slice(&stan.0.to_be_bytes()[1..]);
            input[44..49].copy_from_slice(&acquirer.0.to_be_bytes()[3..]);
            input[49..54].copy_from_slice(&forwarder.0.to_be_bytes()[3..]);
            Sha256::digest(input)
        } else {
            let mut sha = Sha256::new();
            sha.update(b"authorizer.hold-id.v2.long\0");
            sha.update(pan_hash.0);
            sha.update(transmission.0.to_be_bytes());
            sha.update(stan.0.to_be_bytes());
            sha.update(acquirer.0.to_be_bytes());
            sha.update(forwarder.0.to_be_bytes());
            sha.finalize()
        };
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        HoldId(bytes)
    }
}

impl std::hash::Hash for HoldId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

impl fmt::Debug for HoldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h-{}", hex::encode(self.0))
    }
}

impl fmt::Display for HoldId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "h-{}", hex::encode(self.0))
    }
}

/// DE 7, transmission date and time MMDDhhmmss (UTC) as the number it reads as.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TransmissionStamp(pub u64);

/// DE 11, system trace audit number (0..=999999).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stan(pub u32);

/// DE 32 / DE 33 institution id, compared as a number (DE 90 zero-pads it to 11 digits).
/// An absent DE 33 is institution 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct InstitutionId(pub u64);

/// The identity of a network request: what makes a repeat a repeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct NetworkIdentity {
    pub pan_hash: PanHash,
    pub transmission: TransmissionStamp,
    pub stan: Stan,
    pub acquirer: InstitutionId,
    pub forwarder: InstitutionId,
}

/// Account status (contract: `open`, `frozen`, `closed`). `Unknown` is an account that some hold
/// or card names but whose `account.upserted` has not been applied yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum AccountStatus {
    #[default]
    Unknown = 0,
    Open = 1,
    Frozen = 2,
    Closed = 3,
}

impl AccountStatus {
    pub fn parse(text: &str) -> Option<AccountStatus> {
        match text {
            "open" => Some(AccountStatus::Open),
            "frozen" => Some(AccountStatus::Frozen),
            "closed" => Some(AccountStatus::Closed),
            _ => None,
        }
    }

    pub fn from_u8(value: u8) -> Option<AccountStatus> {
        match value {
            0 => Some(AccountStatus::Unknown),
            1 => Some(AccountStatus::Open),
            2 => Some(AccountStatus::Frozen),
            3 => Some(AccountStatus::Closed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Unknown => "unknown",
            AccountStatus::Open => "open",
            AccountStatus::Frozen => "frozen",
            AccountStatus::Closed => "closed",
        }
    }
}

/// Card status (contract: `active`, `blocked`, `lost`, `stolen`, `closed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum CardStatus {
    Active = 1,
    Blocked = 2,
    Lost = 3,
    Stolen = 4,
    Closed = 5,
}

impl CardStatus {
    pub fn parse(text: &str) -> Option<CardStatus> {
        match text {
            "active" => Some(CardStatus::Active),
            "blocked" => Some(CardStatus::Blocked),
            "lost" => Some(CardStatus::Lost),
            "stolen" => Some(CardStatus::Stolen),
            "closed" => Some(CardStatus::Closed),
            _ => None,
        }
    }

    pub fn from_u8(value: u8) -> Option<CardStatus> {
        match value {
            1 => Some(CardStatus::Active),
            2 => Some(CardStatus::Blocked),
            3 => Some(CardStatus::Lost),
            4 => Some(CardStatus::Stolen),
            5 => Some(CardStatus::Closed),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CardStatus::Active => "active",
            CardStatus::Blocked => "blocked",
            CardStatus::Lost => "lost",
            CardStatus::Stolen => "stolen",
            CardStatus::Closed => "closed",
        }
    }
}

/// Card expiry month (contract `expiry`, DE 14): YYMM, year 2000 + YY.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CardExpiry {
    pub year: u16,
    pub month: u8,
}

impl CardExpiry {
    /// Parses four ASCII digits YYMM with a month 01..=12.
    pub fn parse_yymm(text: &[u8]) -> Option<CardExpiry> {
        if text.len() != 4 || !text.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let yy = u16::from(text[0] - b'0') * 10 + u16::from(text[1] - b'0');
        let month = (text[2] - b'0') * 10 + (text[3] - b'0');
        if !(1..=12).contains(&month) {
            return None;
        }
        Some(CardExpiry {
            year: 2000 + yy,
            month,
        })
    }

    /// Months since year 0, for comparisons.
    pub fn month_index(self) -> u32 {
        u32::from(self.year) * 12 + u32::from(self.month) - 1
    }

    pub fn to_yymm(self) -> [u8; 4] {
        let yy = self.year % 100;
        [
            b'0' + (yy / 10) as u8,
            b'0' + (yy % 10) as u8,
            b'0' + self.month / 10,
            b'0' + self.month % 10,
        ]
    }
}

/// PAN sequence number (contract `psn`, 2 digits; DE 23 / tag 5F34).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PanSequence(pub u8);

impl PanSequence {
    pub fn parse(text: &str) -> Option<PanSequence> {
        let b = text.as_bytes();
        if b.len() != 2 || !b.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(PanSequence((b[0] - b'0') * 10 + (b[1] - b'0')))
    }
}

/// Per-entity version chosen by the cloud (last writer wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Version(pub u64);

/// Index of an account inside one [`super::State`]. Not stable across replicas: never hashed,
/// never written to a snapshot (ids are).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AccountIndex(pub u32);

/// ISO 8583 response code (DE 39), two ASCII characters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResponseCode(pub [u8; 2]);

impl ResponseCode {
    pub const APPROVED: ResponseCode = ResponseCode(*b"00");
    pub const DO_NOT_HONOR: ResponseCode = ResponseCode(*b"05");
    pub const INVALID_CARD: ResponseCode = ResponseCode(*b"14");
    pub const FORMAT_ERROR: ResponseCode = ResponseCode(*b"30");
    pub const LOST_CARD: ResponseCode = ResponseCode(*b"41");
    pub const STOLEN_CARD: ResponseCode = ResponseCode(*b"43");
    pub const INSUFFICIENT_FUNDS: ResponseCode = ResponseCode(*b"51");
    pub const EXPIRED_CARD: ResponseCode = ResponseCode(*b"54");
    pub const RESTRICTED_CARD: ResponseCode = ResponseCode(*b"62");
    /// The identity of an earlier request with other content: not a repeat.
    pub const DUPLICATE_TRANSMISSION: ResponseCode = ResponseCode(*b"94");

    /// Two ASCII alphanumeric characters.
    pub fn parse(text: &str) -> Option<ResponseCode> {
        let b = text.as_bytes();
        if b.len() != 2 || !b.iter().all(u8::is_ascii_alphanumeric) {
            return None;
        }
        Some(ResponseCode([b[0], b[1]]))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("response codes are ASCII by construction")
    }

    pub fn is_approved(self) -> bool {
        self == ResponseCode::APPROVED
    }
}

impl fmt::Debug for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResponseCode({})", self.as_str())
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The event id of a log event, reduced to 128 bits for the dedup window, without hashing in
/// the common cases: a UUID in text form is its own 128 bits; an id of at most 15 bytes is its
/// own bytes (zero padded, the length in the last byte); any other text is the first 16 bytes of
/// its SHA-256 with the low bit flipped. Each form is injective, so two different ids share a
/// key only across forms: by chance (2^-128 per pair for SHA-256 output) or when a producer
/// crafts a UUID equal to another id's key (the producers are the cloud and our authorizers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventKey(pub u128);

impl std::hash::Hash for EventKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash64());
    }
}

impl EventKey {
    /// Ids this short are their own key.
    pub const INLINE_MAX: usize = 15;

    pub fn of(event_id: &str) -> EventKey {
        if let Some(value) = parse_uuid(event_id) {
            return EventKey(value);
        }
        let b = event_id.as_bytes();
        if b.len() <= Self::INLINE_MAX {
            let mut bytes = [0u8; 16];
            bytes[..b.len()].copy_from_slice(b);
            bytes[15] = b.len() as u8;
            return EventKey(u128::from_be_bytes(bytes));
        }
        let digest = Sha256::digest(b);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        // Flip a bit that UUID text could also produce, so that the two spaces rarely meet;
        // collisions are 2^-128 events either way.
        EventKey(u128::from_be_bytes(bytes) ^ 1)
    }

    /// A well-mixed 64-bit hash (short ids are not random bits).
    #[inline]
    pub fn hash64(self) -> u64 {
        mix64((self.0 as u64) ^ mix64((self.0 >> 64) as u64))
    }
}

fn parse_uuid(text: &str) -> Option<u128> {
    let b: &[u8; 36] = text.as_bytes().try_into().ok()?;
    if b[8] != b'-' || b[13] != b'-' || b[18] != b'-' || b[23] != b'-' {
        return None;
    }
    let mut value: u128 = 0;
    let mut bad = 0u8;
    for (i, &c) in b.iter().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            continue;
        }
        let nibble = HEX_NIBBLE[usize::from(c)];
        // Lower case only: `A` and `a` are different ids, so only one text may map to a value
        // (upper-case ids take the hashed path).
        bad |= nibble | if c.is_ascii_uppercase() { 0x10 } else { 0 };
        value = (value << 4) | u128::from(nibble & 0x0f);
    }
    (bad & 0x10 == 0).then_some(value)
}

/// Hex digit values; `0x10` marks a byte that is not a hex digit.
const HEX_NIBBLE: [u8; 256] = {
    let mut table = [0x10u8; 256];
    let mut c = 0;
    while c < 256 {
        table[c] = match c as u8 {
            b @ b'0'..=b'9' => b - b'0',
            b @ b'a'..=b'f' => b - b'a' + 10,
            b @ b'A'..=b'F' => b - b'A' + 10,
            _ => 0x10,
        };
        c += 1;
    }
    table
};

#[cfg(test)]
mod event_key_tests {
    use super::*;

    #[test]
    fn lower_case_uuids_are_their_own_bits() {
        let key = EventKey::of("7b0c1e0e-2a43-4c1b-9a53-8a1f3f3f9d10");
        assert_eq!(key, EventKey(0x7b0c1e0e_2a43_4c1b_9a53_8a1f3f3f9d10));
        // Another text is another id: upper case is hashed, never the lower-case id's key.
        assert_ne!(key, EventKey::of("7B0C1E0E-2A43-4C1B-9A53-8A1F3F3F9D10"));
        assert_ne!(key, EventKey::of("7b0c1e0e-2a43-4c1b-9a53-8a1f3f3f9D10"));
        // Not hex, or dashes misplaced: hashed instead.
        let hashed = |id: &str| {
            let digest = Sha256::digest(id.as_bytes());
            EventKey(u128::from_be_bytes(digest[..16].try_into().unwrap()) ^ 1)
        };
        let not_hex = "7b0c1e0e-2a43-4c1b-9a53-8a1f3f3f9d1g";
        assert_eq!(EventKey::of(not_hex), hashed(not_hex));
        assert_ne!(
            EventKey::of("7b0c1e0e2-a43-4c1b-9a53-8a1f3f3f9d10"),
            EventKey::of("7b0c1e0e-2a43-4c1b-9a53-8a1f3f3f9d10")
        );
    }

    #[test]
    fn short_ids_are_their_own_bytes_and_never_meet() {
        let ids = [
            "",
            "a",
            "a\0",
            "h-1",
            "h-10",
            "h-1\0",
            "r-1",
            "123456789012345",
        ];
        for a in ids {
            for b in ids {
                assert_eq!(EventKey::of(a) == EventKey::of(b), a == b, "{a:?} {b:?}");
            }
        }
        assert_eq!(
            EventKey::of("h-1").0.to_be_bytes(),
            [b'h', b'-', b'1', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3]
        );
        // Sixteen bytes and more are hashed.
        let long = EventKey::of("1234567890123456");
        let digest = Sha256::digest(b"1234567890123456");
        assert_eq!(
            long,
            EventKey(u128::from_be_bytes(digest[..16].try_into().unwrap()) ^ 1)
        );
        assert_ne!(long, EventKey::of("123456789012345"));
    }
}
