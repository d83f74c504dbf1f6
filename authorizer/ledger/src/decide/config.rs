//! The configuration of the decision rules: [`DecideConfig`] (the instance name written in
//! events, the hold-expiry table by merchant category, the unverified-ARQC rule, the holds per
//! account), its defaults and its bounds ([`ConfigError`]).
//!
//! Must never: let a value through unchecked ([`DecideConfig::validate`] checks every bound, once
//! at start-up), nor make a hold last outside 60..=`HOLD_DURATION_MAX_S` s.

use crate::HOLD_DURATION_MAX_S;

/// One merchant-category rule of the hold-expiry table: MCCs `from..=to` hold for `duration_s`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MccHoldRule {
    pub from: u16,
    pub to: u16,
    pub duration_s: i64,
}

/// Configuration of the decision rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecideConfig {
    /// The authorizer instance name written in events.
    pub instance: String,
    /// Hold duration when no rule matches the merchant category (or DE 18 is absent).
    pub hold_duration_default_s: i64,
    /// First matching rule wins. At most [`DecideConfig::MCC_RULES_MAX`] rules.
    pub hold_duration_rules: Vec<MccHoldRule>,
    /// Decline (05) a chip request whose ARQC did not verify. `false` lets it continue.
    pub decline_unverified_arqc: bool,
    /// An account with this many live holds with money (declined, released and expired
    /// records do not count) gets 05 on new authorizations.
    pub holds_per_account_max: usize,
    /// An authorization whose DE 7 is further than this from `now`, either way, has DE 7 in
    /// error (30, DE 44 = 007). 1..=[`DecideConfig::TRANSMISSION_SKEW_MAX_S`] seconds.
    pub transmission_skew_s: i64,
    /// Merchant categories whose chip amount (9F02) may differ from DE 4 (fuel dispensers,
    /// tips): `from..=to`, at most [`DecideConfig::MCC_RULES_MAX`] ranges. Currency and date
    /// must still agree.
    pub chip_amount_may_differ: Vec<MccRange>,
}

/// Merchant categories `from..=to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MccRange {
    pub from: u16,
    pub to: u16,
}

