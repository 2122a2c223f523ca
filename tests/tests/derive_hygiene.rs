//! The derive's output names nothing from the caller's scope: it works with the
//! prelude shadowed and nothing imported, and with the runtime under another path.

//! The generated items carry docs and `Debug`, so a crate that denies those lints can
//! derive (the test modules are `pub` for that reason).
#![deny(missing_docs, missing_debug_implementations)]
#![allow(dead_code, non_camel_case_types, unused_macros)]

/// Everything the generated code could be tempted to name, shadowed by unrelated items.
pub mod shadowed {
    struct Result;
    struct Option;
    struct Some;
    struct None;
    struct Ok;
    struct Err;
    struct String;
    struct Vec;
    struct Box;
    struct str;
    struct bool;
    struct FieldValue;
    struct Column;
    struct Value;
    struct IdField;
    struct LocalOnlyField;
    struct VersionField;
    struct TimestampField;
    struct DeletedField;
    struct NonOptional;
    mod time {}
    mod uuid {}
    mod serde_json {}
    trait Clone {}
    trait Copy {}
    trait Debug {}
    trait IntoIterator {}
    mod core {}
    mod std {}
    mod sync_runtime {}
    macro_rules! assert {
        ($($t:tt)*) => {
            compile_error!("the local `assert!` was used")
        };
    }
    macro_rules! matches {
        ($($t:tt)*) => {
            compile_error!("the local `matches!` was used")
        };
    }
    macro_rules! unreachable {
        ($($t:tt)*) => {
            compile_error!("the local `unreachable!` was used")
        };
    }

    /// A table, derived with nothing imported.
    #[derive(::sync_runtime::SyncEntity, ::core::fmt::Debug)]
    #[sync(table = "Shadowed")]
    pub struct Item {
        /// The id.
        pub id: ::std::string::String,
        /// Named like the generated code's local.
        pub values: ::std::vec::Vec<u8>,
        /// A flag.
        pub flag: ::core::primitive::bool,
        /// A note.
        pub note: ::core::option::Option<::std::string::String>,
        /// The version.
        #[sync(version)]
        pub version: ::core::option::Option<::std::string::String>,
        /// The last change.
        #[sync(updated_at)]
        pub updated: ::core::option::Option<::time::OffsetDateTime>,
        /// Deleted.
        #[sync(deleted)]
        pub deleted: ::core::primitive::bool,
        /// A local draft.
        #[sync(local_only)]
        pub draft: ::core::option::Option<i64>,
        /// Named like the `set_id` parameter, give or take.
        pub id_: i32,
        /// A raw identifier.
        pub r#match: f64,
    }

    /// A table whose field types come through the runtime's re-exports, as in an app
    /// with no `time`, `uuid` or `serde_json` dependency of its own.
    #[derive(::sync_runtime::SyncEntity, ::core::fmt::Debug, ::core::cmp::PartialEq)]
    pub struct Reexported {
        /// The id.
        pub id: ::std::string::String,
        /// A timestamp.
        pub at: ::sync_runtime::time::OffsetDateTime,
        /// A UUID.
        pub key: ::core::option::Option<::sync_runtime::uuid::Uuid>,
        /// JSON.
        pub extra: ::sync_runtime::serde_json::Value,
        /// When the server last changed it.
        #[sync(updated_at)]
        pub updated: ::core::option::Option<::sync_runtime::time::OffsetDateTime>,
        /// A local note.
        #[sync(local_only)]
        pub note: ::core::option::Option<::sync_runtime::uuid::Uuid>,
    }

    /// An item.
    pub fn item() -> Item {
        Item {
            id: ::std::string::String::from("a"),
            values: ::std::vec![1, 2],
            flag: true,
            note: ::core::option::Option::None,
            version: ::core::option::Option::Some(::std::string::String::from("v")),
            updated: ::core::option::Option::None,
            deleted: false,
            draft: ::core::option::Option::Some(3),
            id_: 4,
            r#match: 0.5,
        }
    }
}

#[test]
fn derives_with_the_prelude_shadowed() {
    use sync_runtime::SyncEntity;

    let mut item = shadowed::item();
    assert_eq!(shadowed::Item::TABLE, "Shadowed");
    assert_eq!(shadowed::Item::FIELD_DEFS.len(), 10);
    assert_eq!(shadowed::Item::FIELD_DEFS[9].column, "match");
    item.set_id("b".into());
    assert_eq!(item.id(), "b");
    let back = shadowed::Item::from_values(item.to_values()).unwrap();
    assert_eq!(back.id, "b");
    assert_eq!(back.values, [1, 2]);
    assert_eq!(back.draft, Some(3));
    assert_eq!(back.r#match, 0.5);
    assert_eq!(shadowed::Item::FIELDS.note.name(), "note");
}

/// The runtime re-exported under another name, as a framework would.
pub mod framework {
    /// The runtime.
    pub use ::sync_runtime as sync;
}

/// A table whose derive reaches the runtime through `framework`.
pub mod aliased {
    use crate::framework::sync::SyncEntity;

    /// A note.
    #[derive(SyncEntity, Debug, PartialEq)]
    #[sync(crate = "crate::framework::sync", table = "Aliased")]
    pub struct Note {
        /// The id.
        pub id: String,
        /// The text.
        pub body: String,
    }
}

#[test]
fn crate_path_from_a_reexport() {
    use crate::framework::sync::SyncEntity;

    assert_eq!(aliased::Note::TABLE, "Aliased");
    let note = aliased::Note { id: "n".into(), body: "hello".into() };
    assert_eq!(aliased::Note::from_values(note.to_values()), Ok(note));
    assert_eq!(aliased::Note::FIELDS.body.name(), "body");
}

#[test]
fn field_types_through_the_runtimes_reexports() {
    use sync_runtime::SyncEntity;

    let item = shadowed::Reexported {
        id: "r".into(),
        at: sync_runtime::time::OffsetDateTime::UNIX_EPOCH,
        key: Some(sync_runtime::uuid::Uuid::nil()),
        extra: sync_runtime::serde_json::json!({"a": [1, 2]}),
        updated: None,
        note: None,
    };
    assert_eq!(shadowed::Reexported::from_values(item.to_values()), Ok(item));
}
