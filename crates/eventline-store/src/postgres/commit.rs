//! A group commit's SQL: the group decided against what is stored (replays, conflicts,
//! suppressed contacts), ids another server stored meanwhile read back as replays, the
//! counts per minute, and the one `INSERT … SELECT FROM unnest(…)` in id order.

use std::collections::{HashMap, HashSet};

use deadpool_postgres::Transaction;
use eventline_core::event::Event;
use uuid::Uuid;

use super::{EVENT_COLUMNS, event_from_row};
use crate::page_sql;
use crate::{Appended, Error, Outcome, Submission};

/// Decides every submission of the group against the stored events and the group's
/// earlier submissions: the outcomes, and the events to insert.
pub(super) async fn decide(
    client: &Transaction<'_>,
    submissions: &[Submission],
) -> Result<(Vec<Outcome>, Vec<Event>), Error> {
    let ids: Vec<Uuid> = submissions
        .iter()
        .flat_map(|submission| submission.events.iter().map(|event| event.id))
        .collect();
    let known = stored_by_id(client, &ids).await?;
    let contact_ids: Vec<&str> = submissions
        .iter()
        .flat_map(|submission| submission.events.iter())
        .filter_map(|event| event.contact_id.as_deref())
        .collect();
    let suppressed: std::collections::HashSet<String> = if contact_ids.is_empty() {
        Default::default()
    } else {
        let statement = client
            .prepare_cached("SELECT contact_id FROM suppressed_contacts WHERE contact_id = ANY($1)")
            .await?;
        client
            .query(&statement, &[&contact_ids])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    Ok(eventline_core::commit::decide(
        submissions,
        |id| known.get(id),
        |contact_id| suppressed.contains(contact_id),
    ))
}

/// A `DELETE FROM events WHERE <condition>` that appends the matching negative count
/// deltas in the same statement.
pub(super) fn deleting_counted(condition: &str) -> String {
    format!(
        "WITH deleted AS (DELETE FROM events WHERE {condition} RETURNING timestamp_ms, event_type, scope),
              counted AS (INSERT INTO event_count_deltas (minute, event_type, scope, count)
                          SELECT timestamp_ms / 60000, event_type, scope, -count(*) FROM deleted GROUP BY 1, 2, 3)
         SELECT count(*) FROM deleted"
    )
}

/// After an insert that skipped ids another transaction (another group commit, another
/// server) stored since the lookup: when each of those is the same event, the group's
/// copies become replays of the stored ones and only the inserted events stay in
/// `new_events`; true when so. The insert waited for those transactions to end, so their
/// events are visible here. A skipped id with other fields is a conflict the lookup did
/// not see: false, and the caller decides the group again.
pub(super) async fn take_raced_replays(
    client: &Transaction<'_>,
    outcomes: &mut [Outcome],
    new_events: &mut Vec<Event>,
    inserted: &HashSet<Uuid>,
) -> Result<bool, Error> {
    let raced: Vec<Uuid> = new_events
        .iter()
        .map(|event| event.id)
        .filter(|id| !inserted.contains(id))
        .collect();
    let stored = stored_by_id(client, &raced).await?;
    let all_same = new_events
        .iter()
        .filter(|event| !inserted.contains(&event.id))
        .all(|event| {
            stored
                .get(&event.id)
                .is_some_and(|stored| stored.is_same_submission(event))
        });
    if !all_same {
        return Ok(false);
    }
    for outcome in outcomes.iter_mut() {
        if let Outcome::Stored(appended) = outcome {
            for entry in appended.iter_mut() {
                if let Some(copy) = stored.get(&entry.id) {
                    *entry = Appended::replay(copy.clone());
                }
            }
        }
    }
    new_events.retain(|event| inserted.contains(&event.id));
    Ok(true)
}

/// The stored events among `ids`, by id.
pub(super) async fn stored_by_id(
    client: &Transaction<'_>,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, Event>, Error> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE id = ANY($1)"
        ))
        .await?;
    let mut known = HashMap::new();
    for row in client.query(&statement, &[&ids]).await? {
        let event = event_from_row(&row)?;
        known.insert(event.id, event);
    }
    Ok(known)
}

/// Appends the count deltas of newly inserted events: one row per minute, type and scope.
pub(super) async fn count(client: &Transaction<'_>, events: &[Event]) -> Result<(), Error> {
    if events.is_empty() {
        return Ok(());
    }
    let counts = page_sql::counts_per_minute(events);
    let minutes: Vec<i64> = counts.keys().map(|key| key.0).collect();
    let types: Vec<&str> = counts.keys().map(|key| key.1).collect();
    let scopes: Vec<&str> = counts.keys().map(|key| key.2).collect();
    let values: Vec<i64> = counts.values().copied().collect();
    let statement = client
        .prepare_cached(
            "INSERT INTO event_count_deltas (minute, event_type, scope, count)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::bigint[])",
        )
        .await?;
    client
        .execute(&statement, &[&minutes, &types, &scopes, &values])
        .await?;
    Ok(())
}

/// Inserts the events in one statement, in id order; the ids inserted (an id another
/// transaction stored meanwhile is skipped).
///
/// The order matters: concurrent group commits that insert some of the same ids wait for
/// each other on each such id, and taking them in one global order means none can wait
/// for another that waits for it (a deadlock, which the harness found with ids posted by
/// several requests at once).
pub(super) async fn insert(
    client: &Transaction<'_>,
    events: &[Event],
) -> Result<HashSet<Uuid>, Error> {
    if events.is_empty() {
        return Ok(HashSet::new());
    }
    let mut sorted: Vec<&Event> = events.iter().collect();
    sorted.sort_unstable_by_key(|event| event.id);
    let events = sorted;
    let statement = client
        .prepare_cached(
            "INSERT INTO events (id, timestamp_ms, received_at_ms, client_timestamp_ms, event_type, contact_id, scope, content)
             SELECT id, timestamp_ms, received_at_ms, client_timestamp_ms, event_type, contact_id, scope, content::jsonb
             FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::text[], $8::text[])
                 AS submitted (id, timestamp_ms, received_at_ms, client_timestamp_ms, event_type, contact_id, scope, content)
             ON CONFLICT (id) DO NOTHING
             RETURNING id",
        )
        .await?;
    let ids: Vec<Uuid> = events.iter().map(|event| event.id).collect();
    let timestamps: Vec<i64> = events.iter().map(|event| event.timestamp_ms).collect();
    let received: Vec<i64> = events.iter().map(|event| event.received_at_ms).collect();
    let client_timestamps: Vec<Option<i64>> = events
        .iter()
        .map(|event| event.client_timestamp_ms)
        .collect();
    let event_types: Vec<&str> = events
        .iter()
        .map(|event| event.event_type.as_str())
        .collect();
    let contact_ids: Vec<Option<&str>> = events
        .iter()
        .map(|event| event.contact_id.as_deref())
        .collect();
    let scopes: Vec<&str> = events.iter().map(|event| event.scope.as_str()).collect();
    let contents: Vec<&str> = events.iter().map(|event| event.content.get()).collect();
    let inserted = client
        .query(
            &statement,
            &[
                &ids,
                &timestamps,
                &received,
                &client_timestamps,
                &event_types,
                &contact_ids,
                &scopes,
                &contents,
            ],
        )
        .await?;
    inserted
        .iter()
        .map(|row| row.try_get(0).map_err(Error::from))
        .collect()
}
