package istiocluster

import "testing"

func TestParse(t *testing.T) {
	cases := map[string]Cluster{
		"outbound|9080|v2|reviews.default.svc.cluster.local": {Direction: "outbound", Port: 9080, Subset: "v2", Host: "reviews.default.svc.cluster.local"},
		"inbound|9080||": {Direction: "inbound", Port: 9080},
		"inbound-vip|9080|http|reviews.default.svc.cluster.local": {Direction: "inbound", Port: 9080, Subset: "http", Host: "reviews.default.svc.cluster.local"},
		"outbound_.443_._.api.stripe.com":                         {Direction: "outbound", Port: 443, Host: "api.stripe.com"},
		"BlackHoleCluster":                                        {Direction: "outbound", CatchAll: BlackHole},
		"InboundPassthroughClusterIpv6":                           {Direction: "inbound", CatchAll: "InboundPassthroughClusterIpv6"},
		"front-door":                                              {},
		"outbound|1|2|3|4":                                        {},
	}
	for name, want := range cases {
		if got := Parse(name); got != want {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, want)
		}
	}
}

func TestServicePartsAndRoutes(t *testing.T) {
	if n, ns, ok := ServiceParts("reviews.default.svc.cluster.local"); !ok || n != "reviews" || ns != "default" {
		t.Errorf("cluster-local host: %q %q %v", n, ns, ok)
	}
	for _, h := range []string{"api.stripe.com", "reviews", "a.b.c.svc.cluster.local"} {
		if _, _, ok := ServiceParts(h); ok {
			t.Errorf("%s split as name.namespace.svc", h)
		}
	}
	if RouteCatchAll("block_all") != BlackHole || RouteCatchAll("allow_any") != Passthrough || RouteCatchAll("default") != "" {
		t.Errorf("route names")
	}
}
