//! DKIM signing cost beside composing the same message: a 1 KB and a 100 KB text message,
//! composed by outbox_mime, then signed with RSA-2048 and with Ed25519 (relaxed/relaxed,
//! the default header list).
//!
//! `cargo bench -p outbox-mime --bench dkim`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use outbox_mime::dkim::{DkimKey, DkimSigner, DkimSigners};
use outbox_mime::{EmailSpec, compose};

fn spec(size: usize) -> EmailSpec {
    let line = "Dear customer, here is the news of the month with a few details.\n";
    EmailSpec::builder()
        .from("Outbox <noreply@example.com>")
        .to("Ann Lee <ann@example.net>")
        .subject("Your November statement")
        .text(line.repeat(size / line.len()))
        .into_spec()
}

fn signers(key_file: &str) -> DkimSigners {
    let path = format!("{}/testdata/dkim/{key_file}", env!("CARGO_MANIFEST_DIR"));
    let key = DkimKey::from_pem(&std::fs::read(path).unwrap()).unwrap();
    DkimSigners::new(vec![DkimSigner::new("example.com", "s", key)])
}

fn bench_dkim(c: &mut Criterion) {
    let rsa = signers("rsa2048.pem");
    let ed25519 = signers("ed25519.pem");
    for (name, size) in [("1k", 1024), ("100k", 100 * 1024)] {
        let spec = spec(size);
        let message = compose(&spec).unwrap().into_data();
        let mut group = c.benchmark_group(format!("dkim_{name}"));
        group.bench_function("compose", |b| {
            b.iter(|| black_box(compose(&spec).unwrap().into_data()))
        });
        group.bench_function("sign_rsa2048", |b| {
            b.iter(|| black_box(rsa.sign(&message, 1_790_000_000).unwrap()))
        });
        group.bench_function("sign_ed25519", |b| {
            b.iter(|| black_box(ed25519.sign(&message, 1_790_000_000).unwrap()))
        });
        group.finish();
    }
}

criterion_group!(benches, bench_dkim);
criterion_main!(benches);