/// Why a [`DecideConfig`] is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    InstanceName {
        value: String,
    },
    HoldDuration {
        mcc_from: u16,
        mcc_to: u16,
        duration_s: i64,
    },
    TooManyRules {
        count: usize,
    },
    HoldsPerAccount {
        value: usize,
    },
    TransmissionSkew {
        value: i64,
    },
    MccRange {
        from: u16,
        to: u16,
    },
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::InstanceName { value } => {
                write!(
                    f,
                    "instance name {value:?} must be 1..=64 printable ASCII characters"
                )
            }
            ConfigError::HoldDuration {
                mcc_from,
                mcc_to,
                duration_s,
            } => write!(
                f,
                "hold duration {duration_s} s for MCC {mcc_from:04}..={mcc_to:04} must be 60..={HOLD_DURATION_MAX_S} s (and from <= to <= 9999)"
            ),
            ConfigError::TooManyRules { count } => {
                write!(
                    f,
                    "{count} hold-duration rules; at most {} allowed",
                    DecideConfig::MCC_RULES_MAX
                )
            }
            ConfigError::HoldsPerAccount { value } => {
                write!(f, "holds_per_account_max {value} must be 1..=65536")
            }
            ConfigError::MccRange { from, to } => {
                write!(
                    f,
                    "MCC range {from:04}..={to:04} must have from <= to <= 9999"
                )
            }
            ConfigError::TransmissionSkew { value } => {
                write!(
                    f,
                    "transmission_skew_s {value} must be 1..={}",
                    DecideConfig::TRANSMISSION_SKEW_MAX_S
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl DecideConfig {
    pub const MCC_RULES_MAX: usize = 256;
    /// A day: the bound of `transmission_skew_s`. Holds are retained for 45 days from DE 7 and
    /// expire at most 31 days after the decision, so a DE 7 within a day of the decision always
    /// outlives its hold's expiry.
    pub const TRANSMISSION_SKEW_MAX_S: i64 = 86_400;

    /// Defaults: holds live 7 days; hotels and lodging (3501–3999, 7011), car rental (3351–3500,
    /// 7512) and cruise lines (4411) 31 days; unverified ARQC declined; 1,024 live holds with
    /// money per account; DE 7 within 10 minutes of the clock.
    pub fn new(instance: impl Into<String>) -> DecideConfig {
        const DAY_S: i64 = 86_400;
        DecideConfig {
            instance: instance.into(),
            hold_duration_default_s: 7 * DAY_S,
            hold_duration_rules: vec![
                MccHoldRule {
                    from: 3501,
                    to: 3999,
                    duration_s: 31 * DAY_S,
                },
                MccHoldRule {
                    from: 7011,
                    to: 7011,
                    duration_s: 31 * DAY_S,
                },
                MccHoldRule {
                    from: 3351,
                    to: 3500,
                    duration_s: 31 * DAY_S,
                },
                MccHoldRule {
                    from: 7512,
                    to: 7512,
                    duration_s: 31 * DAY_S,
                },
                MccHoldRule {
                    from: 4411,
                    to: 4411,
                    duration_s: 31 * DAY_S,
                },
            ],
            decline_unverified_arqc: true,
            holds_per_account_max: 1024,
            transmission_skew_s: 600,
            chip_amount_may_differ: Vec::new(),
        }
    }

    /// Checks every bound; call once at start-up.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.instance.is_empty()
            || self.instance.len() > 64
            || !self.instance.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ConfigError::InstanceName {
                value: self.instance.clone(),
            });
        }
        if self.hold_duration_rules.len() > Self::MCC_RULES_MAX {
            return Err(ConfigError::TooManyRules {
                count: self.hold_duration_rules.len(),
            });
        }
        let default = MccHoldRule {
            from: 0,
            to: 9999,
            duration_s: self.hold_duration_default_s,
        };
        for rule in std::iter::once(&default).chain(&self.hold_duration_rules) {
            if !(60..=HOLD_DURATION_MAX_S).contains(&rule.duration_s)
                || rule.from > rule.to
                || rule.to > 9999
            {
                return Err(ConfigError::HoldDuration {
                    mcc_from: rule.from,
                    mcc_to: rule.to,
                    duration_s: rule.duration_s,
                });
            }
        }
        if self.chip_amount_may_differ.len() > Self::MCC_RULES_MAX {
            return Err(ConfigError::TooManyRules {
                count: self.chip_amount_may_differ.len(),
            });
        }
        if let Some(range) = self
            .chip_amount_may_differ
            .iter()
            .find(|r| r.from > r.to || r.to > 9999)
        {
            return Err(ConfigError::MccRange {
                from: range.from,
                to: range.to,
            });
        }
        if !(1..=Self::TRANSMISSION_SKEW_MAX_S).contains(&self.transmission_skew_s) {
            return Err(ConfigError::TransmissionSkew {
                value: self.transmission_skew_s,
            });
        }
        if !(1..=65_536).contains(&self.holds_per_account_max) {
            return Err(ConfigError::HoldsPerAccount {
                value: self.holds_per_account_max,
            });
        }
        Ok(())
    }

    /// How long a hold for this merchant category counts against open-to-buy.
    pub fn hold_duration_s(&self, merchant_category: Option<u16>) -> i64 {
        let duration_s = merchant_category
            .and_then(|mcc| {
                self.hold_duration_rules
                    .iter()
                    .find(|r| (r.from..=r.to).contains(&mcc))
            })
            .map_or(self.hold_duration_default_s, |r| r.duration_s);
        debug_assert!((60..=HOLD_DURATION_MAX_S).contains(&duration_s));
        duration_s.clamp(60, HOLD_DURATION_MAX_S)
    }
}
