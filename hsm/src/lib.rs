//! EMV chip cryptograms over PKCS#11 (placeholder; filled by the HSM issue).
