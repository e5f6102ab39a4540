// CoreDNS with only the plugins the test cluster's DNS needs, built as CoreDNS documents for a
// chosen set of plugins: kubernetes answers cluster.local (Services, headless Services'
// endpoints with their hostnames, pods), bind listens on the cluster's own address, ready says
// when the kubernetes plugin has synced, errors reports failures.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

func init() {
	// the order of CoreDNS's own plugin.cfg, restricted to the plugins built in
	dnsserver.Directives = []string{"bind", "ready", "errors", "kubernetes"}
}

func main() {
	coremain.Run()
}
