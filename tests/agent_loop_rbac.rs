//! Least privilege of the agent (deploy/rbac-agent.yaml + deploy/vap-agent.yaml): with the token
//! of node A's agent (bound to a pod on A), A's CryptoNode, its status and A's Lease can be
//! written; another node's CryptoNode or Lease, any CryptoPassthrough, and anything else are
//! forbidden (HTTP 403). A token not bound to a node may write no CryptoNode at all.

mod support;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Secret};
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use support::{FakeNode, RELEASE_NAMESPACE, TestNamespace, agent_identity, cluster, is_code};

use cryptopass::api::{CryptoNode, CryptoNodeSpec, CryptoPassthrough};

fn forbidden<T: std::fmt::Debug>(what: &str, r: Result<T, kube::Error>) {
    match r {
        Err(e) if is_code(&e, 403) => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

fn lease(name: &str, holder: &str) -> Lease {
    Lease {
        metadata: ObjectMeta { name: Some(name.into()), ..ObjectMeta::default() },
        spec: Some(LeaseSpec { holder_identity: Some(holder.into()), ..LeaseSpec::default() }),
    }
}

async fn status_apply(client: &Client, node: &str) -> Result<CryptoNode, kube::Error> {
    let body = json!({
        "apiVersion": "crypto.s390x.dev/v1alpha1", "kind": "CryptoNode",
        "status": {"kernel": {"profile": "unknown"}},
    });
    Api::<CryptoNode>::all(client.clone())
        .patch_status(node, &PatchParams::apply("cryptopass-agent").force(), &Patch::Apply(&body))
        .await
}

#[tokio::test]
async fn the_agents_token_writes_its_own_node_and_lease_and_nothing_else() {
    let c = cluster().await;
    let a = FakeNode::create(&c, "rbac-a").await;
    let b = FakeNode::create(&c, "rbac-b").await;
    let id = agent_identity(&c, &a.name).await;
    let agent = id.client().await;
    let nodes: Api<CryptoNode> = Api::all(agent.clone());
    let pp = PostParams::default();

    // Its own: create, read, watch-list with its field selector, status by SSA, its Lease.
    nodes.create(&pp, &CryptoNode::new(&a.name, CryptoNodeSpec::default())).await.expect("creating its own CryptoNode");
    nodes.get(&a.name).await.expect("reading its own CryptoNode");
    nodes.list(&ListParams::default().fields(&format!("metadata.name={}", a.name))).await.expect("listing it");
    status_apply(&agent, &a.name).await.expect("writing its own status");
    let leases: Api<Lease> = Api::namespaced(agent.clone(), RELEASE_NAMESPACE);
    let own = format!("cryptopass-agent-{}", a.name);
    let mut l = leases.create(&pp, &lease(&own, &a.name)).await.expect("creating its own Lease");
    l.spec.as_mut().unwrap().lease_duration_seconds = Some(40);
    leases.replace(&own, &pp, &l).await.expect("renewing its own Lease");

    // Another node's: neither create nor write spec or status, nor its Lease.
    forbidden(
        "creating another node's CryptoNode",
        nodes.create(&pp, &CryptoNode::new(&b.name, CryptoNodeSpec::default())).await,
    );
    let admin_nodes: Api<CryptoNode> = Api::all(c.client.clone());
    admin_nodes.create(&pp, &CryptoNode::new(&b.name, CryptoNodeSpec::default())).await.expect("admin creates B");
    forbidden("writing another node's status", status_apply(&agent, &b.name).await);
    let spec = json!({"apiVersion": "crypto.s390x.dev/v1alpha1", "kind": "CryptoNode", "spec": {"mdevs": []}});
    forbidden(
        "patching another node's spec",
        nodes.patch(&b.name, &PatchParams::apply("cryptopass-agent").force(), &Patch::Apply(&spec)).await,
    );
    let other = format!("cryptopass-agent-{}", b.name);
    forbidden("creating another node's Lease", leases.create(&pp, &lease(&other, &a.name)).await);
    let admin_leases: Api<Lease> = Api::namespaced(c.client.clone(), RELEASE_NAMESPACE);
    let theirs = admin_leases.create(&pp, &lease(&other, &b.name)).await.expect("admin creates B's Lease");
    forbidden("renewing another node's Lease", leases.replace(&other, &pp, &theirs).await);
    let _ = admin_leases.delete(&other, &DeleteParams::default()).await;

    // Nothing else: no deletes, no passthroughs, no Leases elsewhere, no nodes or secrets.
    forbidden("deleting its own CryptoNode", nodes.delete(&a.name, &DeleteParams::default()).await);
    let ns = TestNamespace::create(&c, "rbac").await;
    let pts: Api<CryptoPassthrough> = Api::namespaced(agent.clone(), &ns.name);
    let pt: CryptoPassthrough = serde_json::from_value(json!({
        "apiVersion": "crypto.s390x.dev/v1alpha1", "kind": "CryptoPassthrough",
        "metadata": {"name": "pt", "namespace": ns.name},
        "spec": {"adapters": [0], "domains": [0x40], "vmName": "vm"},
    }))
    .expect("a passthrough");
    forbidden("creating a CryptoPassthrough", pts.create(&pp, &pt).await);
    forbidden("listing CryptoPassthroughs", pts.list(&ListParams::default()).await);
    let admin_pts: Api<CryptoPassthrough> = Api::namespaced(c.client.clone(), &ns.name);
    admin_pts.create(&pp, &pt).await.expect("admin creates a passthrough");
    forbidden(
        "patching a CryptoPassthrough's status",
        pts.patch_status(
            "pt",
            &PatchParams::apply("x").force(),
            &Patch::Apply(&json!({
                "apiVersion": "crypto.s390x.dev/v1alpha1", "kind": "CryptoPassthrough", "status": {"uuid": "x"}
            })),
        )
        .await,
    );
    forbidden(
        "a Lease in another namespace",
        Api::<Lease>::namespaced(agent.clone(), &ns.name).create(&pp, &lease(&own, &a.name)).await,
    );
    forbidden("reading Nodes", Api::<Node>::all(agent.clone()).get(&a.name).await);
    forbidden(
        "listing Secrets",
        Api::<Secret>::namespaced(agent.clone(), RELEASE_NAMESPACE).list(&ListParams::default()).await,
    );
    let _ = admin_nodes.delete(&b.name, &DeleteParams::default()).await;
    assert_eq!(id.user, "system:serviceaccount:cryptopass:cryptopass-agent");
    let _ = l.name_any();
}

#[tokio::test]
async fn a_token_not_bound_to_a_node_writes_no_crypto_node() {
    let c = cluster().await;
    let a = FakeNode::create(&c, "rbac-unbound").await;
    // The agent's ServiceAccount, but a token without a pod (hence without a node).
    let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(c.client.clone(), RELEASE_NAMESPACE);
    let tr = sa
        .create_token_request(
            "cryptopass-agent",
            &PostParams::default(),
            &k8s_openapi::api::authentication::v1::TokenRequest {
                metadata: ObjectMeta::default(),
                spec: k8s_openapi::api::authentication::v1::TokenRequestSpec {
                    audiences: Vec::new(),
                    bound_object_ref: None,
                    expiration_seconds: Some(600),
                },
                status: None,
            },
        )
        .await
        .expect("a token");
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    support::identity::write_kubeconfig(
        &c.kubeconfig,
        &kc,
        "system:serviceaccount:cryptopass:cryptopass-agent",
        &tr.status.unwrap().token,
    );
    // The policy may still be on its way in a fresh process: wait for it with a bound identity.
    let _bound = agent_identity(&c, &a.name).await;
    let unbound = support::cluster::client_from(&kc).await;
    let r = Api::<CryptoNode>::all(unbound)
        .create(&PostParams::default(), &CryptoNode::new(&a.name, CryptoNodeSpec::default()))
        .await;
    match r {
        Err(kube::Error::Api(s)) if s.code == 403 => {
            assert!(s.message.contains("bound to a pod on a node"), "{}", s.message)
        }
        other => panic!("expected 403 from the policy, got {other:?}"),
    }
}
