//! Discovery on PostgreSQL: the content paths and values of the newest
//! `SAMPLE_EVENTS` events, walked with `jsonb_each`. The table has no index of its
//! content's paths, so a bounded sample stands in for one: the answer says when it was
//! cut (`complete` false).

use eventline_core::content_leaves::{JsonType, Leaf};
use eventline_core::properties::{
    Properties, PropertiesTally, PropertyValues, SAMPLE_EVENTS, ValuesTally,
};
use serde_json::Value;
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use crate::Error;

/// The newest events (of one type, with `$2`), as `sample(content)`.
fn sample(event_type: bool) -> String {
    let of_type = if event_type {
        "WHERE event_type = $2"
    } else {
        ""
    };
    format!(
        "sample AS (SELECT content FROM events {of_type} \
         ORDER BY timestamp_ms DESC, id DESC LIMIT $1)"
    )
}

pub(super) async fn properties(
    client: &Client,
    event_type: Option<&str>,
) -> Result<Properties, Error> {
    // Each object's members, to 16 keys deep; a non-object's members are none.
    let sql = format!(
        "WITH RECURSIVE {}, \
         walk(keys, value) AS ( \
             SELECT ARRAY[member.key], member.value FROM sample, jsonb_each(sample.content) AS member \
             UNION ALL \
             SELECT walk.keys || member.key, member.value FROM walk, \
                 jsonb_each(CASE WHEN jsonb_typeof(walk.value) = 'object' THEN walk.value ELSE '{{}}'::jsonb END) AS member \
             WHERE cardinality(walk.keys) < 16) \
         SELECT keys, jsonb_typeof(value), count(*)::bigint FROM walk GROUP BY 1, 2",
        sample(event_type.is_some())
    );
    let limit = SAMPLE_EVENTS as i64;
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&limit];
    if let Some(event_type) = &event_type {
        params.push(event_type);
    }
    let rows = client.query(&sql, &params).await?;
    let mut tally = PropertiesTally::default();
    for row in &rows {
        let keys: Vec<String> = row.try_get(0)?;
        let json_type: String = row.try_get(1)?;
        let count = row.try_get::<_, i64>(2)?.unsigned_abs();
        let mut types = [0; 6];
        if let Some(at) = JsonType::ALL
            .iter()
            .position(|listed| listed.name() == json_type)
        {
            types[at] = count;
        }
        tally.add(&keys, &types);
    }
    if sampled_whole(client, event_type).await? {
        Ok(tally.properties())
    } else {
        tally.mark_incomplete();
        Ok(tally.properties())
    }
}

pub(super) async fn values(
    client: &Client,
    keys: &[String],
    limit: usize,
) -> Result<PropertyValues, Error> {
    // `->` with each key bound as text: an object member, never an array's item.
    let path: String = (0..keys.len())
        .map(|at| format!(" -> ${}::text", at + 2))
        .collect();
    let sql = format!(
        "WITH {}, at_path AS (SELECT (content{path}) AS value FROM sample) \
         SELECT value::text, count(*)::bigint FROM at_path \
         WHERE value IS NOT NULL GROUP BY value",
        sample(false)
    );
    let sample_len = SAMPLE_EVENTS as i64;
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&sample_len];
    for key in keys {
        params.push(key);
    }
    let rows = client.query(&sql, &params).await?;
    let mut tally = ValuesTally::default();
    let mut key = Vec::new();
    for row in &rows {
        let text: String = row.try_get(0)?;
        let count = row.try_get::<_, i64>(1)?.unsigned_abs();
        let value: Value = serde_json::from_str(&text).map_err(|error| {
            Error::Corrupt(format!("a jsonb value PostgreSQL printed: {error}"))
        })?;
        key.clear();
        // Arrays and objects have no key, as in the embedded store.
        if Leaf::of(&value).write_key(&mut key) {
            tally.add(&key, count);
        }
    }
    if !sampled_whole(client, None).await? {
        tally.mark_incomplete();
    }
    Ok(tally.values(limit))
}

/// Whether the sample held every event (of the type).
async fn sampled_whole(client: &Client, event_type: Option<&str>) -> Result<bool, Error> {
    let beyond = SAMPLE_EVENTS as i64;
    let row = match event_type {
        Some(event_type) => {
            client
                .query_one(
                    "SELECT count(*) FROM (SELECT 1 FROM events WHERE event_type = $2 LIMIT $1::bigint + 1) AS counted",
                    &[&beyond, &event_type],
                )
                .await?
        }
        None => {
            client
                .query_one(
                    "SELECT count(*) FROM (SELECT 1 FROM events LIMIT $1::bigint + 1) AS counted",
                    &[&beyond],
                )
                .await?
        }
    };
    Ok(row.try_get::<_, i64>(0)? <= beyond)
}
