//! DKIM signing of what goes on the wire, shared by the engine and [`crate::deliver_now`]:
//! a message that no `[[dkim]]` entry covers, or that cannot be signed, goes out as it is.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use outbox_mime::dkim::{DkimSigners, Unsigned};

/// `data` with its DKIM signatures prepended, or `data` unchanged (logged) when none apply.
pub(crate) fn sign<'a>(signers: &DkimSigners, data: Cow<'a, [u8]>) -> Cow<'a, [u8]> {
    if signers.is_empty() {
        return data;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match signers.sign(&data, now) {
        Ok(signed) => Cow::Owned(signed),
        Err(reason @ Unsigned::NoEntry { .. }) => {
            tracing::debug!(%reason, "message not DKIM-signed");
            data
        }
        Err(reason) => {
            tracing::warn!(%reason, "message not DKIM-signed");
            data
        }
    }
}
