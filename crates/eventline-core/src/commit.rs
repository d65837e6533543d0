//! A group commit's parts that both stores share and that do no IO: how durable a commit
//! is, the submissions of one group, what became of each, and how that is decided
//! against what is stored.

use std::collections::HashMap;

use uuid::Uuid;

use crate::event::Event;

/// How hard a commit works to survive a crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// Every commit reaches the disk (fsync) before it is acknowledged: an acknowledged
    /// event survives a crash of the process and of the machine.
    #[default]
    Full,
    /// Commits reach the operating system before they are acknowledged, the disk a little
    /// later: an acknowledged event survives a crash of the process, not of the machine.
    Normal,
}

/// The events of one request. A store keeps all of them or none of them.
#[derive(Debug, Clone)]
pub struct Submission {
    pub events: Vec<Event>,
}

/// What became of one submission.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Every event is stored: newly, or already before (a replay), in submission order.
    Stored(Vec<Appended>),
    /// The event at `index` has the id of a stored event that differs from it; nothing of
    /// the submission was stored.
    Conflict { index: usize, id: Uuid },
    /// The event at `index` belongs to a suppressed contact; nothing of the submission was
    /// stored.
    Suppressed { index: usize, contact_id: String },
}

/// One event of a stored submission.
#[derive(Debug, Clone)]
pub struct Appended {
    pub id: Uuid,
    /// For a replay, the copy stored first, which is what its answer shows; `None` for an
    /// event stored now, as it was submitted. The submitted events are not copied into
    /// the answer: a batch's answer needs only the ids, and under an import the copies
    /// were tens of megabytes held through each commit.
    pub replay_of: Option<Event>,
}

impl Appended {
    /// An event stored now.
    pub fn new(id: Uuid) -> Appended {
        Appended {
            id,
            replay_of: None,
        }
    }

    /// A replay of `stored`, the copy stored first.
    pub fn replay(stored: Event) -> Appended {
        Appended {
            id: stored.id,
            replay_of: Some(stored),
        }
    }

    pub fn replayed(&self) -> bool {
        self.replay_of.is_some()
    }
}

/// Decides each submission against the stored events (`stored`), the suppressed
/// contacts, and what the group's earlier submissions add: the outcomes, in submission
/// order, and the events to store, in order.
///
/// A submission with an event of a suppressed contact is refused whole; so is one with
/// an id stored (or taken earlier in the group or the submission) with other fields. An
/// id stored with the same fields is a replay and answers with the copy stored first.
pub fn decide<'a>(
    submissions: &[Submission],
    stored: impl Fn(&Uuid) -> Option<&'a Event>,
    is_suppressed: impl Fn(&str) -> bool,
) -> (Vec<Outcome>, Vec<Event>) {
    // The group's new events by id: where they are in `new_events`.
    let mut added: HashMap<Uuid, usize> = HashMap::new();
    let mut new_events: Vec<Event> = Vec::new();
    let mut outcomes = Vec::with_capacity(submissions.len());
    for submission in submissions {
        let earlier =
            |id: &Uuid| stored(id).or_else(|| added.get(id).and_then(|at| new_events.get(*at)));
        match decide_one(submission, earlier, &is_suppressed) {
            Ok((appended, accepted)) => {
                for event in accepted {
                    added.insert(event.id, new_events.len());
                    new_events.push(event);
                }
                outcomes.push(Outcome::Stored(appended));
            }
            Err(refusal) => outcomes.push(refusal),
        }
    }
    (outcomes, new_events)
}

/// One submission: its answers and its new events, or why it is refused.
///
/// `earlier` finds an id stored before or taken by an earlier submission of the group.
fn decide_one<'a>(
    submission: &Submission,
    earlier: impl Fn(&Uuid) -> Option<&'a Event>,
    is_suppressed: &impl Fn(&str) -> bool,
) -> Result<(Vec<Appended>, Vec<Event>), Outcome> {
    for (index, event) in submission.events.iter().enumerate() {
        if let Some(contact_id) = &event.contact_id
            && is_suppressed(contact_id)
        {
            return Err(Outcome::Suppressed {
                index,
                contact_id: contact_id.clone(),
            });
        }
    }
    let mut appended = Vec::with_capacity(submission.events.len());
    let mut accepted: Vec<Event> = Vec::new();
    let mut taken: HashMap<Uuid, usize> = HashMap::new();
    for (index, event) in submission.events.iter().enumerate() {
        let earlier =
            earlier(&event.id).or_else(|| taken.get(&event.id).and_then(|at| accepted.get(*at)));
        match earlier {
            Some(earlier) if earlier.is_same_submission(event) => {
                appended.push(Appended::replay(earlier.clone()));
            }
            Some(_) => {
                return Err(Outcome::Conflict {
                    index,
                    id: event.id,
                });
            }
            None => {
                taken.insert(event.id, accepted.len());
                accepted.push(event.clone());
                appended.push(Appended::new(event.id));
            }
        }
    }
    Ok((appended, accepted))
}
