//! The card authorizer (placeholder; filled by the ledger issue).
