//! `outbox compose`: message flags or a JSON spec in, MIME text out.

#[derive(Debug, clap::Args)]
pub struct ComposeArgs {}

pub fn run(_args: ComposeArgs) -> anyhow::Result<()> {
    anyhow::bail!("compose is not built yet")
}
