//! The snapshot part of the exposition, rendered once per snapshot generation and kept as
//! plain text and as a gzip prefix, so a scrape between two runs costs no rendering.
//!
//! It decides only *when* to render; *what* is rendered is [`super::families`], and how the
//! gzip prefix is built is [`super::gzip`].

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::encode;
use super::families::snapshot_families;
use super::gzip::Gzipped;
use crate::snapshot::Store;

/// The snapshot part of the exposition, ready to serve.
pub(super) struct Rendered {
    pub(super) plain: Bytes,
    pub(super) gzip: Gzipped,
}

/// The last rendered snapshot part and the generation it was rendered from.
pub(super) struct Cache(Mutex<(u64, Option<Arc<Rendered>>)>);

impl Cache {
    pub(super) fn new() -> Self {
        Cache(Mutex::new((0, None)))
    }

    /// The snapshot part for the store's current generation, rendered if it changed.
    pub(super) fn get(&self, store: &Store) -> Arc<Rendered> {
        let generation = store.generation();
        {
            let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
            if cache.0 == generation {
                if let Some(r) = &cache.1 {
                    return r.clone();
                }
            }
        }
        // Render outside the cache lock; a concurrent scrape may render too, harmlessly.
        let (generation, families) = {
            let st = store.read();
            (store.generation(), snapshot_families(&st))
        };
        let plain = encode(&families);
        let rendered = Arc::new(Rendered {
            gzip: Gzipped::new(&plain),
            plain,
        });
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if generation >= cache.0 {
            *cache = (generation, Some(rendered.clone()));
        }
        rendered
    }
}
