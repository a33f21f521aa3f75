//! Manifest parsing and validation: OCI image manifest and index, Docker schema 2 manifest and
//! manifest list, and artifacts.
//!
//! Parsing never changes the bytes: berth stores and serves exactly what the client sent, and
//! reads from it only what validation and the referrers API need. Unknown fields are allowed.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::digest::Digest;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Layer media types whose blobs may live elsewhere and need not be pushed.
const NON_DISTRIBUTABLE: &[&str] = &[
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// Whether a manifest lists blobs (image manifest) or other manifests (index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestKind {
    Image,
    Index,
}

/// A validated descriptor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

impl Descriptor {
    /// A layer that may be absent from the registry (foreign, non-distributable).
    pub fn is_non_distributable(&self) -> bool {
        NON_DISTRIBUTABLE.contains(&self.media_type.as_str())
    }
}

/// What berth needs to know of a manifest.
#[derive(Clone, Debug, PartialEq)]
pub struct Manifest {
    pub kind: ManifestKind,
    pub media_type: String,
    pub artifact_type: Option<String>,
    pub config: Option<Descriptor>,
    /// Blobs of an image manifest, manifests of an index.
    pub references: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    pub annotations: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<Value>,
    media_type: Option<String>,
    artifact_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    annotations: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<Value>,
}

/// Strips parameters (`; charset=...`) from a `Content-Type`, as the spec asks registries to.
pub fn essence(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Parses and validates a manifest pushed with `content_type` (if the request had one).
pub fn parse(content_type: Option<&str>, bytes: &[u8]) -> Result<Manifest, String> {
    let raw: RawManifest = serde_json::from_slice(bytes)
        .map_err(|e| format!("manifest is not valid JSON of the expected shape: {e}"))?;
    match raw.schema_version {
        Some(Value::Number(n)) if n.as_u64() == Some(2) => {}
        Some(other) => return Err(format!("schemaVersion must be 2, found {other}")),
        None => return Err("schemaVersion is missing; it must be 2".into()),
    }
    let content_type = content_type.map(essence).filter(|c| !c.is_empty());
    let media_type = match (content_type, raw.media_type.as_deref()) {
        (Some(header), Some(field)) if header != field => {
            return Err(format!(
                "mediaType {field:?} does not match Content-Type {header:?}"
            ));
        }
        (Some(header), _) => header.to_owned(),
        (None, Some(field)) => field.to_owned(),
        (None, None) => {
            return Err("neither Content-Type nor mediaType says what the manifest is".into());
        }
    };
    let kind = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => ManifestKind::Image,
        OCI_INDEX | DOCKER_MANIFEST_LIST => ManifestKind::Index,
        other => return Err(format!("unsupported manifest media type {other:?}")),
    };
    let (config, references) = match kind {
        ManifestKind::Image => {
            let config = raw.config.ok_or("an image manifest must have a config")?;
            let config = descriptor(config, "config")?;
            let layers = raw.layers.ok_or("an image manifest must have layers")?;
            let layers = layers
                .into_iter()
                .enumerate()
                .map(|(i, d)| descriptor(d, &format!("layers[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            (Some(config), layers)
        }
        ManifestKind::Index => {
            let manifests = raw.manifests.ok_or("an index must have manifests")?;
            let manifests = manifests
                .into_iter()
                .enumerate()
                .map(|(i, d)| descriptor(d, &format!("manifests[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            (None, manifests)
        }
    };
    let subject = raw.subject.map(|s| descriptor(s, "subject")).transpose()?;
    Ok(Manifest {
        kind,
        media_type,
        artifact_type: raw.artifact_type.filter(|a| !a.is_empty()),
        config,
        references,
        subject,
        annotations: raw.annotations,
    })
}

fn descriptor(raw: RawDescriptor, field: &str) -> Result<Descriptor, String> {
    let media_type = raw
        .media_type
        .filter(|m| !m.is_empty())
        .ok_or_else(|| format!("{field}: mediaType is missing"))?;
    let digest = raw
        .digest
        .ok_or_else(|| format!("{field}: digest is missing"))?;
    let digest = Digest::parse(&digest).map_err(|e| format!("{field}: digest {digest:?}: {e}"))?;
    let size = match raw.size {
        Some(Value::Number(n)) => n
            .as_u64()
            .ok_or_else(|| format!("{field}: size must be a non-negative integer"))?,
        _ => return Err(format!("{field}: size is missing or not a number")),
    };
    Ok(Descriptor {
        media_type,
        digest,
        size,
    })
}

impl Manifest {
    /// The `artifactType` the referrers API lists for this manifest: its own, else (for an
    /// image manifest) its config's media type; an index without one has none.
    pub fn referrer_artifact_type(&self) -> Option<&str> {
        self.artifact_type.as_deref().or(match self.kind {
            ManifestKind::Image => self.config.as_ref().map(|c| c.media_type.as_str()),
            ManifestKind::Index => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{EMPTY}","size":2}},"layers":[]{extra}}}"#
        )
    }

    #[test]
    fn an_artifact_takes_its_config_media_type_when_it_has_no_artifact_type() {
        let m = parse(Some(OCI_MANIFEST), image("").as_bytes()).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(
            m.referrer_artifact_type(),
            Some("application/vnd.oci.empty.v1+json")
        );
        let m = parse(
            None,
            image(r#","artifactType":"x/y","custom":{"a":1}"#).as_bytes(),
        )
        .unwrap();
        assert_eq!(m.referrer_artifact_type(), Some("x/y"));
    }

    #[test]
    fn invalid_manifests_say_why() {
        assert!(
            parse(Some(OCI_INDEX), image("").as_bytes())
                .unwrap_err()
                .contains("does not match")
        );
        assert!(
            parse(Some(OCI_MANIFEST), b"{}")
                .unwrap_err()
                .contains("schemaVersion")
        );
        assert!(parse(Some(OCI_MANIFEST), b"[1]").is_err());
        let bad_size = image("").replace("\"size\":2", "\"size\":-2");
        assert!(
            parse(None, bad_size.as_bytes())
                .unwrap_err()
                .contains("size")
        );
        let bad_digest = image("").replace(EMPTY, "sha256:xyz");
        assert!(
            parse(None, bad_digest.as_bytes())
                .unwrap_err()
                .contains("digest")
        );
        assert!(
            parse(
                Some("text/plain"),
                image("")
                    .replace(&format!(r#""mediaType":"{OCI_MANIFEST}","#), "")
                    .as_bytes()
            )
            .unwrap_err()
            .contains("unsupported")
        );
    }

    #[test]
    fn content_type_parameters_are_ignored() {
        assert!(
            parse(
                Some(&format!("{OCI_MANIFEST}; charset=utf-8")),
                image("").as_bytes()
            )
            .is_ok()
        );
    }
}
