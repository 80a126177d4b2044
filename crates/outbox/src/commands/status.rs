//! `outbox status ID`: `queued`, `sent` or `error` (the seed's `email_status`); with
//! `--json` the detailed per-recipient object, the same as `GET /api/v1/messages/{id}`.

use crate::cli::Globals;

/// Arguments of `outbox status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The message id `send` printed.
    #[arg(value_name = "ID")]
    pub id: String,
}

/// Prints the status of one message.
pub async fn run(globals: &Globals, args: StatusArgs) -> anyhow::Result<()> {
    let store = crate::app::store(&globals.config()?).await?;
    if globals.json {
        let detail = store.detail(&args.id).await?;
        println!("{}", serde_json::to_string(&detail)?);
    } else {
        println!("{}", store.status(&args.id).await?);
    }
    Ok(())
}
