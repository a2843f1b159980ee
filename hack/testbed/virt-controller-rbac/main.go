// virt-controller-rbac prints the least-privilege RBAC of KubeVirt's virt-controller (its ServiceAccount,
// ClusterRole, ClusterRoleBinding, Role and RoleBinding), exactly as kubevirt's own virt-operator
// generates them (pkg/virt-operator/resource/generate/rbac/controller.go), as one multi-document YAML
// file. hack/testbed/build.sh builds it next to virt-controller; hack/testbed/up.sh applies it.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"kubevirt.io/kubevirt/pkg/virt-operator/resource/generate/rbac"
)

func main() {
	out := flag.String("o", "-", "output file (- for stdout)")
	namespace := flag.String("namespace", "kubevirt", "the namespace virt-controller runs in")
	flag.Parse()

	var buf bytes.Buffer
	// No NetworkAttachmentDefinition rules: the test bed has no Multus.
	for _, obj := range rbac.GetAllController(*namespace, false) {
		j, err := json.Marshal(obj)
		if err != nil {
			fail(err)
		}
		var u unstructured.Unstructured
		if err := json.Unmarshal(j, &u.Object); err != nil {
			fail(err)
		}
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		y, err := yaml.Marshal(u.Object)
		if err != nil {
			fail(err)
		}
		buf.WriteString("---\n")
		buf.Write(y)
	}
	if *out == "-" {
		if _, err := os.Stdout.Write(buf.Bytes()); err != nil {
			fail(err)
		}
		return
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "virt-controller-rbac:", err)
	os.Exit(1)
}
