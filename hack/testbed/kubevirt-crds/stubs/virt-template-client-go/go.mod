// Stand-in for kubevirt.io/virt-template-client-go v0.2.0, which the Go module proxy refuses.
module kubevirt.io/virt-template-client-go

go 1.24

require (
	k8s.io/apimachinery @K8S_STAGING@
	k8s.io/client-go @K8S_STAGING@
)
