//! The field types each role of `#[derive(SyncEntity)]` takes, as traits.
//!
//! The derive never decides types from tokens, so it cannot check that a
//! `#[sync(local_only)]` field is an `Option`; instead its generated code names the
//! field type through the trait of the field's role (`<T as LocalOnlyField>::FITS`).
//! A type that does not fit is then one plain compile error at the field's type, with
//! the message below, in the same compile as any other mistake of the struct.

use time::OffsetDateTime;

use crate::entity::{DecodeError, FieldSource, FieldValue, NonOptional};
use crate::value::Value;

/// The type of the id field: `String` only (the `id` system column is text on every
/// server of the protocol).
#[diagnostic::on_unimplemented(
    message = "the id field of #[derive(SyncEntity)] must be a `String`, not `{Self}`",
    label = "the id must be a `String`",
    note = "the id is the `id` system column, text on the wire; keep another key (a uuid::Uuid, a number) in a field of its own, or store its text in the id (`uuid.to_string()`)"
)]
pub trait IdField: Sized {
    /// Named by the generated code where it only checks the type.
    const FITS: () = ();
    /// The id as text.
    fn as_id(&self) -> &str;
    /// The id from text.
    fn from_id(id: String) -> Self;
    /// The id as a value.
    fn to_value(&self) -> Value;
    /// Reads field `index` (named `field`) of `source`.
    fn read_field<S: FieldSource>(source: &mut S, index: usize, field: &'static str) -> Result<Self, DecodeError>;
}

impl IdField for String {
    #[inline]
    fn as_id(&self) -> &str {
        self
    }
    #[inline]
    fn from_id(id: String) -> Self {
        id
    }
    #[inline]
    fn to_value(&self) -> Value {
        FieldValue::to_value(self)
    }
    #[inline]
    fn read_field<S: FieldSource>(source: &mut S, index: usize, field: &'static str) -> Result<Self, DecodeError> {
        <String as FieldValue>::read_field(source, index, field)
    }
}

/// The type of a `#[sync(local_only)]` field: an `Option`, since rows pulled from the
/// server have no value for it.
#[diagnostic::on_unimplemented(
    message = "a #[sync(local_only)] field must be an `Option`, not `{Self}`",
    label = "not an `Option`",
    note = "rows pulled from the server have no value for a local-only field: make it `Option<...>`"
)]
pub trait LocalOnlyField {
    /// Named by the generated code; its use is the check.
    const FITS: () = ();
}

impl<T: NonOptional> LocalOnlyField for Option<T> {}

/// The type of a `#[sync(version)]` field: the version is an opaque string.
#[diagnostic::on_unimplemented(
    message = "a #[sync(version)] field must be `String` or `Option<String>`, not `{Self}`",
    label = "not a `String` or `Option<String>`",
    note = "the version is an opaque string the server sets on every write"
)]
pub trait VersionField {
    /// Named by the generated code; its use is the check.
    const FITS: () = ();
}

impl VersionField for String {}
impl VersionField for Option<String> {}

/// The type of a `#[sync(updated_at)]` or `#[sync(created_at)]` field: a timestamp or
/// its text, or an `Option` of one.
#[diagnostic::on_unimplemented(
    message = "a #[sync(updated_at)] or #[sync(created_at)] field must be a timestamp or a `String`, or an `Option` of one, not `{Self}`",
    label = "not a timestamp or a `String`",
    note = "timestamps are time::OffsetDateTime (or chrono::DateTime<Utc> with the `chrono` feature); a String keeps the server's text as sent"
)]
pub trait TimestampField {
    /// Named by the generated code; its use is the check.
    const FITS: () = ();
}

impl TimestampField for String {}
impl TimestampField for Option<String> {}
impl TimestampField for OffsetDateTime {}
impl TimestampField for Option<OffsetDateTime> {}
#[cfg(feature = "chrono")]
impl TimestampField for chrono::DateTime<chrono::Utc> {}
#[cfg(feature = "chrono")]
impl TimestampField for Option<chrono::DateTime<chrono::Utc>> {}

/// The type of a `#[sync(deleted)]` field: `bool` (a row is deleted or it is not).
#[diagnostic::on_unimplemented(
    message = "a #[sync(deleted)] field must be `bool`, not `{Self}`",
    label = "not a `bool`",
    note = "every row is deleted or not: the flag is never null"
)]
pub trait DeletedField {
    /// Named by the generated code; its use is the check.
    const FITS: () = ();
}

impl DeletedField for bool {}
