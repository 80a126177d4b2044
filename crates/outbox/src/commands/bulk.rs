//! `outbox bulk --recipients FILE.csv [message flags]`: one merge message to every row of
//! a CSV file (`email_batch` + merge, DESIGN §6). The body is stored once; each row becomes
//! a recipient with its own merge values. Rows are written as they are read, in batches of
//! `--batch-size`, one transaction each (the first batch creates the message). Bad rows are
//! reported on stderr with their line numbers and the good rows are still queued.
//!
//! Output (stdout): the id on the first line, then `queued N, rejected M`; with `--json`,
//! `{"id": ..., "queued": N, "rejected": M}`. See docs/bulk.md.

mod rows;

use std::fs::File;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use outbox_mime::EmailSpec;
use outbox_queue::{NewMessage, NewRecipient, Store};

use crate::cli::Globals;
use crate::message_args::MessageArgs;
use rows::{Row, RowReader};

/// Arguments of `outbox bulk`.
#[derive(Debug, clap::Args)]
pub struct BulkArgs {
    /// The recipients: a CSV file whose header row names the columns; `email` holds the
    /// address, every other column is a merge token (`#Column#`) of that row.
    #[arg(long, value_name = "FILE.csv")]
    pub recipients: PathBuf,

    /// Rows written per database transaction.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub batch_size: usize,

    #[command(flatten)]
    pub message: MessageArgs,
}

/// The `To:` written when no `--to`/`--cc` is given: the empty group of RFC 5322 §3.4, as
/// for any mail whose recipients are not listed. (`To: #email#` would be nicer, but the
/// merge writes a marker's value in an address field as a display name, encoded-word when
/// it holds `@`, so it cannot produce an address there.)
const UNDISCLOSED: &[u8] = b"To: undisclosed-recipients:;\r\n";

/// Queues the merge message and prints the summary.
pub async fn run(globals: &Globals, args: BulkArgs) -> anyhow::Result<()> {
    if args.message.merge.is_some() {
        bail!("--merge: bulk takes the merge values from the CSV columns");
    }
    let config = globals.config()?;
    let limit = config.delivery.max_message_size.0;
    let spec = args.message.into_spec(limit)?;
    crate::message_args::check_queued_relay(&spec, config.delivery.allow_program_relay)?;
    if spec.list_unsubscribe {
        config.unsubscribe.required()?;
    }
    let path = &args.recipients;
    let file = File::open(path)
        .with_context(|| format!("--recipients: cannot open {}", path.display()))?;
    let mut reader = RowReader::new(BufReader::with_capacity(1 << 16, file))
        .map_err(|err| anyhow!("--recipients {}: {err}", path.display()))?;
    let store = crate::app::store(&config).await?;

    let progress = progress_bar(path);
    let batch_size = args.batch_size.max(1);
    let mut writer = BatchWriter::new(&*store, spec, limit);
    let mut batch: Vec<NewRecipient> = Vec::with_capacity(batch_size);
    let mut rejected: u64 = 0;
    while let Some(row) = reader.next_row() {
        match row {
            Row::Good(recipient) => batch.push(recipient),
            Row::Bad(bad) => {
                rejected += 1;
                progress.suspend(|| {
                    eprintln!("{}:{}: {}", path.display(), bad.line, bad.reason);
                });
            }
        }
        progress.inc(1);
        if batch.len() >= batch_size {
            writer.write(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        writer.write(batch).await?;
    }
    progress.finish_and_clear();
    let (id, queued) = writer.finish();
    let Some(id) = id else {
        bail!(
            "--recipients {}: no valid rows ({rejected} rejected), nothing queued",
            path.display()
        );
    };
    if globals.json {
        let summary = serde_json::json!({"id": id, "queued": queued, "rejected": rejected});
        println!("{summary}");
    } else {
        println!("{id}\nqueued {queued}, rejected {rejected}");
    }
    Ok(())
}

/// Writes recipients batch by batch: the first batch queues the message, later batches
/// are added to it.
struct BatchWriter<'a> {
    store: &'a dyn Store,
    spec: EmailSpec,
    /// The largest attachment file composition reads.
    limit: u64,
    id: Option<String>,
    queued: u64,
}

impl<'a> BatchWriter<'a> {
    fn new(store: &'a dyn Store, spec: EmailSpec, limit: u64) -> Self {
        BatchWriter {
            store,
            spec,
            limit,
            id: None,
            queued: 0,
        }
    }

    async fn write(&mut self, batch: Vec<NewRecipient>) -> anyhow::Result<()> {
        let count = batch.len() as u64;
        match &self.id {
            None => {
                let message = self.message(batch)?;
                self.id = Some(self.store.enqueue(message).await?.id);
            }
            Some(id) => {
                self.store
                    .add_recipients(id, batch)
                    .await
                    .with_context(|| {
                        format!(
                            "message {id} is queued with its first {} recipients, the rest failed",
                            self.queued
                        )
                    })?;
            }
        }
        self.queued += count;
        Ok(())
    }

    /// The message for the first batch: composed once with the flags; the rows are the
    /// only envelope recipients.
    fn message(&self, batch: Vec<NewRecipient>) -> anyhow::Result<NewMessage> {
        let mut spec = self.spec.clone();
        let own_to = spec.to.is_empty() && spec.cc.is_empty();
        if spec.to.is_empty() && spec.cc.is_empty() && spec.bcc.is_empty() {
            // The composer wants a recipient; a Bcc is never written, so the first row's
            // address serves without appearing in the message.
            spec.bcc = vec![batch[0].address.clone()];
        }
        let composed =
            outbox_mime::compose_with(&spec, &crate::message_args::compose_options(self.limit))?;
        let mut data = composed.into_data();
        if own_to {
            data.splice(0..0, UNDISCLOSED.iter().copied());
        }
        let mut new_message = NewMessage::default();
        new_message.data = data;
        new_message.envelope_from = outbox_mime::parse_address(&spec.from)?.addr_spec();
        new_message.recipients = batch;
        new_message.subject = spec.subject.clone();
        new_message.priority = spec.priority;
        new_message.send_at = spec.send_at;
        new_message.relay = spec.relay.clone();
        new_message.tokens = Some(spec.tokens.clone());
        new_message.idempotency_key = None;
        new_message.list = spec.list.clone();
        new_message.list_unsubscribe = spec.list_unsubscribe;
        Ok(new_message)
    }

    fn finish(self) -> (Option<String>, u64) {
        (self.id, self.queued)
    }
}

/// A bar over the file's rows (rows/s, ETA) when stderr is a terminal; hidden otherwise.
fn progress_bar(path: &Path) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let rows = count_lines(path).saturating_sub(1);
    let bar = ProgressBar::with_draw_target(Some(rows), ProgressDrawTarget::stderr());
    let style =
        ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} rows  {per_sec}  ETA {eta}")
            .map(|style| style.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// Lines in the file, for the bar's length (a quoted field spanning lines makes it a
/// slight overestimate, which only moves the ETA).
fn count_lines(path: &Path) -> u64 {
    let Ok(file) = File::open(path) else { return 0 };
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut lines = 0;
    while let Ok(buffer) = reader.fill_buf() {
        if buffer.is_empty() {
            break;
        }
        lines += buffer.iter().filter(|&&b| b == b'\n').count() as u64;
        let len = buffer.len();
        reader.consume(len);
    }
    lines
}
