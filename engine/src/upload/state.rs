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
///
/// A record is in one of three phases, and every phase the engine writes decodes:
/// - *receiving* (`finalizing` and `abandoned` unset): `offset` bytes are stored as the full
///   `parts` plus the `tail`, and the hash state covers exactly them; a request may continue it.
/// - *publishing* (`finalizing` set): the bytes were verified to hash to that digest and the
///   record commits to them — `publication` names where they are (or will be, once the multipart
///   upload is completed with the listed parts). From here the only way on is forward: whoever
///   reads such a record (a retried PUT, maintenance) completes and publishes it, and nobody
///   deletes its data. `offset`, `parts` and `tail` keep the last checkpoint of receiving.
/// - *abandoned* (`abandoned` set): written with `If-Match` over a receiving record by whoever
///   throws the upload away (cancel, a failed close, expiry) *before* deleting anything, so no
///   request that read the record earlier can commit it any more; whoever finds it finishes
///   the deletion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    pub version: u32,
    pub repository: String,
    pub algorithm: Algorithm,
    /// The running hash of bytes `0..offset`, serialized, in hex.
    pub hash_state: String,
    /// A second running hash of the same bytes in the other algorithm, kept while the upload is
    /// shorter than one part and was opened without `digest-algorithm`: the client may close it
    /// with a digest of either algorithm. Dropped at the first full part (see `upload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alternate_hash_state: Option<String>,
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
    /// The verified digest, once the upload is being published.
    pub finalizing: Option<String>,
    /// Where the verified bytes are, written together with `finalizing`. Records written by
    /// berth before this field existed have `finalizing` without it; see
    /// [`UploadState::is_legacy_publishing`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publication: Option<Publication>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub abandoned: bool,
    pub started_at: u64,
    pub updated_at: u64,
}

/// The verified blob of a publishing upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// The data key the blob pointer will name.
    pub data: String,
    pub size: u64,
    /// The multipart upload's parts, the last one possibly short, to complete it with; empty
    /// when the data was put whole.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<CompletedPart>,
}

/// Why a stored record was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateError(pub String);

impl core::fmt::Display for StateError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StateError {}

impl From<String> for StateError {
    fn from(message: String) -> StateError {
        StateError(message)
    }
}

impl From<&str> for StateError {
    fn from(message: &str) -> StateError {
        StateError(message.to_owned())
    }
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
            alternate_hash_state: None,
            offset: 0,
            part_size,
            multipart: None,
            parts: Vec::new(),
            next_part_number: 1,
            tail: None,
            writer: None,
            finalizing: None,
            publication: None,
            abandoned: false,
            started_at: now,
            updated_at: now,
        }
    }

    /// The record as stored. A record is a handful of strings and numbers, which JSON always
    /// represents; should serialization ever fail, the error surfaces instead of an empty record.
    pub fn encode(&self) -> Result<Vec<u8>, StateError> {
        serde_json::to_vec(self).map_err(|e| StateError(format!("encoding an upload state: {e}")))
    }

    /// A record of the publishing phase, written by a berth from before [`Publication`]: its
    /// data was already complete when it was written, but where it is must be found out, and its
    /// other fields may not be consistent with each other.
    pub fn is_legacy_publishing(&self) -> bool {
        self.finalizing.is_some() && self.publication.is_none()
    }

    /// Parses and checks a stored record. The error says what is inconsistent. Every record
    /// the engine writes, in every phase, decodes.
    pub fn decode(bytes: &[u8]) -> Result<(UploadState, ResumableHash), StateError> {
        let state: UploadState = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if state.version != STATE_VERSION {
            return Err(format!("unknown upload state version {}", state.version).into());
        }
        let hash = restore(state.algorithm, &state.hash_state)?;
        if let Some(alternate) = &state.alternate_hash_state {
            restore(state.algorithm.other(), alternate)?;
        }
        if state.finalizing.is_some() && state.abandoned {
            return Err("a record cannot be both publishing and abandoned".into());
        }
        if let Some(publication) = &state.publication {
            if state.finalizing.is_none() {
                return Err("a publication without its digest".into());
            }
            check_part_numbers(&publication.parts, MAX_PARTS + 1)?;
        }
        if state.is_legacy_publishing() {
            // Older berths saved this phase with the last, short part added to `parts` and
            // nothing else updated: the checkpoint fields below need not agree.
            return Ok((state, hash));
        }
        if !(crate::config::MIN_PART_SIZE..=crate::config::MAX_PART_SIZE).contains(&state.part_size)
        {
            return Err(format!("part size {} out of range", state.part_size).into());
        }
        check_part_numbers(&state.parts, state.next_part_number)?;
        if state.next_part_number > MAX_PARTS + 1 {
            return Err("more parts than a multipart upload may have".into());
        }
        if !state.parts.is_empty() && state.multipart.is_none() {
            return Err("parts recorded without a multipart upload".into());
        }
        let tail_len = state.tail.as_ref().map_or(0, |t| t.len);
        if tail_len == 0 && state.tail.is_some() || tail_len >= state.part_size {
            return Err(format!("tail length {tail_len} is not within 1..part size").into());
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
            )
            .into());
        }
        Ok((state, hash))
    }
}

fn restore(algorithm: Algorithm, hex_state: &str) -> Result<ResumableHash, StateError> {
    let bytes = hex::decode(hex_state).map_err(|e| e.to_string())?;
    ResumableHash::deserialize(algorithm, &bytes)
        .ok_or_else(|| "hash state does not restore".into())
}

/// Part numbers strictly increasing, from 1, below `next`, and no more than a multipart upload
/// may have.
fn check_part_numbers(parts: &[CompletedPart], next: u32) -> Result<(), StateError> {
    if parts.len() > MAX_PARTS as usize {
        return Err("more parts than a multipart upload may have".into());
    }
    if next == 0
        || parts.first().is_some_and(|p| p.part_number == 0)
        || parts
            .windows(2)
            .any(|w| w[0].part_number >= w[1].part_number)
        || parts.last().is_some_and(|p| p.part_number >= next)
    {
        return Err("part numbers are not increasing".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_state_round_trips() {
        let state = UploadState::new("a/b", Algorithm::Sha512, 5 << 20, 7);
        let (decoded, hash) = UploadState::decode(&state.encode().unwrap()).unwrap();
        assert_eq!(decoded, state);
        assert_eq!(hash.algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn inconsistent_records_are_refused() {
        let mut state = UploadState::new("a", Algorithm::Sha256, 5 << 20, 0);
        state.offset = 3;
        assert!(
            UploadState::decode(&state.encode().unwrap())
                .unwrap_err()
                .0
                .contains("offset")
        );
        let mut state = UploadState::new("a", Algorithm::Sha256, 5 << 20, 0);
        state.tail = Some(TailRecord {
            key: "k".into(),
            len: 5 << 20,
        });
        state.offset = 5 << 20;
        assert!(
            UploadState::decode(&state.encode().unwrap())
                .unwrap_err()
                .0
                .contains("tail")
        );
        assert!(UploadState::decode(b"{}").is_err());
        assert!(UploadState::decode(b"\xff").is_err());
    }
}
