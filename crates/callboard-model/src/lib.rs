//! Callboard's entity model: the vocabulary every other crate speaks.
//!
//! Descriptor documents (Backstage's `catalog-info.yaml` format) arrive here as JSON trees and
//! leave as a typed [`Entity`] or a [`Rejection`] with [`Diagnostic`]s that name the field and the
//! rule. The rules are Backstage's, checked against real descriptors in `../shared/corpus`.
//!
//! Reading order: [`entity_ref`] (how entities name each other), [`validate`] (the pipeline),
//! [`entity`] (the typed result), [`relations`] (edges derived from spec fields).
//!
//! Architecture invariant: this crate performs no I/O and depends on no runtime, database or
//! network crate. YAML reading and placeholder resolution live in `callboard-descriptor`.

mod check;
pub mod diagnostic;
pub mod entity;
pub mod entity_ref;
pub mod format;
pub mod path;
pub mod relations;
pub mod validate;

pub use diagnostic::{Diagnostic, Rule};
pub use entity::{Entity, Kind, Spec};
pub use entity_ref::{DEFAULT_NAMESPACE, EntityRef, RefContext, RefError};
pub use path::{FieldPath, Segment};
pub use relations::{Relation, RelationType};
pub use validate::{Envelope, Rejection, check_envelope, validate};
