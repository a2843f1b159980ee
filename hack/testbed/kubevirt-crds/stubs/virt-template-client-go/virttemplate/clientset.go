// Package virttemplate: a clientset of the template.kubevirt.io/v1beta1 API (stand-in, see ../go.mod).
package virttemplate

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
)

type TemplateV1beta1Client struct{ restClient rest.Interface }

func (c *TemplateV1beta1Client) RESTClient() rest.Interface { return c.restClient }

type Clientset struct{ templateV1beta1 *TemplateV1beta1Client }

func (c *Clientset) TemplateV1beta1() *TemplateV1beta1Client { return c.templateV1beta1 }

func NewForConfig(c *rest.Config) (*Clientset, error) {
	config := *c
	config.GroupVersion = &schema.GroupVersion{Group: "template.kubevirt.io", Version: "v1beta1"}
	config.APIPath = "/apis"
	config.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	if config.UserAgent == "" {
		config.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(&config)
	if err != nil {
		return nil, err
	}
	return &Clientset{templateV1beta1: &TemplateV1beta1Client{restClient: rc}}, nil
}
