//! A realistic, reproducible data set: 20 event types with a skewed mix, 100,000
//! contacts, 80 % app and 20 % site, 200 to 300 bytes per event, and content worth
//! asking about: a `store_id` of 1,000 stores (Zipf), a `plan` of 5, a `currency`, a
//! numeric `amount`, a nested `address`, a rare `coupon`, and filler fields of random
//! text, as order numbers and session ids are.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::Context;
use bytes::Bytes;
use std::io::Write;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::{Map, Value, json};

/// Names the data set's files: a change to the generator changes it, so that a run never
/// reuses files of another generator.
pub const VERSION: u32 = 2;

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
/// `store-0001` … `store-1000`.
pub const STORES: usize = 1_000;
/// Each plan and its share of events: `pro` is the filter that matches about 11 %.
const PLANS: [(&str, f64); 5] = [
    ("free", 0.45),
    ("starter", 0.25),
    ("pro", 0.11),
    ("business", 0.12),
    ("enterprise", 0.07),
];
const CURRENCIES: [(&str, f64); 4] = [("EUR", 0.5), ("USD", 0.35), ("GBP", 0.1), ("JPY", 0.05)];
const CITIES: [(&str, &str); 10] = [
    ("Paris", "FR"),
    ("Lyon", "FR"),
    ("Berlin", "DE"),
    ("Munich", "DE"),
    ("London", "GB"),
    ("Madrid", "ES"),
    ("Amsterdam", "NL"),
    ("New York", "US"),
    ("Austin", "US"),
    ("Tokyo", "JP"),
];
/// Fields of random text that fill an event to its drawn size.
const FILLERS: [&str; 10] = [
    "order_number",
    "sku",
    "session_id",
    "referrer",
    "campaign",
    "device",
    "app_version",
    "locale",
    "variant",
    "card_id",
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

fn weighted<T: Copy>(rng: &mut StdRng, choices: &[(T, f64)]) -> T {
    let mut pick = rng.random::<f64>() * choices.iter().map(|(_, weight)| weight).sum::<f64>();
    for (choice, weight) in choices {
        if pick < *weight {
            return *choice;
        }
        pick -= weight;
    }
    choices[choices.len() - 1].0
}

/// A store under a Zipf skew of exponent 2: the first in about 61 % of events, the last
/// few hundred in at most a handful each of 10,000,000, which is what a needle is.
pub fn store_id(rng: &mut StdRng) -> String {
    static CUMULATIVE: OnceLock<Vec<f64>> = OnceLock::new();
    let cumulative = CUMULATIVE.get_or_init(|| {
        let mut sum = 0.0;
        (1..=STORES)
            .map(|rank| {
                sum += 1.0 / (rank * rank) as f64;
                sum
            })
            .collect()
    });
    let pick = rng.random::<f64>() * cumulative[STORES - 1];
    let rank = cumulative
        .partition_point(|sum| *sum <= pick)
        .min(STORES - 1)
        + 1;
    format!("store-{rank:04}")
}

fn text(rng: &mut StdRng, len: usize) -> String {
    (0..len)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

fn content(rng: &mut StdRng) -> Map<String, Value> {
    let mut content = Map::new();
    content.insert("store_id".to_owned(), json!(store_id(rng)));
    content.insert("plan".to_owned(), json!(weighted(rng, &PLANS)));
    if rng.random_bool(0.7) {
        content.insert("currency".to_owned(), json!(weighted(rng, &CURRENCIES)));
    }
    if rng.random_bool(0.6) {
        let cents: u32 = rng.random_range(0..=100_000);
        content.insert("amount".to_owned(), json!(f64::from(cents) / 100.0));
    }
    if rng.random_bool(0.4) {
        let (city, country) = CITIES[rng.random_range(0..CITIES.len())];
        content.insert(
            "address".to_owned(),
            json!({"city": city, "country": country}),
        );
    }
    if rng.random_bool(0.01) {
        content.insert(
            "coupon".to_owned(),
            json!(format!("SPRING-{}", rng.random_range(100..1000))),
        );
    }
    content
}

pub fn event(rng: &mut StdRng) -> Value {
    let target = rng.random_range(BYTES_MIN..=BYTES_MAX);
    let contact_id = if rng.random_bool(0.9) {
        json!(format!("contact-{}", rng.random_range(0..CONTACTS)))
    } else {
        json!(null)
    };
    let scope = if rng.random_bool(0.8) { "app" } else { "site" };
    let mut event = json!({
        "event_type": event_type(rng),
        "content": content(rng),
        "contact_id": contact_id,
        "scope": scope,
        "timestamp": TIME_START_MS + rng.random_range(0..TIME_SPAN_MS),
    });
    // Filler fields up to the drawn size, so sizes spread over 200–300 bytes.
    for filler in FILLERS {
        let len = event.to_string().len();
        // A field's name, quotes, colon and comma.
        let room = target.saturating_sub(len + filler.len() + 6);
        if room < 6 {
            break;
        }
        let len = room.min(rng.random_range(6..18));
        let value = text(rng, len);
        event["content"][filler] = json!(value);
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
