//! Who asks: every operation of the service layer runs on behalf of a [`Principal`], which the
//! transport resolves once per request (today: anonymous, or a named user the transport vouches
//! for; sign-in and tokens come later) and which is recorded as the actor of every change it
//! makes.

use std::fmt;

use callboard_model::EntityRef;

/// The actor recorded for anonymous callers (Backstage's guest user).
pub const GUEST: &str = "user:default/guest";

/// Who an operation runs for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// A caller nobody vouched for.
    Anonymous,
    /// A user, by their entity ref (`user:<namespace>/<name>`).
    User(EntityRef),
}

impl Principal {
    /// The actor recorded on the events this principal causes: the user's ref, or the guest's.
    pub fn actor(&self) -> String {
        match self {
            Principal::Anonymous => GUEST.to_owned(),
            Principal::User(user) => user.canonical(),
        }
    }

    /// Whether nobody vouched for this caller.
    pub fn is_anonymous(&self) -> bool {
        matches!(self, Principal::Anonymous)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Anonymous => f.write_str("anonymous"),
            Principal::User(user) => write!(f, "{user}"),
        }
    }
}
