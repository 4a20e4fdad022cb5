//! `wasi:config/store@0.2.0-draft-2024-09-27` served from the host's settings map, as Spin serves
//! a component's variables.

use crate::bindings::generated::wasi::config::store;
use crate::host::StoreState;

impl store::Host for StoreState {
    fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, store::Error>> {
        Ok(Ok(self.settings.get(&key).cloned()))
    }

    fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, store::Error>> {
        Ok(Ok(self
            .settings
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}
