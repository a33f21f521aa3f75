//! A client library nobody here wrote, `oci-client` from crates.io, pushes an image to the real
//! `berth serve` and pulls it back, on every backend.

mod common;

use bytes::Bytes;
use oci_client::client::{ClientConfig, ClientProtocol, Config, ImageLayer};
use oci_client::manifest::{IMAGE_CONFIG_MEDIA_TYPE, IMAGE_LAYER_MEDIA_TYPE};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use common::*;

async fn round_trip(server: &Server, repository: &str) {
    let client = Client::new(ClientConfig {
        protocol: ClientProtocol::Http,
        ..Default::default()
    });
    let auth = RegistryAuth::Anonymous;
    let reference: Reference = format!("{}/{repository}:v1", server.addr).parse().unwrap();
    // One layer spans three 5 MiB parts, one is tiny.
    let big = content_seeded(12 * MIB + 5, 7);
    let layers = vec![
        ImageLayer::new(big.clone(), IMAGE_LAYER_MEDIA_TYPE.to_owned(), None),
        ImageLayer::new(
            b"hello, berth".to_vec(),
            IMAGE_LAYER_MEDIA_TYPE.to_owned(),
            None,
        ),
    ];
    let config = Config::new(
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#
            .to_vec(),
        IMAGE_CONFIG_MEDIA_TYPE.to_owned(),
        None,
    );
    client
        .push(&reference, &layers, config.clone(), &auth, None)
        .await
        .expect("oci-client pushes the image");

    let image = client
        .pull(&reference, &auth, vec![IMAGE_LAYER_MEDIA_TYPE])
        .await
        .expect("oci-client pulls the image");
    // oci-client downloads layers concurrently and returns them in the order they finish.
    let mut pulled: Vec<Bytes> = image.layers.iter().map(|l| l.data.clone()).collect();
    pulled.sort_by_key(|data| data.len());
    assert_eq!(pulled.len(), 2);
    assert_eq!(&pulled[0][..], b"hello, berth");
    assert!(pulled[1][..] == big[..], "big layer differs");
    assert_eq!(image.config.data, config.data);
    let (manifest, digest) = client
        .pull_image_manifest(&reference, &auth)
        .await
        .expect("the manifest reads back");
    assert_eq!(manifest.layers[0].size, big.len() as i64);
    assert_eq!(image.digest.as_deref(), Some(digest.as_str()));

    // A streamed push, which oci-client sends as chunked PATCHes without falling back to a
    // monolithic upload, then a streamed pull.
    let streamed = content_seeded(11 * MIB + 77, 8);
    let streamed_digest = common::digest(&streamed);
    let chunks: Vec<oci_client::errors::Result<Bytes>> = streamed
        .chunks(MIB + 3)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    client
        .push_blob_stream(
            &reference,
            futures_util::stream::iter(chunks),
            &streamed_digest,
            None,
        )
        .await
        .expect("a chunked streamed push");
    let mut pulled = Vec::new();
    client
        .pull_blob(&reference, streamed_digest.as_str(), &mut pulled)
        .await
        .expect("the streamed blob pulls back");
    assert!(pulled == streamed, "streamed blob differs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_round_trips_on_memory_storage() {
    let server = Server::start("memory");
    round_trip(&server, "oci/memory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_round_trips_on_directory_storage() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path().to_str().unwrap());
    round_trip(&server, "oci/directory").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_client_round_trips_on_s3_storage() {
    let s3 = S3Server::start("oci");
    let server = Server::start_s3(&s3, "oci", "");
    round_trip(&server, "o").await;
}
