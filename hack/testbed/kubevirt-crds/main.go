// kubevirt-crds prints the real KubeVirt CRDs, as kubevirt's own virt-operator generates them, as one
// multi-document YAML file (hack/testbed/build.sh builds it against kubevirt.io/kubevirt@v1.9.0).
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	extv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"kubevirt.io/kubevirt/pkg/virt-operator/resource/generate/components"
)

func main() {
	out := flag.String("o", "-", "output file (- for stdout)")
	flag.Parse()

	generators := []func() (*extv1.CustomResourceDefinition, error){
		components.NewVirtualMachineInstanceCrd,
		components.NewVirtualMachineCrd,
		components.NewVirtualMachineInstanceMigrationCrd,
		components.NewKubeVirtCrd,
		components.NewPresetCrd,
		components.NewReplicaSetCrd,
		components.NewVirtualMachinePoolCrd,
		components.NewVirtualMachineSnapshotCrd,
		components.NewVirtualMachineSnapshotContentCrd,
		components.NewVirtualMachineRestoreCrd,
		components.NewVirtualMachineExportCrd,
		components.NewVirtualMachineBackupCrd, // virt-controller watches backups and their trackers
		components.NewVirtualMachineBackupTrackerCrd,
		components.NewVirtualMachineInstancetypeCrd,
		components.NewVirtualMachineClusterInstancetypeCrd,
		components.NewVirtualMachinePreferenceCrd,
		components.NewVirtualMachineClusterPreferenceCrd,
		components.NewMigrationPolicyCrd,
		components.NewVirtualMachineCloneCrd,
	}
	var buf bytes.Buffer
	for _, gen := range generators {
		crd, err := gen()
		if err != nil {
			fail(err)
		}
		// As kubevirt's tools/util.MarshallObject: no status, no creationTimestamp.
		j, err := json.Marshal(crd)
		if err != nil {
			fail(err)
		}
		var u unstructured.Unstructured
		if err := json.Unmarshal(j, &u.Object); err != nil {
			fail(err)
		}
		unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
		unstructured.RemoveNestedField(u.Object, "status")
		y, err := yaml.Marshal(u.Object)
		if err != nil {
			fail(err)
		}
		buf.WriteString("---\n")
		buf.Write(y)
	}
	if *out == "-" {
		_, err := os.Stdout.Write(buf.Bytes())
		if err != nil {
			fail(err)
		}
		return
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "kubevirt-crds:", err)
	os.Exit(1)
}
