//! The redb value type of the `events` table: a [record](crate::state::record). Its type name
//! carries the layout's version, so that a router that does not know the layout refuses the
//! file instead of skipping its events.

use redb::{TypeName, Value};

/// The `events` table's value type: an encoded record.
pub(super) type StoredEvent = Stored<2>;

/// The value type of the `events` table of releases whose records did not yet store a message
/// once (`stored-event.v1`): they are read as they are, as records of the current layout.
pub(super) type StoredEventV1 = Stored<1>;

/// An encoded record of layout version `V`.
#[derive(Debug)]
pub(super) struct Stored<const V: u8>;

impl<const V: u8> Value for Stored<V> {
    type SelfType<'a>
        = &'a [u8]
    where
        Self: 'a;
    type AsBytes<'a>
        = &'a [u8]
    where
        Self: 'a;

    fn fixed_width() -> Option<usize> {
        None
    }

    fn from_bytes<'a>(data: &'a [u8]) -> &'a [u8]
    where
        Self: 'a,
    {
        data
    }

    fn as_bytes<'a, 'b: 'a>(value: &'a &'b [u8]) -> &'a [u8]
    where
        Self: 'b,
    {
        value
    }

    fn type_name() -> TypeName {
        TypeName::new(match V {
            1 => "kfp-event-router.stored-event.v1",
            _ => "kfp-event-router.stored-event.v2",
        })
    }
}
