//! Composes one benchmark message N times, with Outbox or with lettre, so that an
//! instruction counter (`valgrind --tool=callgrind`) can compare the two on a machine too
//! noisy for wall-clock timings:
//!
//! `valgrind --tool=callgrind target/release/examples/compose_once outbox a 100`
//!
//! Cases as in `benches/compose.rs`: `a` 2 KB text + html, `b` html with 3 inline images,
//! `c` one 8 MB attachment.

use lettre::message::header::ContentType;
use lettre::message::{Attachment, MultiPart, SinglePart};
use outbox_mime::{EmailSpec, PartSource, compose};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (side, case) = (args[1].as_str(), args[2].as_str());
    let times: usize = args.get(3).map_or(1, |n| n.parse().expect("a count"));
    let text = "Dear customer, here is the news of the month with a few details.\n".repeat(32);
    let html = "<p>Dear customer, here is the <b>news</b> of the month.</p>\n".repeat(36);
    let image = |seed: u8, len: usize| -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    };
    let images: Vec<(String, Vec<u8>)> = ["a.png", "b.png", "c.png"]
        .iter()
        .enumerate()
        .map(|(i, n)| (n.to_string(), image(i as u8, 20_000)))
        .collect();
    let big = image(7, 8 * 1024 * 1024);
    let img_html = r#"<p>Logos</p><img src="a.png"><img src="b.png"><img src="c.png">"#;
    let mut total = 0;
    for _ in 0..times {
        let data = match side {
            "outbox" => {
                let b = EmailSpec::builder()
                    .from("Outbox <noreply@example.com>")
                    .to("Ann Lee <ann@example.com>")
                    .subject("Your November statement");
                let b = match case {
                    "a" => b.text(text.clone()).html(html.clone()),
                    "b" => images.iter().fold(b.html(img_html), |b, (n, d)| {
                        b.html_image_data(n.clone(), d.clone())
                    }),
                    _ => b.text("See attached.").attachment(
                        PartSource::data("data.bin", big.clone())
                            .with_content_type("application/octet-stream"),
                    ),
                };
                compose(&b.into_spec()).unwrap().into_data()
            }
            _ => {
                let b = lettre::Message::builder()
                    .from("Outbox <noreply@example.com>".parse().unwrap())
                    .to("Ann Lee <ann@example.com>".parse().unwrap())
                    .subject("Your November statement");
                let body = match case {
                    "a" => MultiPart::alternative_plain_html(text.clone(), html.clone()),
                    "b" => images.iter().fold(
                        MultiPart::related()
                            .singlepart(SinglePart::html(img_html.replace("src=\"", "src=\"cid:"))),
                        |m, (n, d)| {
                            m.singlepart(
                                Attachment::new_inline(n.clone())
                                    .body(d.clone(), ContentType::parse("image/png").unwrap()),
                            )
                        },
                    ),
                    _ => MultiPart::mixed()
                        .singlepart(SinglePart::plain("See attached.".to_string()))
                        .singlepart(Attachment::new("data.bin".to_string()).body(
                            big.clone(),
                            ContentType::parse("application/octet-stream").unwrap(),
                        )),
                };
                b.multipart(body).unwrap().formatted()
            }
        };
        total += data.len();
    }
    println!("{total}");
}
