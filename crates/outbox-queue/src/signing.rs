//! What goes on the wire, shared by the engine and [`crate::deliver_now`]: per-recipient
//! copies (merge, unsubscribe headers) and DKIM signing. A message that no `[[dkim]]` entry
//! covers, or that cannot be signed, goes out as it is.

use std::borrow::Cow;
use std::time::{SystemTime, UNIX_EPOCH};

use outbox_mime::dkim::{DkimSigners, Unsigned};

use crate::model::MergeValues;
use crate::unsubscribe::Unsubscribe;

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

/// What makes one recipient's copy of a message written per recipient.
pub(crate) struct Personal<'a> {
    /// The recipient's envelope address.
    pub address: &'a str,
    /// Its merge values, if any.
    pub merge: Option<&'a MergeValues>,
    /// The message's default merge values, if it is a merge message.
    pub tokens: Option<&'a MergeValues>,
    /// The message's list, when it asked for unsubscribe headers.
    pub unsubscribe_list: Option<&'a str>,
    /// The message's id, when it has one (named in the unsubscribe link).
    pub message_id: Option<&'a str>,
}

/// A message asked for unsubscribe headers and no `[unsubscribe]` is configured: it is not
/// sent without them (a temporary failure, so that configuring it lets the retry go out).
pub(crate) const NO_UNSUBSCRIBE_CONFIG: &str = "list_unsubscribe is set but [unsubscribe] base_url and secret are not configured; not sent without its unsubscribe headers";

/// One recipient's copy of `data`: merged (a merge message), with its unsubscribe headers
/// (a message that asked for them), then DKIM-signed. `Err` when unsubscribe headers are
/// asked for and `links` is `None`.
pub(crate) fn personalise(
    data: &[u8],
    personal: &Personal<'_>,
    links: Option<&Unsubscribe>,
    signers: &DkimSigners,
) -> Result<Vec<u8>, &'static str> {
    let mut out = if personal.tokens.is_some() || personal.merge.is_some() {
        outbox_mime::merge_message(data, &(personal.merge, personal.tokens))
    } else {
        data.to_vec()
    };
    if let Some(list) = personal.unsubscribe_list {
        let links = links.ok_or(NO_UNSUBSCRIBE_CONFIG)?;
        out = links.add_headers(&out, personal.address, list, personal.message_id);
    }
    Ok(sign(signers, Cow::Owned(out)).into_owned())
}
