//! The upload state record: everything needed to continue an upload on any replica.
//!
//! Stored as JSON at `_uploads/<id>/state` and only ever replaced with `If-Match` on the etag it
//! was read with, so two requests racing on one upload cannot both advance it. The record is
//! untrusted input when read back (the bucket may hold anything): [`UploadState::decode`]
//! checks every field and its consistency before the engine acts on it.

use serde::{Deserialize, Serialize};

use crate::config::MAX_PARTS;
use crate::digest::{Algorithm, ResumableHash};
use crate::effect::CompletedPart;

/// Version of the record's format.
pub const STATE_VERSION: u32 = 1;

/// The multipart upload that receives the blob's full parts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultipartRecord {
    pub key: String,
    pub upload_id: String,
}

/// Bytes received after the last full part, kept in an object of their own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TailRecord {
    pub key: String,
    pub len: u64,
}

/// The stored state of one upload session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    pub version: u32,
    pub repository: String,
    pub algorithm: Algorithm,
    /// The running hash of bytes `0..offset`, serialized, in hex.
    pub hash_state: String,
    /// Bytes received so far: the full parts plus the tail.
    pub offset: u64,
    pub part_size: u64,
    pub multipart: Option<MultipartRecord>,
    /// Full parts, in order, each exactly `part_size` bytes.
    pub parts: Vec<CompletedPart>,
    /// Part number of the next full part: always `parts.len() + 1`.
    pub next_part_number: u32,
    pub tail: Option<TailRecord>,
    /// The writer (a request) that is uploading parts now, if one is.
    pub writer: Option<String>,
    /// Set just before the blob is published, so maintenance never deletes published data.
    pub finalizing: Option<String>,
    pub started_at: u64,
    pub updated_at: u64,
}

impl Serialize for Algorithm {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Algorithm {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Algorithm, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Algorithm::parse(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown algorithm {name:?}")))
    }
}

impl UploadState {
    pub fn new(repository: &str, algorithm: Algorithm, part_size: u64, now: u64) -> UploadState {
        UploadState {
            version: STATE_VERSION,
            repository: repository.to_owned(),
            algorithm,
            hash_state: hex::encode(ResumableHash::new(algorithm).serialize()),
            offset: 0,
            part_size,
            multipart: None,
            parts: Vec::new(),
            next_part_number: 1,
            tail: None,
            writer: None,
            finalizing: None,
            started_at: now,
            updated_at: now,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and checks a stored record. The error says what is inconsistent.
    pub fn decode(bytes: &[u8]) -> Result<(UploadState, ResumableHash), String> {
        let state: UploadState = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if state.version != STATE_VERSION {
            return Err(format!("unknown upload state version {}", state.version));
        }
        let hash_bytes = hex::decode(&state.hash_state).map_err(|e| e.to_string())?;
        let hash = ResumableHash::deserialize(state.algorithm, &hash_bytes)
            .ok_or("hash state does not restore")?;
        if !(crate::config::MIN_PART_SIZE..=crate::config::MAX_PART_SIZE).contains(&state.part_size)
        {
            return Err(format!("part size {} out of range", state.part_size));
        }
        if state.parts.len() > MAX_PARTS as usize || state.next_part_number > MAX_PARTS + 1 {
            return Err("more parts than a multipart upload may have".into());
        }
        if state.next_part_number == 0
            || state
                .parts
                .windows(2)
                .any(|w| w[0].part_number >= w[1].part_number)
            || state
                .parts
                .last()
                .is_some_and(|p| p.part_number >= state.next_part_number)
        {
            return Err("part numbers are not increasing".into());
        }
        if !state.parts.is_empty() && state.multipart.is_none() {
            return Err("parts recorded without a multipart upload".into());
        }
        let tail_len = state.tail.as_ref().map_or(0, |t| t.len);
        if tail_len == 0 && state.tail.is_some() || tail_len >= state.part_size {
            return Err(format!("tail length {tail_len} is not within 1..part size"));
        }
        let expected = (state.parts.len() as u64)
            .checked_mul(state.part_size)
            .and_then(|full| full.checked_add(tail_len));
        if expected != Some(state.offset) {
            return Err(format!(
                "offset {} does not equal {} parts of {} bytes plus a tail of {tail_len}",
                state.offset,
                state.parts.len(),
                state.part_size
            ));
        }
        Ok((state, hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_state_round_trips() {
        let state = UploadState::new("a/b", Algorithm::Sha512, 5 << 20, 7);
        let (decoded, hash) = UploadState::decode(&state.encode()).unwrap();
        assert_eq!(decoded, state);
        assert_eq!(hash.algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn inconsistent_records_are_refused() {
        let mut state = UploadState::new("a", Algorithm::Sha256, 5 << 20, 0);
        state.offset = 3;
        assert!(
            UploadState::decode(&state.encode())
                .unwrap_err()
                .contains("offset")
        );
        let mut state = UploadState::new("a", Algorithm::Sha256, 5 << 20, 0);
        state.tail = Some(TailRecord {
            key: "k".into(),
            len: 5 << 20,
        });
        state.offset = 5 << 20;
        assert!(
            UploadState::decode(&state.encode())
                .unwrap_err()
                .contains("tail")
        );
        assert!(UploadState::decode(b"{}").is_err());
        assert!(UploadState::decode(b"\xff").is_err());
    }
}
