use super::*;

fn other(name: &str, uuid: &str, created_s: i64) -> CryptoPassthrough {
    let mut pt = passthrough(name);
    pt.spec.uuid = Some(uuid.into());
    pt.spec.vm_name = format!("vm-{name}");
    pt.metadata = meta("ns", name, &format!("uid-{name}"), created_s);
    pt
}

const U2: &str = "00000000-0000-4000-8000-000000000002";

#[test]
fn the_older_passthrough_wins_an_apqn_on_a_node_and_the_younger_gets_conflict_naming_node_and_apqns() {
    let old = other("old", U2, 0);
    let young = {
        let mut p = other("young", UUID, 10);
        p.spec.adapters = vec![2, 3];
        p
    };
    // The older one already holds node a.
    let w = World::new()
        .node("a", cex8().card(3, 14, CCA).status())
        .node("b", cex8().card(3, 14, CCA).status())
        .with(&old)
        .with(&young)
        .entry("a", &old);
    let o = w.plan(&young);
    let c = o.condition("Conflict");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "ApqnConflict"));
    assert!(
        c.message.contains("node a") && c.message.contains("02.0005") && c.message.contains("ns/old"),
        "{}",
        c.message
    );
    assert!(!c.message.contains("01.0005"), "only the shared APQNs: {}", c.message);
    assert!(!o.placement.desired.contains_key("a"), "not placed where the older one holds the APQN");
    assert!(o.placement.desired.contains_key("b"));
    // The older one does not care about the younger's entries.
    let o = w.entry("b", &young).plan(&old);
    assert_eq!(o.condition("Conflict").status, "False");
    assert!(o.placement.desired.contains_key("b") || o.placement.desired.contains_key("a"));
}

#[test]
fn the_younger_gives_way_even_where_its_mdev_exists_already() {
    let old = other("old", U2, 0);
    let young = other("young", UUID, 10);
    // young got to node a first: its entry and mdev are there; old now wants a too.
    let w = World::new().node("a", cex8().status()).with(&old).with(&young).prepared(&["a"], &young);
    let o = w.plan(&old);
    assert_eq!(
        o.node("a").verdict,
        "Equivalent",
        "the younger's mdev leaves the planned state: {:?}",
        o.node("a").reasons
    );
    assert!(o.placement.desired.contains_key("a"));
    let w = w.entry("a", &old);
    let y = w.plan(&young);
    assert_eq!(y.condition("Conflict").reason, "ApqnConflict");
    assert!(y.placement.desired.is_empty(), "the younger withdraws");
}

#[test]
fn a_running_vm_keeps_its_apqns_against_an_older_passthrough() {
    let old = other("old", U2, 0);
    let young = other("young", UUID, 10);
    let w = World::new()
        .node("a", cex8().status())
        .node("b", cex8().status())
        .with(&old)
        .with(&young)
        .prepared(&["a"], &young)
        .running_on("ns", "vm-young", "a");
    let o = w.plan(&old);
    assert_eq!(o.condition("Conflict").status, "True");
    assert!(o.condition("Conflict").message.contains("ns/young"));
    assert_eq!(o.desired_nodes(), vec!["b"]);
    assert!(w.plan(&young).placement.desired.contains_key("a"));
}

#[test]
fn two_passthroughs_with_one_uuid_the_older_wins_and_the_other_gets_uuid_in_use() {
    let old = other("old", UUID, 0);
    let young = other("young", UUID, 10);
    let w = World::new().node("a", cex8().status()).with(&old).with(&young);
    let y = w.plan(&young);
    let c = y.condition("Conflict");
    assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "UuidInUse"));
    assert!(c.message.contains("ns/old"));
    assert!(y.placement.desired.is_empty());
    assert_eq!(y.condition("Ready").reason, "UuidInUse");
    let o = w.plan(&old);
    assert_eq!(o.condition("Conflict").status, "False");
    assert_eq!(o.desired_nodes(), vec!["a"]);
}

#[test]
fn passthroughs_on_disjoint_apqns_share_a_node() {
    let a = other("a", U2, 0);
    let mut b = other("b", UUID, 10);
    b.spec.domains = vec![6];
    b.spec.control_domains = vec![6];
    let w = World::new().node("n", cex8().status()).with(&a).with(&b).prepared(&["n"], &a);
    let o = w.plan(&b);
    assert_eq!(o.condition("Conflict").status, "False");
    assert_eq!(o.desired_nodes(), vec!["n"]);
    assert_eq!(o.node("n").verdict, "Equivalent", "{:?}", o.node("n").reasons);
}
