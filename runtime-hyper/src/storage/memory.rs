//! `--storage memory`: the engine's own in-memory store behind a mutex. Volatile; for tests and
//! throwaway registries.

use std::io;
use std::sync::Mutex;

use berth_engine::testing::MemoryStore;
use berth_engine::{ByteRange, Effect, Outcome};

use super::ObjectStream;

#[derive(Default)]
pub struct MemoryBackend {
    store: Mutex<MemoryStore>,
}

impl MemoryBackend {
    pub fn execute(&self, effect: Effect) -> Outcome {
        match self.store.lock() {
            Ok(mut store) => store.execute(effect),
            Err(_) => Outcome::Failed("memory store lock poisoned".into()),
        }
    }

    pub fn open_stream(&self, key: &str, range: Option<ByteRange>) -> io::Result<ObjectStream> {
        let store = self
            .store
            .lock()
            .map_err(|_| io::Error::other("memory store lock poisoned"))?;
        let bytes = store
            .read(key, range)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, key.to_owned()))?;
        Ok(Box::pin(futures_util::stream::once(
            async move { Ok(bytes) },
        )))
    }
}
