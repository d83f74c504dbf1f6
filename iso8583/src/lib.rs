//! ISO 8583 codec (placeholder; filled by the codec issue).
