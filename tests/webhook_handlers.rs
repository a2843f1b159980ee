//! The admission handlers in-process (kubewarden's way: the axum Router driven with `oneshot`, no
//! socket): AdmissionReviews of VMIM creates as kube-apiserver sends them, answered from caches
//! that hold exactly the test's objects. Each allow, deny and mutate case, with the exact message.

mod webhook_support;

use axum::body::Body;
use axum::http::Request;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tower::ServiceExt;

use cryptopass::webhook::{AdmissionMetrics, Caches, Gate, MUTATE_PATH, VALIDATE_PATH, router};
use webhook_support::*;

const U_OK: &str = "00000000-0000-4000-8000-00000000000a";
const U_OFF: &str = "00000000-0000-4000-8000-00000000000b";
const U_NOTREADY: &str = "00000000-0000-4000-8000-00000000000c";
const U_KERNEL: &str = "00000000-0000-4000-8000-00000000000d";
const U_NONE: &str = "00000000-0000-4000-8000-00000000000e";
const ALL: [&str; 5] = [U_OK, U_OFF, U_NOTREADY, U_KERNEL, U_NONE];

const KERNEL: &str = "source host a cannot migrate vfio-ap guests: its kernel lacks vfio-ap migration \
                      (`migratable` missing from /sys/devices/vfio_ap/matrix/features)";
const FACILITY: &str = "Facility bit 3 set in source queue 01.0005; Facility bit 3 not set in target queue 01.0005";

/// Nodes a and b hold every passthrough's mdev (and label); c holds none.
fn world() -> Caches {
    let ok = vec![
        node_entry("a", "Active", true, "Equivalent", json!([])),
        node_entry("b", "Standby", true, "Equivalent", json!([])),
    ];
    let mut off = passthrough("ns", "p-off", "vm-off", U_OFF);
    off["spec"]["migration"] = json!({"enabled": false});
    let kernel_reason = json!([{"code": "KernelCannotMigrate", "message": KERNEL}]);
    let pts = vec![
        cached_passthrough(passthrough("ns", "p-ok", "vm-ok", U_OK), status(U_OK, "a", true, ok.clone())),
        cached_passthrough(off, status(U_OFF, "a", true, ok.clone())),
        cached_passthrough(
            passthrough("ns", "p-notready", "vm-notready", U_NOTREADY),
            status(U_NOTREADY, "a", false, ok.clone()),
        ),
        cached_passthrough(
            passthrough("ns", "p-kernel", "vm-kernel", U_KERNEL),
            status(
                U_KERNEL,
                "a",
                true,
                vec![
                    node_entry("a", "Active", true, "Incompatible", kernel_reason.clone()),
                    node_entry("b", "Standby", true, "Incompatible", kernel_reason),
                ],
            ),
        ),
        cached_passthrough(
            passthrough("ns", "p-none", "vm-none", U_NONE),
            status(
                U_NONE,
                "a",
                true,
                vec![
                    node_entry("a", "Active", true, "Equivalent", json!([])),
                    node_entry(
                        "b",
                        "Candidate",
                        false,
                        "Incompatible",
                        json!([{"code": "FacilityDiffers", "apqn": "01.0005", "message": FACILITY}]),
                    ),
                    node_entry("c", "Standby", false, "Compatible", json!([])),
                ],
            ),
        ),
    ];
    let vmis = ["vm-ok", "vm-off", "vm-notready", "vm-kernel", "vm-none", "vm-plain"]
        .into_iter()
        .map(|v| vmi("ns", v, Some("a"), &[]))
        .collect();
    let labels: Vec<(String, &str)> = ALL.iter().map(|u| (key(u), "true")).collect();
    let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    caches(pts, vmis, vec![node("a", &labels), node("b", &labels), node("c", &[])])
}

fn gate() -> Gate {
    Gate { caches: world(), metrics: AdmissionMetrics::default() }
}

async fn call(g: &Gate, path: &str, body: &Value) -> Value {
    let req = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a request");
    let resp = router(g.clone()).oneshot(req).await.expect("an answer");
    assert_eq!(resp.status(), 200, "{path}");
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20).await.expect("a body");
    serde_json::from_slice(&bytes).expect("a JSON answer")
}

