//! The bank's cloud services: `account.upserted` and `card.upserted` events exactly as
//! `docs/kafka-contract.md` writes them (key = account id, value = JSON).

use ledger::{PanHash, PanKey};

/// RFC 3339 UTC text of a Unix time.
pub fn rfc3339(unix_s: i64) -> String {
    let (y, mo, d, h, mi, s) = crate::netsim::civil(unix_s);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// One account as the cloud publishes it.
#[derive(Clone, Debug)]
pub struct AccountEvent<'a> {
    pub event_id: String,
    pub at_unix_s: i64,
    pub account_id: &'a str,
    pub version: u64,
    pub status: &'a str,
    pub currency: &'a str,
    pub credit_limit_minor: i64,
    pub posted_balance_minor: i64,
    pub cleared_holds: &'a [String],
}

impl AccountEvent<'_> {
    pub fn to_json(&self) -> Vec<u8> {
        let holds: Vec<String> = self
            .cleared_holds
            .iter()
            .map(|h| format!("\"{h}\""))
            .collect();
        format!(
            r#"{{"schema":1,"type":"account.upserted","event_id":"{}","at":"{}","account_id":"{}","version":{},"status":"{}","currency":"{}","credit_limit":{},"posted_balance":{},"cleared_holds":[{}]}}"#,
            self.event_id,
            rfc3339(self.at_unix_s),
            self.account_id,
            self.version,
            self.status,
            self.currency,
            self.credit_limit_minor,
            self.posted_balance_minor,
            holds.join(",")
        )
        .into_bytes()
    }
}

/// One card as the cloud publishes it. The PAN itself never leaves this struct's caller: the
/// event carries its keyed hash and last four digits.
#[derive(Clone, Debug)]
pub struct CardEvent<'a> {
    pub event_id: String,
    pub at_unix_s: i64,
    pub account_id: &'a str,
    pub card_id: &'a str,
    pub version: u64,
    pub pan: &'a str,
    pub expiry_yymm: &'a str,
    pub psn: u8,
    pub status: &'a str,
    pub key_set: &'a str,
}

impl CardEvent<'_> {
    pub fn to_json(&self, pan_key: &PanKey) -> Vec<u8> {
        let hash =
            PanHash::of_pan(pan_key, self.pan.as_bytes()).expect("simulated PANs are digits");
        format!(
            r#"{{"schema":1,"type":"card.upserted","event_id":"{}","at":"{}","account_id":"{}","card_id":"{}","version":{},"pan_hash":"{}","pan_last4":"{}","expiry":"{}","psn":"{:02}","status":"{}","key_set":"{}"}}"#,
            self.event_id,
            rfc3339(self.at_unix_s),
            self.account_id,
            self.card_id,
            self.version,
            hex::encode(hash.0),
            &self.pan[self.pan.len() - 4..],
            self.expiry_yymm,
            self.psn,
            self.status,
            self.key_set
        )
        .into_bytes()
    }
}
