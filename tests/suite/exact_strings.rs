//! Issue 12, item 3: CSV loads trimmed strings (`"  padded  "` was served as
//! `"padded"`) while a push kept them. A value now reads back exactly, whatever path it
//! came by.

use featstore::loader::LoadRequest;
use featstore::store::PushEvent;
use featstore::types::{Value, now_ms};

use super::common::{item_specs, temp_store};

#[test]
fn padded_strings_round_trip_through_csv_loads_and_pushes_alike() {
    let (dir, store) = temp_store();
    store.apply(item_specs()).expect("apply");
    let csv = dir.path().join("labels.csv");
    std::fs::write(
        &csv,
        "entity_id,event_time,item_a,item_label\n\
         loaded,1700000000000, 1.5 ,  padded  \n\
         quoted,1700000000000,2,\"  padded  \"\n\
         blank,1700000000000,3,\" \"\n\
         empty,1700000000000,4,\n",
    )
    .expect("write");
    store
        .load(&LoadRequest::new("items", &csv), &|_| {})
        .expect("load");
    store
        .push(vec![PushEvent {
            entity_type: "item".into(),
            entity_id: "pushed".into(),
            event_time: now_ms(),
            features: vec![("item_label".into(), Value::String("  padded  ".into()))],
            event_id: None,
        }])
        .expect("push");
    let read = |id: &str, name: &str| {
        store
            .get_features("item", id, &[name])
            .expect("read")
            .features
            .remove(0)
            .value
    };
    let padded = Some(Value::String("  padded  ".into()));
    assert_eq!(read("pushed", "item_label"), padded);
    assert_eq!(read("loaded", "item_label"), padded);
    assert_eq!(read("quoted", "item_label"), padded);
    assert_eq!(read("blank", "item_label"), Some(Value::String(" ".into())));
    // An empty CSV cell is null; numbers ignore surrounding spaces.
    assert_eq!(read("empty", "item_label"), None);
    assert_eq!(read("loaded", "item_a"), Some(Value::Float64(1.5)));
}
