//! A realistic, reproducible data set: 20 event types with a skewed mix, 100,000
//! contacts, 80 % app and 20 % site, 3 to 8 content fields, 200 to 300 bytes per event.

use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use std::io::Write;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, Value, json};

const EVENT_TYPES: [&str; 20] = [
    "page_view",
    "screen_view",
    "new_order",
    "store_purchase",
    "add_to_cart",
    "new_contact",
    "login",
    "logout",
    "search",
    "product_view",
    "checkout_started",
    "payment_failed",
    "coupon_applied",
    "review_posted",
    "newsletter_signup",
    "push_opened",
    "share",
    "wishlist_add",
    "refund_requested",
    "account_deleted",
];
pub const CONTACTS: u32 = 100_000;
const FIELDS: [&str; 16] = [
    "store_id",
    "card_id",
    "order_number",
    "amount",
    "currency",
    "sku",
    "quantity",
    "page",
    "referrer",
    "campaign",
    "device",
    "os",
    "app_version",
    "locale",
    "session_id",
    "variant",
];
const BYTES_MIN: usize = 200;
const BYTES_MAX: usize = 300;
/// 30 days before 2026-01-01, in milliseconds.
pub const TIME_START_MS: i64 = 1_764_547_200_000;
pub const TIME_SPAN_MS: i64 = 30 * 24 * 3_600_000;

/// The `n`-th event type under a Zipf-like skew: the first type is about 20 times as
/// common as the last.
fn event_type(rng: &mut StdRng) -> &'static str {
    let weights: Vec<f64> = (1..=EVENT_TYPES.len())
        .map(|rank| 1.0 / rank as f64)
        .collect();
    let total: f64 = weights.iter().sum();
    let mut pick = rng.random::<f64>() * total;
    for (index, weight) in weights.iter().enumerate() {
        if pick < *weight {
            return EVENT_TYPES[index];
        }
        pick -= weight;
    }
    EVENT_TYPES[0]
}

fn field_value(rng: &mut StdRng, field: &str) -> Value {
    match field {
        "amount" => json!((rng.random_range(100..100_000) as f64) / 100.0),
        "quantity" => json!(rng.random_range(1..10)),
        "currency" => json!(["EUR", "USD", "GBP"][rng.random_range(0..3)]),
        _ => {
            let len = rng.random_range(6..18);
            let text: String = (0..len)
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect();
            json!(text)
        }
    }
}

pub fn event(rng: &mut StdRng) -> Value {
    let target = rng.random_range(BYTES_MIN..=BYTES_MAX);
    let field_count = rng.random_range(3..=8);
    let mut content = Map::new();
    let mut fields = FIELDS.to_vec();
    for _ in 0..field_count {
        let field = fields.swap_remove(rng.random_range(0..fields.len()));
        content.insert(field.to_owned(), field_value(rng, field));
    }
    let contact_id = if rng.random_bool(0.9) {
        json!(format!("contact-{}", rng.random_range(0..CONTACTS)))
    } else {
        json!(null)
    };
    let scope = if rng.random_bool(0.8) { "app" } else { "site" };
    let mut event = json!({
        "event_type": event_type(rng),
        "content": content,
        "contact_id": contact_id,
        "scope": scope,
        "timestamp": TIME_START_MS + rng.random_range(0..TIME_SPAN_MS),
    });
    // Pad or trim the content to the drawn size, so sizes spread over 200–300 bytes.
    let len = event.to_string().len();
    if len < target {
        let pad: String = "x".repeat(target.saturating_sub(len + 10).max(1));
        event["content"]["note"] = json!(pad);
    }
    while event.to_string().len() > BYTES_MAX {
        let Some(content) = event["content"].as_object_mut() else {
            break;
        };
        let Some(key) = content.keys().next().cloned() else {
            break;
        };
        content.remove(&key);
    }
    event
}

/// The data set's first `events` events, one JSON text each; the same on every call.
pub fn events(events: usize) -> impl Iterator<Item = Value> {
    let mut rng = StdRng::seed_from_u64(0x0e7e_471e);
    (0..events).map(move |_| event(&mut rng))
}

pub fn generate(events: usize) -> Vec<String> {
    self::events(events)
        .map(|event| event.to_string())
        .collect()
}

pub fn write_ndjson(events: usize, out: &mut impl Write) -> anyhow::Result<()> {
    for event in self::events(events) {
        writeln!(out, "{event}")?;
    }
    Ok(())
}

/// The lines of an NDJSON file in batches of `batch_len` lines, with each batch's length.
pub fn ndjson_batches(path: &Path, batch_len: usize) -> anyhow::Result<Vec<(Bytes, usize)>> {
    let data = Bytes::from(std::fs::read(path).with_context(|| path.display().to_string())?);
    let mut batches = Vec::with_capacity(data.len() / 200 / batch_len + 1);
    let (mut start, mut lines) = (0, 0);
    for (index, byte) in data.iter().enumerate() {
        if *byte == b'\n' {
            lines += 1;
            if lines == batch_len {
                batches.push((data.slice(start..=index), lines));
                (start, lines) = (index + 1, 0);
            }
        }
    }
    if lines > 0 {
        batches.push((data.slice(start..), lines));
    }
    Ok(batches)
}

pub fn write_first_lines(from: &Path, to: &Path, lines: usize) -> anyhow::Result<()> {
    use std::io::BufRead;
    let reader = std::io::BufReader::new(std::fs::File::open(from)?);
    let mut out = std::io::BufWriter::new(std::fs::File::create(to)?);
    for line in reader.lines().take(lines) {
        writeln!(out, "{}", line?)?;
    }
    Ok(out.flush()?)
}
