//! Test fixture for the host: a plugin exporting `kfp:event-router/transform@9.0.0`
//! (see `wit/world.wit`, a copy of the real WIT with another version), which the
//! host must refuse to load. If it were loaded anyway, `handle` returns `Pass`.

mod bindings {
    wit_bindgen::generate!({ path: "wit", world: "plugin" });
}

#[cfg(target_arch = "wasm32")]
mod export {
    use super::bindings::exports::kfp::event_router::transform::{Action, Event, Guest, Payload};

    struct WrongVersion;

    impl Guest for WrongVersion {
        fn init(_config: String) -> Result<(), String> {
            Ok(())
        }

        fn handle(_event: Event, _payload: Payload) -> Result<Action, String> {
            Ok(Action::Pass)
        }
    }

    super::bindings::export!(WrongVersion with_types_in super::bindings);
}
