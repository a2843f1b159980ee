//! The parts of the CRD schemas that derive macros cannot say: CEL rules, id ranges, list types,
//! the UUID pattern and the int-or-string `standby` (architecture.md, "CryptoPassthrough fields").

use serde_json::{Value, json};

/// `placement.standby`: integer ≥ 0 or the string `All`.
pub fn int_or_string(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "x-kubernetes-int-or-string": true,
        "default": 1,
        "description": "How many compatible targets to keep prepared besides the active node: an integer >= 0, or All.",
        "x-kubernetes-validations": [{
            "rule": "type(self) == int ? self >= 0 : self == 'All'",
            "message": "standby must be an integer >= 0 or the string All"
        }]
    })
}

/// A `set` of ids 0..255.
fn id_set(description: &str) -> Value {
    json!({
        "type": "array",
        "description": description,
        "items": {"type": "integer", "minimum": 0, "maximum": 255},
        "maxItems": 256,
        "x-kubernetes-list-type": "set"
    })
}

fn rule(rule: &str, message: &str) -> Value {
    json!({"rule": rule, "message": message})
}

fn push_rules(schema: &mut Value, rules: Vec<Value>) {
    if let Some(obj) = schema.as_object_mut() {
        let list = obj.entry("x-kubernetes-validations").or_insert_with(|| json!([]));
        if let Some(a) = list.as_array_mut() {
            a.extend(rules);
        }
    }
}

/// Patches the CryptoPassthrough `openAPIV3Schema`.
pub fn patch_passthrough(root: &mut Value) {
    push_rules(
        root,
        vec![rule(
            "self.metadata.name.size() <= 63",
            "metadata.name must be at most 63 characters (it becomes a DRA attribute value)",
        )],
    );
    let spec = &mut root["properties"]["spec"];
    let desc = |v: &Value| v.get("description").and_then(Value::as_str).unwrap_or_default().to_string();
    for f in ["adapters", "domains", "controlDomains"] {
        let d = desc(&spec["properties"][f]);
        spec["properties"][f] = id_set(&d);
    }
    spec["properties"]["uuid"]["pattern"] = json!("^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$");
    push_rules(&mut spec["properties"]["vmName"], vec![rule("self == oldSelf", "vmName is immutable")]);
    spec["properties"]["vmName"]["minLength"] = json!(1);
    push_rules(
        spec,
        vec![
            rule("size(self.adapters) > 0", "adapters must not be empty: the matrix is adapters x domains"),
            rule("size(self.domains) > 0", "domains must not be empty: the matrix is adapters x domains"),
            rule(
                "!has(self.controlDomains) || size(self.controlDomains) == 0 || size(self.domains) > 0",
                "controlDomains require usage domains",
            ),
            rule(
                "has(self.uuid) == has(oldSelf.uuid) && (!has(self.uuid) || self.uuid == oldSelf.uuid)",
                "uuid cannot be added, changed or removed after creation",
            ),
        ],
    );
}

/// Patches the CryptoNode `openAPIV3Schema`.
pub fn patch_node(root: &mut Value) {
    let item = &mut root["properties"]["spec"]["properties"]["mdevs"]["items"];
    for f in ["adapters", "domains", "controlDomains"] {
        item["properties"][f] = id_set("");
    }
    push_rules(root, vec![rule("self.metadata.name.size() <= 253", "metadata.name is the node name")]);
}
