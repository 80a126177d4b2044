//! `outbox compose`: message flags or a JSON spec in, MIME text out (`email_compose` ->
//! `data`), with the spec's `tokens` merged in as DESIGN §6 says.

use std::io::Write;

use anyhow::Context;

use crate::message_args::MessageArgs;

/// `outbox compose [message flags] [--spec FILE|-]`.
#[derive(Debug, clap::Args)]
pub struct ComposeArgs {
    #[command(flatten)]
    pub message: MessageArgs,
}

/// Composes the message and writes it to stdout; on any error nothing is written.
pub fn run(args: ComposeArgs) -> anyhow::Result<()> {
    // Nothing is queued, so no queue limit applies; files are still bounded.
    let limit = outbox_mime::DEFAULT_MAX_FILE_SIZE;
    let spec = args.message.into_spec(limit)?;
    let message = outbox_mime::compose_with(&spec, &crate::message_args::compose_options(limit))?;
    let data = outbox_mime::merge_message(message.data(), &spec.tokens);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&data)
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")
}
