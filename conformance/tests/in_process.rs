//! The suite against the engine itself, in process: every request runs through the engine's
//! testing driver and memory store, with no network and no runtime in between.

use std::sync::Mutex;

use berth_conformance::{Config, Credentials, Transport, TransportError, Workflow};
use berth_engine::testing::Driver;
use berth_engine::{Config as EngineConfig, Registry};

struct InProcess(Mutex<Driver>);

impl Transport for InProcess {
    fn send(
        &self,
        request: http::Request<Vec<u8>>,
    ) -> Result<http::Response<Vec<u8>>, TransportError> {
        let mut driver = self
            .0
            .lock()
            .map_err(|_| TransportError("driver lock poisoned".into()))?;
        let response = driver.send(request);
        let (parts, body) = response.into_parts();
        Ok(http::Response::from_parts(parts, body.to_vec()))
    }
}

#[test]
fn the_engine_passes_every_workflow_in_process() {
    // The smallest part size, so the chunked tests cross several multipart parts.
    let engine = EngineConfig {
        part_size: 5 * 1024 * 1024,
        ..EngineConfig::default()
    };
    let transport = InProcess(Mutex::new(Driver::new(Registry::new(engine).unwrap())));
    let config = Config {
        namespace: "conformance/in-process".into(),
        crossmount_namespace: "conformance/in-process-mount".into(),
        credentials: Credentials::default(),
        workflows: Workflow::ALL.to_vec(),
        run_id: "in-process".into(),
        expected_failures: Default::default(),
    };
    let report = berth_conformance::run(&config, &transport, "engine (in process)", |_| {});
    let failures = report.not_passed();
    assert!(
        failures.is_empty(),
        "{}\n{}",
        report.summary(),
        failures.join("\n")
    );
    assert_eq!(report.passed(), berth_conformance::test_names().len());
    println!("in-process: {}", report.summary());
}
