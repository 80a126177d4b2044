//! The DATA encoder (CRLF line ends, dot-stuffing) on a 1 KB text message and a 100 KB
//! message with a base64 attachment (76-octet lines): the hot spot of sending large mail.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use outbox_smtp::dot::encode_data;

fn message(size: usize) -> Vec<u8> {
    let mut out = b"From: a@example.com\r\nTo: b@example.net\r\nSubject: bench\r\n\r\n".to_vec();
    let line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0\r\n";
    let mut n = 0;
    while out.len() < size {
        // A line starting with a dot now and then, as text does.
        if n % 50 == 0 {
            out.extend_from_slice(b".signature line\r\n");
        }
        out.extend_from_slice(line);
        n += 1;
    }
    out
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_data");
    for (name, size) in [("1KB", 1024), ("100KB", 100 * 1024)] {
        let data = message(size);
        group.throughput(Throughput::Bytes(data.len() as u64));
        group.bench_function(name, |b| {
            let mut out = Vec::with_capacity(data.len() * 2);
            b.iter(|| {
                out.clear();
                encode_data(std::hint::black_box(&data), &mut out);
                out.len()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
