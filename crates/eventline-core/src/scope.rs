//! Where an event happened. Its own module: the limits (a default scope) and the event
//! both need it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where an event happened: in an app or on a web site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    App,
    Site,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::App => "app",
            Scope::Site => "site",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        match text {
            "app" => Some(Scope::App),
            "site" => Some(Scope::Site),
            _ => None,
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