fn steered(uuid: &str) -> Value {
    json!({key(uuid): "true"})
}

/// The validating webhook's message for a steered VMIM of `vm`, or `None` when admitted.
async fn validated(g: &Gate, vm: &str, annotations: &[(&str, &str)]) -> Option<String> {
    let uuid = match vm {
        "vm-ok" => U_OK,
        "vm-off" => U_OFF,
        "vm-notready" => U_NOTREADY,
        "vm-kernel" => U_KERNEL,
        _ => U_NONE,
    };
    let r = call(g, VALIDATE_PATH, &review("CREATE", vmim("ns", vm, Some(steered(uuid)), annotations))).await;
    assert_eq!(r["response"]["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002", "the uid is echoed");
    assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(r["kind"], "AdmissionReview");
    match r["response"]["allowed"].as_bool() {
        Some(true) => None,
        Some(false) => Some(r["response"]["status"]["message"].as_str().expect("a message").to_string()),
        None => panic!("no decision in {r}"),
    }
}

#[tokio::test]
async fn a_vmi_without_passthrough_passes_both_webhooks_untouched() {
    let g = gate();
    let body = review("CREATE", vmim("ns", "vm-plain", None, &[]));
    for path in [MUTATE_PATH, VALIDATE_PATH] {
        let r = call(&g, path, &body).await;
        assert_eq!(r["response"]["allowed"], true, "{path}: {r}");
        assert_eq!(patch_of(&r), None, "{path}: no patch");
        assert!(r["response"].get("patchType").is_none(), "{path}: {r}");
    }
}

#[tokio::test]
async fn the_mutating_webhook_adds_exactly_our_pair_to_added_node_selector() {
    let g = gate();
    let r = call(&g, MUTATE_PATH, &review("CREATE", vmim("ns", "vm-ok", None, &[]))).await;
    assert_eq!(r["response"]["allowed"], true);
    assert_eq!(r["response"]["patchType"], "JSONPatch");
    assert_eq!(
        patch_of(&r),
        Some(json!([{"op": "add", "path": "/spec/addedNodeSelector", "value": {key(U_OK): "true"}}]))
    );
    // Beside a user's own keys.
    let r = call(&g, MUTATE_PATH, &review("CREATE", vmim("ns", "vm-ok", Some(json!({"zone": "z1"})), &[]))).await;
    let path = format!("/spec/addedNodeSelector/{}", key(U_OK).replace('/', "~1"));
    assert_eq!(patch_of(&r), Some(json!([{"op": "add", "path": path, "value": "true"}])));
}

#[tokio::test]
async fn the_mutating_webhook_is_idempotent_and_never_overrides_a_users_value() {
    let g = gate();
    let r = call(&g, MUTATE_PATH, &review("CREATE", vmim("ns", "vm-ok", Some(steered(U_OK)), &[]))).await;
    assert_eq!((r["response"]["allowed"].clone(), patch_of(&r)), (json!(true), None));
    let theirs = json!({key(U_OK): "no"});
    let r = call(&g, MUTATE_PATH, &review("CREATE", vmim("ns", "vm-ok", Some(theirs.clone()), &[]))).await;
    assert_eq!((r["response"]["allowed"].clone(), patch_of(&r)), (json!(true), None));
    let r = call(&g, VALIDATE_PATH, &review("CREATE", vmim("ns", "vm-ok", Some(theirs), &[]))).await;
    assert_eq!(r["response"]["allowed"], false);
    assert_eq!(
        r["response"]["status"]["message"],
        format!(
            "CryptoPassthrough p-ok: addedNodeSelector sets {k}=no; cryptopass steers the target with {k}=true, \
             leave that key out",
            k = key(U_OK)
        )
    );
}

#[tokio::test]
async fn the_validating_webhook_admits_a_steered_vmim_with_a_prepared_compatible_target() {
    assert_eq!(validated(&gate(), "vm-ok", &[]).await, None);
}

#[tokio::test]
async fn the_validating_webhook_refuses_each_reason_with_its_message() {
    let g = gate();
    assert_eq!(
        validated(&g, "vm-off", &[]).await.as_deref(),
        Some("CryptoPassthrough p-off: migration is disabled (spec.migration.enabled: false)")
    );
    assert_eq!(
        validated(&g, "vm-notready", &[]).await,
        Some(format!(
            "CryptoPassthrough p-notready is not Ready (NotSynced: waiting for the agent of the active node a to \
             sync mdev {U_NOTREADY})"
        ))
    );
    assert_eq!(
        validated(&g, "vm-kernel", &[]).await,
        Some(format!("CryptoPassthrough p-kernel: active node a: {KERNEL}"))
    );
    assert_eq!(
        validated(&g, "vm-none", &[]).await,
        Some(format!(
            "CryptoPassthrough p-none: no prepared compatible target for a VM on a: b Incompatible: {FACILITY}; \
             c not prepared yet"
        ))
    );
}

#[tokio::test]
async fn a_vmim_the_mutating_webhook_did_not_steer_is_refused() {
    let r = call(&gate(), VALIDATE_PATH, &review("CREATE", vmim("ns", "vm-ok", None, &[]))).await;
    assert_eq!(r["response"]["allowed"], false);
    assert_eq!(
        r["response"]["status"]["message"],
        format!(
            "CryptoPassthrough p-ok: the target is not restricted to prepared nodes ({}=true is not in the \
             selector: is webhook vmim.mutate.crypto.s390x.dev registered?)",
            key(U_OK)
        )
    );
}

#[tokio::test]
async fn an_evacuation_is_judged_alike_and_says_the_drain_waits() {
    let g = gate();
    let evac = [("kubevirt.io/evacuationMigration", "a")];
    assert_eq!(validated(&g, "vm-ok", &evac).await, None);
    assert_eq!(
        validated(&g, "vm-off", &evac).await.as_deref(),
        Some(
            "evacuation of node a waits: CryptoPassthrough p-off: migration is disabled (spec.migration.enabled: false)"
        )
    );
}

#[tokio::test]
async fn an_unreadable_review_is_refused_and_other_operations_pass() {
    let g = gate();
    for path in [VALIDATE_PATH, MUTATE_PATH] {
        let r = call(&g, path, &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"})).await;
        assert_eq!(r["response"]["allowed"], false, "{path}: {r}");
        assert!(
            r["response"]["status"]["message"].as_str().is_some_and(|m| m.starts_with("cryptopass: ")),
            "{path}: {r}"
        );
    }
    let update = review("UPDATE", vmim("ns", "vm-off", None, &[]));
    assert_eq!(call(&g, VALIDATE_PATH, &update).await["response"]["allowed"], true);
}

#[tokio::test]
async fn every_answer_is_counted_by_webhook_and_decision_with_its_duration() {
    let g = gate();
    let mut registry = Registry::default();
    g.metrics.register(&mut registry);
    call(&g, MUTATE_PATH, &review("CREATE", vmim("ns", "vm-ok", None, &[]))).await;
    call(&g, MUTATE_PATH, &review("CREATE", vmim("ns", "vm-plain", None, &[]))).await;
    validated(&g, "vm-ok", &[]).await;
    validated(&g, "vm-off", &[]).await;
    call(&g, VALIDATE_PATH, &json!({})).await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("an exposition");
    for line in [
        "cryptopass_admission_requests_total{webhook=\"mutate\",decision=\"mutated\"} 1",
        "cryptopass_admission_requests_total{webhook=\"mutate\",decision=\"allowed\"} 1",
        "cryptopass_admission_requests_total{webhook=\"validate\",decision=\"allowed\"} 1",
        "cryptopass_admission_requests_total{webhook=\"validate\",decision=\"denied\"} 1",
        "cryptopass_admission_requests_total{webhook=\"validate\",decision=\"error\"} 1",
        "cryptopass_admission_duration_seconds_count{webhook=\"validate\"} 3",
        "cryptopass_admission_duration_seconds_count{webhook=\"mutate\"} 2",
    ] {
        assert!(text.contains(line), "missing {line} in\n{text}");
    }
}
