// Stand-in for kubevirt.io/virt-template-api v0.2.0, which the Go module proxy refuses.
// kubevirt v1.9.0 uses only what is declared here (through pkg/controller).
module kubevirt.io/virt-template-api

go 1.24

require k8s.io/apimachinery @K8S_STAGING@
