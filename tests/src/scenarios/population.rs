//! The scenarios' fixed population: one account and one card per role, with known limits and no
//! balance, deterministic for a seed.
//!
//! Must never: depend on anything but the seed and the time given (every expected answer is
//! computed from it in advance).

use std::collections::HashMap;

use hsm::Profile;

use crate::card::SoftCard;
use crate::netsim::{Population, SimAccount, SimCard, TEST_IMK, civil, luhn_complete};

use super::{LARGE_LIMIT, SMALL_LIMIT};

/// One role of the fixed population: account status, currency, limit, card status, expired,
/// cryptogram profile.
struct Role {
    name: &'static str,
    account_status: &'static str,
    currency: &'static str,
    limit: i64,
    card_status: &'static str,
    expired: bool,
    profile: Profile,
}

const fn role(name: &'static str, limit: i64, profile: Profile) -> Role {
    Role {
        name,
        account_status: "open",
        currency: "840",
        limit,
        card_status: "active",
        expired: false,
        profile,
    }
}

fn roles() -> Vec<Role> {
    let mut out: Vec<Role> = Profile::ALL
        .iter()
        .map(|p| role(p.name(), LARGE_LIMIT, *p))
        .collect();
    let v18 = Profile::VisaCvn18;
    for (name, status) in [
        ("lost", "lost"),
        ("stolen", "stolen"),
        ("blocked", "blocked"),
        ("card-closed", "closed"),
    ] {
        out.push(Role {
            card_status: status,
            ..role(name, LARGE_LIMIT, v18)
        });
    }
    out.push(Role {
        expired: true,
        ..role("expired", LARGE_LIMIT, v18)
    });
    out.push(Role {
        account_status: "frozen",
        ..role("frozen", LARGE_LIMIT, v18)
    });
    out.push(Role {
        account_status: "closed",
        ..role("account-closed", LARGE_LIMIT, v18)
    });
    out.push(Role {
        currency: "986",
        ..role("brl", LARGE_LIMIT, Profile::McCvn17)
    });
    for name in [
        "small",
        "rev-full",
        "rev-partial",
        "rev-advice",
        "rev-first",
        "advice-approved",
        "advice-declined",
    ] {
        out.push(role(name, SMALL_LIMIT, v18));
    }
    out.push(role("repeat", LARGE_LIMIT, Profile::McCvn17));
    out.push(role("chip-checks", LARGE_LIMIT, Profile::McCvn16));
    out.push(role("misc", LARGE_LIMIT, Profile::VisaCvn10));
    out
}

/// The scenarios' population for `seed` at `now_unix_s` (which sets the expiries), and the card
/// index of each role.
pub fn population(seed: u64, now_unix_s: i64) -> (Population, HashMap<&'static str, usize>) {
    let (year, month, ..) = civil(now_unix_s);
    let yy = (year % 100) as u32;
    let mut pop = Population {
        accounts: Vec::new(),
        cards: Vec::new(),
    };
    let mut index = HashMap::new();
    for (i, r) in roles().into_iter().enumerate() {
        let bin = if r.profile.name().starts_with("visa") {
            "476173"
        } else {
            "541333"
        };
        let pan = luhn_complete(&format!("{bin}{:03}{i:06}", seed % 1000));
        let expiry_yymm = if r.expired {
            if month == 1 {
                format!("{:02}12", (yy + 99) % 100)
            } else {
                format!("{yy:02}{:02}", month - 1)
            }
        } else {
            format!("{:02}{month:02}", (yy + 2) % 100)
        };
        let psn = (i % 2) as u8;
        pop.accounts.push(SimAccount {
            id: format!("sc{seed}-acc-{i:03}"),
            status: r.account_status,
            currency: r.currency,
            credit_limit_minor: r.limit,
        });
        pop.cards.push(SimCard {
            chip: SoftCard::personalise(&TEST_IMK, &pan, psn, r.profile),
            pan,
            account: i,
            card_id: format!("sc{seed}-card-{i:03}"),
            status: r.card_status,
            expiry_yymm,
            psn,
        });
        index.insert(r.name, i);
    }
    (pop, index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_population_has_every_role_once_and_known_limits() {
        let (pop, index) = population(7, 1_795_342_500);
        assert_eq!(index.len(), pop.cards.len());
        assert_eq!(pop.accounts[index["small"]].credit_limit_minor, SMALL_LIMIT);
        assert_eq!(pop.accounts[index["frozen"]].status, "frozen");
        assert_eq!(pop.cards[index["lost"]].status, "lost");
        // 2026-11: expired last month, the others two years ahead.
        assert_eq!(pop.cards[index["expired"]].expiry_yymm, "2610");
        assert_eq!(pop.cards[index["misc"]].expiry_yymm, "2811");
        let (again, _) = population(7, 1_795_342_500);
        assert_eq!(pop.cards[3].pan, again.cards[3].pan, "deterministic");
        let (other, _) = population(8, 1_795_342_500);
        assert_ne!(
            pop.cards[3].pan, other.cards[3].pan,
            "another seed, other cards"
        );
    }
}
