//! A [`Request`] that owns its text, so that it can travel from the link's task to the ledger
//! thread (a [`Request`] borrows the message it was read from).
//!
//! Must never: hold the PAN (only its hash and [`MaskedPan`]).

use ledger::decide::Request;

use crate::link::translate::MaskedPan;

/// A request detached from its message: every field of [`Request`], the masked PAN and the
/// retrieval reference owned.
#[derive(Clone, Debug)]
pub struct OwnedRequest {
    base: Request<'static>,
    masked: MaskedPan,
    retrieval_reference: Option<Box<str>>,
}

impl OwnedRequest {
    /// Copies `request`; `masked` is the masked PAN it borrows.
    pub fn detach(request: &Request<'_>, masked: MaskedPan) -> OwnedRequest {
        let r = request;
        OwnedRequest {
            base: Request {
                class: r.class,
                mti: r.mti,
                pan_hash: r.pan_hash,
                pan_masked: "",
                transmission: r.transmission,
                stan: r.stan,
                acquirer: r.acquirer,
                forwarder: r.forwarder,
                amount_transaction: r.amount_transaction,
                currency_transaction: r.currency_transaction,
                amount_billing: r.amount_billing,
                currency_billing: r.currency_billing,
                card_expiry: r.card_expiry,
                merchant_category: r.merchant_category,
                network_response_code: r.network_response_code,
                original: r.original,
                replacement: r.replacement,
                retrieval_reference: None,
                chip: r.chip,
                processing_code: r.processing_code,
            },
            masked,
            retrieval_reference: r.retrieval_reference.map(Box::from),
        }
    }

    /// The request, borrowing this one's text.
    pub fn view(&self) -> Request<'_> {
        Request {
            pan_masked: self.masked.as_str(),
            retrieval_reference: self.retrieval_reference.as_deref(),
            ..self.base.clone()
        }
    }
}
