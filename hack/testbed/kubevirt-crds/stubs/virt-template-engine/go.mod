// Stand-in for kubevirt.io/virt-template-engine v0.2.0, which the Go module proxy refuses. kubevirt v1.9.0
// requires it but none of its packages on the path to the CRD generators imports it.
module kubevirt.io/virt-template-engine

go 1.24
