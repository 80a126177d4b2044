//! Composition beside lettre's builder, building the same messages in the same run:
//! (a) a 2 KB text + html message, (b) html with 3 inline images, (c) one 8 MB attachment;
//! plus base64 throughput of the 8 MB attachment, and the long-line check every queued
//! message goes through (a 1 MB message without long lines: one scan, no copy).
//!
//! `cargo bench -p outbox-mime --bench compose`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};
use outbox_mime::{EmailSpec, PartSource, compose};

const FROM: &str = "Outbox <noreply@example.com>";
const TO: &str = "Ann Lee <ann@example.com>";
const SUBJECT: &str = "Your November statement";

fn text_2k() -> String {
    "Dear customer, here is the news of the month with a few details.\n".repeat(32)
}

fn html_2k() -> String {
    "<p>Dear customer, here is the <b>news</b> of the month.</p>\n".repeat(36)
}

fn image(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn lettre_base() -> lettre::message::MessageBuilder {
    lettre::Message::builder()
        .from(FROM.parse().unwrap())
        .to(TO.parse().unwrap())
        .subject(SUBJECT)
}

fn outbox_base() -> outbox_mime::EmailBuilder {
    EmailSpec::builder().from(FROM).to(TO).subject(SUBJECT)
}

fn bench_text_html(c: &mut Criterion) {
    let (text, html) = (text_2k(), html_2k());
    let mut group = c.benchmark_group("a_text_html_2k");
    group.bench_function("outbox", |b| {
        b.iter(|| {
            let spec = outbox_base()
                .text(text.clone())
                .html(html.clone())
                .into_spec();
            black_box(compose(&spec).unwrap().into_data())
        })
    });
    group.bench_function("lettre", |b| {
        b.iter(|| {
            let message = lettre_base()
                .multipart(MultiPart::alternative_plain_html(
                    text.clone(),
                    html.clone(),
                ))
                .unwrap();
            black_box(message.formatted())
        })
    });
    group.finish();
}

fn bench_inline_images(c: &mut Criterion) {
    let html = r#"<p>Logos</p><img src="a.png"><img src="b.png"><img src="c.png">"#.to_string();
    let images: Vec<(String, Vec<u8>)> = ["a.png", "b.png", "c.png"]
        .iter()
        .enumerate()
        .map(|(i, name)| (name.to_string(), image(i as u8, 20_000)))
        .collect();
    let mut group = c.benchmark_group("b_html_3_inline_images");
    group.bench_function("outbox", |b| {
        b.iter(|| {
            let mut builder = outbox_base().html(html.clone());
            for (name, data) in &images {
                builder = builder.html_image_data(name.clone(), data.clone());
            }
            black_box(compose(&builder.into_spec()).unwrap().into_data())
        })
    });
    group.bench_function("lettre", |b| {
        b.iter(|| {
            let cid_html = html.replace("src=\"", "src=\"cid:");
            let mut related = MultiPart::related().singlepart(SinglePart::html(cid_html));
            for (name, data) in &images {
                related = related.singlepart(
                    Attachment::new_inline(name.clone())
                        .body(data.clone(), ContentType::parse("image/png").unwrap()),
                );
            }
            black_box(lettre_base().multipart(related).unwrap().formatted())
        })
    });
    group.finish();
}

fn bench_attachment(c: &mut Criterion) {
    let data = image(7, 8 * 1024 * 1024);
    let mut group = c.benchmark_group("c_8mb_attachment");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("outbox", |b| {
        b.iter(|| {
            let spec = outbox_base()
                .text("See attached.")
                .attachment(
                    PartSource::data("data.bin", data.clone())
                        .with_content_type("application/octet-stream"),
                )
                .into_spec();
            black_box(compose(&spec).unwrap().into_data())
        })
    });
    group.bench_function("lettre", |b| {
        b.iter(|| {
            let mixed = MultiPart::mixed()
                .singlepart(SinglePart::plain("See attached.".to_string()))
                .singlepart(Attachment::new("data.bin".to_string()).body(
                    data.clone(),
                    ContentType::parse("application/octet-stream").unwrap(),
                ));
            black_box(lettre_base().multipart(mixed).unwrap().formatted())
        })
    });
    group.bench_function("base64_lines_only", |b| {
        let mut out = Vec::with_capacity(data.len() / 57 * 78 + 80);
        b.iter(|| {
            out.clear();
            outbox_mime::base64_lines_into(black_box(&data), &mut out);
            black_box(out.len())
        })
    });
    group.finish();
}

fn bench_long_line_check(c: &mut Criterion) {
    // A 1 MB composed message of 76-column base64 and short text lines: the common case.
    let spec = outbox_base()
        .text(text_2k())
        .attach_data("data.bin", image(3, 760_000))
        .into_spec();
    let data = compose(&spec).unwrap().into_data();
    let mut group = c.benchmark_group("long_line_check_1mb");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.bench_function("fit_line_length", |b| {
        b.iter(|| {
            let fitted = outbox_mime::fit_line_length(black_box(&data)).unwrap();
            assert!(matches!(fitted, std::borrow::Cow::Borrowed(_)));
            black_box(fitted.len())
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_text_html,
    bench_inline_images,
    bench_attachment,
    bench_long_line_check
);
criterion_main!(benches);
